"""Folder of meshes -> HDF5: discovery, skipping bad files, per-category splits, overlapping
parts, and voxel/alpha consistency of the converted objects."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import trimesh

from recon.data.meshes import convert_meshes, find_meshes, load_mesh, split_counts
from recon.data.raster import voxel_mask_iou


pytestmark = pytest.mark.usefixtures("one_thread")


def two_boxes() -> trimesh.Trimesh:
    """Two overlapping boxes in one mesh (not a manifold union): x in [0, 2] and [1.5, 2.5]."""
    a = trimesh.creation.box(bounds=[(0, 0, 0), (2.0, 1.0, 1.0)])
    b = trimesh.creation.box(bounds=[(1.5, 0.25, 0.25), (2.5, 0.75, 1.5)])
    return trimesh.util.concatenate([a, b])


@pytest.fixture
def src(tmp_path):
    root = tmp_path / "meshes"
    chair = root / "03001627"
    chair.mkdir(parents=True)
    trimesh.creation.box(extents=(1.0, 2.0, 0.5)).export(chair / "tall_box.obj")
    trimesh.creation.cylinder(radius=0.4, height=1.0, sections=24).export(chair / "cyl.ply")
    two_boxes().export(chair / "two_boxes.stl")
    (chair / "sub").mkdir()
    trimesh.creation.cone(radius=0.5, height=1.2).export(chair / "sub" / "cone.off")
    (chair / "garbage.obj").write_bytes(bytes(range(256)) * 3)
    (chair / "empty.ply").write_bytes(b"")
    (chair / "notes.txt").write_text("not a mesh")
    widgets = root / "widgets"
    widgets.mkdir()
    trimesh.Scene([trimesh.creation.box(extents=(1, 1, 1)),
                   trimesh.creation.icosphere(radius=0.5).apply_translation((1.5, 0, 0))]).export(widgets / "scene.glb")
    trimesh.creation.capsule(height=1.0, radius=0.3).export(widgets / "capsule.obj")
    return root


def test_find_meshes(src):
    found = find_meshes(src)
    assert sorted(found) == ["03001627", "widgets"]
    assert [p.name for p in found["03001627"]] == ["cyl.ply", "empty.ply", "garbage.obj", "cone.off",
                                                   "tall_box.obj", "two_boxes.stl"]
    assert list(find_meshes(src, classes=["chair"])) == ["03001627"]
    with pytest.raises(ValueError, match="not found"):
        find_meshes(src, classes=["sofa"])
    with pytest.raises(FileNotFoundError):
        find_meshes(src / "nope")


def test_load_mesh_normalises(src):
    v, f = load_mesh(src / "03001627" / "tall_box.obj")
    np.testing.assert_allclose(v.min(0), [-0.25, -0.5, -0.125], atol=1e-6)
    np.testing.assert_allclose(v.max(0), [0.25, 0.5, 0.125], atol=1e-6)
    assert f.shape == (12, 3)


def test_convert(src, tmp_path):
    out = tmp_path / "out.h5"
    with pytest.warns(UserWarning, match="skipped 2 mesh file"):
        info, skipped = convert_meshes(src, out, split=(0.5, 0.25, 0.25), seed=1, workers=1, progress=False)
    reasons = {p.split("/")[-1]: r for p, r in skipped}
    assert set(reasons) == {"garbage.obj", "empty.ply"}
    # Garbage text is either rejected by the loader or parses to nothing, depending on trimesh's
    # optional encoding detection; both must end as a skip with a reason.
    assert any(w in reasons["garbage.obj"] for w in ("unreadable", "empty")) and "empty" in reasons["empty.ply"]
    assert info.categories == {"03001627": "chair", "widgets": "widgets"}
    assert info.objects("train") == {"03001627": 2, "widgets": 2}
    assert info.objects("val") == {"03001627": 1, "widgets": 0}
    assert info.objects("test") == {"03001627": 1, "widgets": 0}
    with h5py.File(out) as f:
        ids = sorted(x.decode() for s in ("train", "val", "test") for x in f["03001627"][s]["object_ids"][()])
        assert ids == ["cyl", "sub/cone", "tall_box", "two_boxes"]
        for key in f:
            for s in f[key]:
                for i in range(f[key][s]["images"].shape[0]):
                    images = f[key][s]["images"][i]
                    vox = f[key][s]["voxels_exact"][i].astype(bool)  # centre sampling of [-0.5, 0.5]^3
                    oid = f[key][s]["object_ids"][i].decode()
                    assert vox.sum() > 100, oid
                    assert voxel_mask_iou(vox, images).mean() >= 0.8, oid
                    if oid == "tall_box":
                        # box spans x in [-.25, .25], y in [-.5, .5], z in [-.125, .125] after normalisation
                        c = -0.5 + (np.arange(32) + 0.5) / 32
                        want = ((np.abs(c) < 0.25)[:, None, None] & (np.abs(c) < 0.5)[None, :, None]
                                & (np.abs(c) < 0.125)[None, None, :])
                        np.testing.assert_array_equal(vox, want)
                    if oid == "two_boxes":
                        # overlapping parts: the union, no hole where they overlap (winding number 2)
                        m = two_boxes()
                        lo, hi = m.bounds
                        c = -0.5 + (np.arange(32) + 0.5) / 32
                        g = np.stack(np.meshgrid(c, c, c, indexing="ij"), -1) * (hi - lo).max() + (lo + hi) / 2
                        inside_a = ((g >= [0, 0, 0]) & (g <= [2, 1, 1])).all(-1)
                        inside_b = ((g >= [1.5, 0.25, 0.25]) & (g <= [2.5, 0.75, 1.5])).all(-1)
                        np.testing.assert_array_equal(vox, inside_a | inside_b)


def test_flat_folder_and_pool(src, tmp_path):
    flat = tmp_path / "gadgets"
    flat.mkdir()
    for i, ext in enumerate(["obj", "ply", "stl"]):
        trimesh.creation.box(extents=(1, 1 + i, 0.5)).export(flat / f"b{i}.{ext}")
    info, skipped = convert_meshes(flat, tmp_path / "flat.h5", workers=1, progress=False)
    assert skipped == [] and info.categories == {"gadgets": "gadgets"}
    assert [info.objects(s)["gadgets"] for s in ("train", "val", "test")] == [1, 1, 1]
    info2, _ = convert_meshes(flat, tmp_path / "flat2.h5", workers=2, progress=False)
    with h5py.File(tmp_path / "flat.h5") as a, h5py.File(tmp_path / "flat2.h5") as b:
        for s in ("train", "val", "test"):
            for name in ("images", "voxels", "object_ids"):
                np.testing.assert_array_equal(a["gadgets"][s][name][()], b["gadgets"][s][name][()])


def test_nothing_usable(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.obj").write_bytes(b"")
    (bad / "b.obj").write_text("v 0 0 0\nv 0 0 0\nv 0 0 0\nf 1 2 3\n")  # zero extent
    (bad / "c.obj").write_text("v 0 0 nan\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")  # non-finite
    out = tmp_path / "out.h5"
    with pytest.raises(ValueError, match="no usable meshes"):
        convert_meshes(bad, out, workers=1, progress=False)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad"]
    with pytest.raises(ValueError, match="ratios summing to 1"):
        convert_meshes(bad, out, split=(0.5, 0.2), progress=False)


@pytest.mark.parametrize("n", range(0, 12))
def test_split_counts(n):
    for ratios in [(0.8, 0.1, 0.1), (0.5, 0.25, 0.25), (1.0, 0.0, 0.0), (0.9, 0.0, 0.1), (0.34, 0.33, 0.33)]:
        c = split_counts(n, ratios)
        assert sum(c) == n and min(c) >= 0
        if n >= 3:
            assert all(k >= 1 for k, r in zip(c, ratios) if r > 0)
            assert all(k == 0 for k, r in zip(c, ratios) if r == 0)
    assert split_counts(10, (0.8, 0.1, 0.1)) == [8, 1, 1]
    assert split_counts(2, (0.8, 0.1, 0.1)) == [2, 0, 0]


def test_occupancy_closed_open_and_overlapping():
    from recon.data.meshes import occupancy
    from recon.ops.voxelize_exact import winding_occupancy

    sphere = trimesh.creation.icosphere(2, radius=0.3).apply_translation((-0.15, 0, 0))
    box = trimesh.creation.box(extents=(0.4, 0.3, 0.5)).apply_translation((0.2, 0.05, 0))  # overlaps the sphere
    closed = trimesh.creation.box(extents=(0.2, 0.2, 0.2)).apply_translation((0.0, -0.3, 0.25))
    open_box = trimesh.Trimesh(closed.vertices, closed.faces[2:], process=False)  # one side missing
    assert not open_box.is_watertight
    inverted = trimesh.creation.box(extents=(0.1, 0.1, 0.1)).apply_translation((-0.3, 0.35, -0.3))
    inverted.invert()  # wrongly oriented closed body: fixed before filling
    mesh = trimesh.util.concatenate([sphere, box, open_box, inverted])
    v, f = np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces)  # same precision as the reference
    got = occupancy(v, f)
    parts = [winding_occupancy(torch.from_numpy(np.asarray(m.vertices)), torch.from_numpy(np.asarray(m.faces)))
             for m in (sphere, box, open_box)]
    parts.append(winding_occupancy(torch.from_numpy(np.asarray(inverted.vertices)),
                                   torch.from_numpy(np.asarray(inverted.faces))))
    want = (parts[0] | parts[1] | parts[2] | parts[3]).numpy()
    assert parts[2].sum() > 0 and parts[3].sum() > 0
    np.testing.assert_array_equal(got, want)


# -- folders that cannot be used: one line naming the folder ------------------------------------

NON_UTF8 = os.fsdecode(b"caf\xe9")  # a Latin-1 folder name: not valid UTF-8 (HDF5 group names must be)


@pytest.mark.parametrize("layout", ["category", "flat"])
def test_non_utf8_folder_name_is_named(tmp_path, layout):
    src = tmp_path / "src"
    folder = src / NON_UTF8 if layout == "category" else tmp_path / NON_UTF8
    folder.mkdir(parents=True)
    trimesh.creation.box(extents=(1.0, 2.0, 0.5)).export(folder / "box.obj")
    out = tmp_path / "out.h5"
    with pytest.raises(ValueError) as e:
        convert_meshes(src if layout == "category" else folder, out, workers=1, progress=False)
    message = str(e.value)
    assert message.startswith(os.fsencode(folder).decode("utf-8", "backslashreplace")), message
    assert "caf\\xe9: folder name is not valid UTF-8" in message and message.encode("utf-8")  # printable
    assert not out.exists()


def _scandir_refusing(monkeypatch, blocked: Path) -> None:
    """``os.scandir`` as on a folder without read permission (tests run as root, where chmod blocks nothing)."""
    real = os.scandir

    def scandir(path="."):
        if Path(path) == blocked:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


@pytest.mark.parametrize("which", ["source", "category", "subfolder"])
def test_unreadable_folder_is_named(src, tmp_path, monkeypatch, which):
    blocked = {"source": src, "category": src / "widgets", "subfolder": src / "03001627" / "sub"}[which]
    _scandir_refusing(monkeypatch, blocked)
    with pytest.raises(PermissionError, match=f"^{blocked}: folder is not readable"):
        find_meshes(src)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root reads any folder whatever its permissions (test_unreadable_folder_is_named simulates)")
def test_unreadable_folder_for_real(src, tmp_path):
    blocked = src / "widgets"
    blocked.chmod(0)
    try:
        with pytest.raises(PermissionError, match="widgets: folder is not readable"):
            convert_meshes(src, tmp_path / "out.h5", workers=1, progress=False)
    finally:
        blocked.chmod(0o755)
