"""Mesh export (.glb / .ply with vertex colours): every file is read back by trimesh AND by an
independent reader (pygltflib for glTF, plyfile for PLY) with the same counts, positions, faces and
colours; bad input is refused with the path named and nothing written."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from recon.mesh import load_obj, load_template
from recon.report.mesh_export import DEFAULT_GREY, glb_bytes, save_glb, save_ply, srgb_to_linear, vertex_normals

pygltflib = pytest.importorskip("pygltflib", reason="pygltflib is in the dev extra: pip install -e '.[dev]'")
plyfile = pytest.importorskip("plyfile", reason="plyfile is in the dev extra: pip install -e '.[dev]'")

_DTYPES = {5121: np.uint8, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_WIDTH = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}


@pytest.fixture(scope="module")
def coloured_mesh() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The template sphere squashed and shifted, with random colours: (642, 3), (1280, 3), (642, 3)."""
    v, f = load_template()
    g = torch.Generator().manual_seed(0)
    v = v * torch.tensor([0.5, 0.3, 0.4]) + torch.tensor([0.1, -0.2, 0.05])
    return v, f, torch.rand(v.shape, generator=g)


def _pygltf_arrays(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray, "pygltflib.GLTF2"]:
    """(attributes, (F, 3) faces, document) of the first primitive, decoded with pygltflib only."""
    doc = pygltflib.GLTF2().load(str(path))
    blob = doc.binary_blob()

    def read(index: int) -> np.ndarray:
        acc = doc.accessors[index]
        view = doc.bufferViews[acc.bufferView]
        width = _WIDTH[acc.type]
        start = (view.byteOffset or 0) + (acc.byteOffset or 0)
        arr = np.frombuffer(blob, _DTYPES[acc.componentType], acc.count * width, offset=start)
        return arr.reshape(acc.count, width) if width > 1 else arr

    prim = doc.meshes[0].primitives[0]
    attrs = {name: read(getattr(prim.attributes, name)) for name in ("POSITION", "NORMAL", "COLOR_0")}
    return attrs, read(prim.indices).reshape(-1, 3), doc


def _trimesh_glb(path: Path) -> trimesh.Trimesh:
    scene = trimesh.load(path, process=False)
    (mesh,) = scene.geometry.values()
    return mesh


def test_glb_reads_back_in_trimesh_and_pygltflib(tmp_path, coloured_mesh):
    """The .glb's vertex colours, as trimesh (ColorVisuals) and pygltflib hand them out, equal the .ply's
    within 1/255 (the same bytes); COLOR_0 is VEC4 normalised unsigned bytes and no material hides it."""
    v, f, c = coloured_mesh
    path = tmp_path / "pred.glb"
    save_glb(path, v, f, c)
    save_ply(tmp_path / "pred.ply", v, f, c)
    ply_rgb = trimesh.load(tmp_path / "pred.ply", process=False).visual.vertex_colors[:, :3].astype(int)

    mesh = _trimesh_glb(path)
    assert mesh.vertices.shape == (642, 3) and mesh.faces.shape == (1280, 3)
    np.testing.assert_allclose(mesh.vertices, v.numpy(), atol=1e-6)
    np.testing.assert_array_equal(mesh.faces, f.numpy())
    assert isinstance(mesh.visual, trimesh.visual.ColorVisuals) and mesh.visual.kind == "vertex"
    assert np.abs(mesh.visual.vertex_colors[:, :3].astype(int) - ply_rgb).max() <= 1
    assert (mesh.visual.vertex_colors[:, 3] == 255).all()

    attrs, faces, doc = _pygltf_arrays(path)
    assert attrs["POSITION"].shape == (642, 3) and faces.shape == (1280, 3)
    np.testing.assert_allclose(attrs["POSITION"], v.numpy(), atol=1e-6)
    np.testing.assert_array_equal(faces, f.numpy())
    color_acc = doc.accessors[doc.meshes[0].primitives[0].attributes.COLOR_0]
    assert (color_acc.componentType, color_acc.type, color_acc.normalized) == (5121, "VEC4", True)
    assert np.abs(attrs["COLOR_0"][:, :3].astype(int) - ply_rgb).max() <= 1
    # no material: trimesh would return TextureVisuals with one white colour
    assert doc.meshes[0].primitives[0].material is None and not doc.materials
    acc = doc.accessors[doc.meshes[0].primitives[0].attributes.POSITION]
    np.testing.assert_allclose(acc.min, v.numpy().min(0), atol=1e-6)  # required by the glTF spec
    np.testing.assert_allclose(acc.max, v.numpy().max(0), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(attrs["NORMAL"], axis=1), 1.0, atol=1e-5)


def test_glb_layout_follows_the_spec(coloured_mesh):
    v, f, c = coloured_mesh
    data = glb_bytes(v, f, c)
    magic, version, length = struct.unpack("<III", data[:12])
    assert (magic, version, length) == (0x46546C67, 2, len(data))
    json_len, json_type = struct.unpack("<II", data[12:20])
    assert json_type == 0x4E4F534A and json_len % 4 == 0
    doc = json.loads(data[20:20 + json_len])
    bin_len, bin_type = struct.unpack("<II", data[20 + json_len:28 + json_len])
    assert bin_type == 0x004E4942 and bin_len % 4 == 0 and bin_len >= doc["buffers"][0]["byteLength"]
    assert all(view["byteOffset"] % 4 == 0 for view in doc["bufferViews"])


def test_ply_reads_back_in_trimesh_and_plyfile(tmp_path, coloured_mesh):
    v, f, c = coloured_mesh
    path = tmp_path / "pred.ply"
    save_ply(path, v, f, c)
    rgb = np.round(c.numpy() * 255).astype(np.uint8)

    mesh = trimesh.load(path, process=False)
    assert mesh.vertices.shape == (642, 3) and mesh.faces.shape == (1280, 3)
    np.testing.assert_allclose(mesh.vertices, v.numpy(), atol=1e-6)
    np.testing.assert_array_equal(mesh.faces, f.numpy())
    np.testing.assert_array_equal(mesh.visual.vertex_colors[:, :3], rgb)

    ply = plyfile.PlyData.read(str(path))
    vert = ply["vertex"].data
    assert len(vert) == 642 and len(ply["face"].data) == 1280
    np.testing.assert_allclose(np.stack([vert["x"], vert["y"], vert["z"]], 1), v.numpy(), atol=1e-6)
    np.testing.assert_array_equal(np.stack(ply["face"].data["vertex_indices"]), f.numpy())
    np.testing.assert_array_equal(np.stack([vert["red"], vert["green"], vert["blue"]], 1), rgb)


def test_without_colours_both_files_are_neutral_grey(tmp_path, coloured_mesh):
    v, f, _ = coloured_mesh
    save_glb(tmp_path / "grey.glb", v, f)
    save_ply(tmp_path / "grey.ply", v, f)
    attrs, _, _ = _pygltf_arrays(tmp_path / "grey.glb")
    assert (attrs["COLOR_0"][:, :3] == round(DEFAULT_GREY[0] * 255)).all()
    ply_rgb = trimesh.load(tmp_path / "grey.ply", process=False).visual.vertex_colors[:, :3]
    assert (ply_rgb == round(DEFAULT_GREY[0] * 255)).all()


def test_srgb_to_linear_matches_the_standard_curve():
    np.testing.assert_allclose(srgb_to_linear(np.array([0.0, 0.04045, 0.5, 1.0])),
                               [0.0, 0.04045 / 12.92, 0.21404114, 1.0], atol=1e-7)
    x = np.linspace(0, 1, 101)
    assert (np.diff(srgb_to_linear(x)) > 0).all()


def test_vertex_normals_point_outward_on_a_sphere():
    v, f = load_template()
    n = vertex_normals(v.numpy(), f.numpy())
    cosine = (n * v.numpy() / np.linalg.norm(v.numpy(), axis=1, keepdims=True)).sum(1)
    assert cosine.min() > 0.95
    # an unreferenced vertex gets a unit default instead of NaN
    n2 = vertex_normals(np.concatenate([v.numpy(), [[9.0, 9.0, 9.0]]]), f.numpy())
    assert np.isfinite(n2).all() and np.allclose(n2[-1], [0, 1, 0])


@pytest.mark.parametrize("save", [save_glb, save_ply], ids=["glb", "ply"])
@pytest.mark.parametrize("case, match", [
    ("verts_shape", r"verts must have shape \(V, 3\)"),
    ("faces_shape", r"faces must have shape \(F, 3\)"),
    ("index", r"face indices must lie in \[0, 642\)"),
    ("nan", "NaN or infinite"),
    ("colours_shape", r"colours must have shape \(642, 3\)"),
])
def test_bad_input_is_refused_and_nothing_is_written(tmp_path, coloured_mesh, save, case, match):
    v, f, c = coloured_mesh
    args = {"verts_shape": (v[:, :2], f, c), "faces_shape": (v, f[:, :2], c), "index": (v, f + 1, c),
            "nan": (v.clone().index_fill_(0, torch.tensor([5]), float("nan")), f, c),
            "colours_shape": (v, f, c[:10])}[case]
    path = tmp_path / f"bad.{save.__name__[-3:]}"
    with pytest.raises(ValueError, match=match) as err:
        save(path, *args)
    assert str(path) in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_save_prediction_meshes_writes_obj_ply_glb_input_and_manifest(tmp_path, coloured_mesh):
    from recon.evaluate import Prediction
    from recon.report import save_prediction_meshes

    v, f, c = coloured_mesh
    image = torch.rand(4, 16, 16)
    preds = [Prediction("03001627", "chair", "obj/1", 0, image, v, torch.zeros(32, 32, 32, dtype=torch.bool), 0.5),
             Prediction("04379243", "table", "t2", 7, image, v * 0.9, torch.zeros(32, 32, 32, dtype=torch.bool),
                        float("nan"))]
    paths = save_prediction_meshes(preds, f, tmp_path, colours=[c, None])
    chair = "chair_obj_1-92af3a9e_view00"  # "obj/1": "/" replaced, and a hash of the id so "obj_1" stays distinct
    assert [p.name for p in paths] == [f"{chair}.obj", "table_t2_view07.obj"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["predictions.json"] + [f"{s}{e}" for s in (chair, "table_t2_view07")
                                for e in (".obj", ".ply", ".glb", "_input.png")])
    ov, of = load_obj(paths[0])
    np.testing.assert_allclose(ov.numpy(), v.numpy(), atol=1e-5)
    attrs, _, _ = _pygltf_arrays(tmp_path / f"{chair}.glb")
    np.testing.assert_array_equal(attrs["COLOR_0"][:, :3], np.round(c.numpy() * 255).astype(np.uint8))
    manifest = json.loads((tmp_path / "predictions.json").read_text())
    assert [(m["name"], m["object_id"], m["view"], m["iou"]) for m in manifest] == [("chair", "obj/1", 0, 0.5),
                                                                                    ("table", "t2", 7, None)]
    # the old call (no colours) still works
    save_prediction_meshes(preds[:1], f, tmp_path / "grey")
    assert (tmp_path / "grey" / f"{chair}.glb").is_file()
    with pytest.raises(ValueError, match="1 colour arrays for 2 predictions"):
        save_prediction_meshes(preds, f, tmp_path, colours=[c])
