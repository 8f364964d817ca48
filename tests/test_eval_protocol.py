"""Evaluation under a 3D-IoU protocol, HDF5 format v2 (GT meshes, one grid per protocol), the oracle
reference row, and v1 files (written here exactly as the v1 writer wrote them) still training and
evaluating."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import trimesh

from recon import cameras
from recon.config import TrainConfig
from recon.data.meshes import convert_meshes
from recon.data.schema import DatasetFormatError, validate
from recon.data.synthetic import SPLIT_OFFSET, make_object, object_record, render_object
from recon.evaluate import mean_shape_row, oracle_row, template_row
from recon.mesh import icosphere
from metrics_reference import mesh_vs_voxels_metrics
from recon.metrics import iou_3d, mesh_metrics, sample_mesh_surface
from recon.ops.voxelize import grid_bounds, voxelize
from recon.data.ground_truth import GroundTruth, ground_truth_grid, stored_grid_protocol
from recon.training import train

pytestmark = pytest.mark.usefixtures("one_thread")

CHAIR, TABLE = "03001627", "04379243"


def write_v1(path: Path, objects: dict[str, dict[str, int]], npz_like: bool = False) -> None:
    """A format-v1 file as the previous release's DatasetWriter wrote it (attrs, chunking, uint8
    voxels = the exact grid, no protocol attribute, no meshes); ``npz_like`` adds the category
    attribute of SoftRas/NMR conversions."""
    with h5py.File(path, "w") as f:
        f.attrs.update(format="recon-hdf5", version=1, image_size=cameras.IMAGE_SIZE, num_views=cameras.NUM_VIEWS,
                       elevation=cameras.ELEVATION, distance=cameras.DISTANCE, viewing_angle=cameras.VIEWING_ANGLE,
                       azimuth_step=cameras.AZIMUTH_STEP)
        for key, sizes in objects.items():
            grp = f.create_group(key)
            grp.attrs.update(name={CHAIR: "chair", TABLE: "table"}[key], source="synthetic(seed=0)")
            if npz_like:
                grp.attrs["voxel_transform"] = "+y+x-z"
            for split, n in sizes.items():
                rendered = [render_object(key, SPLIT_OFFSET[split] + i, 0) for i in range(n)]
                s = grp.create_group(split)
                s.create_dataset("images", data=np.stack([r[0] for r in rendered]), chunks=(1, 1, 4, 64, 64),
                                 compression="gzip", shuffle=True, maxshape=(None, 24, 4, 64, 64))
                s.create_dataset("voxels", data=np.stack([r[1] for r in rendered]).astype(np.uint8),
                                 chunks=(1, 32, 32, 32), compression="gzip", maxshape=(None, 32, 32, 32))
                s.create_dataset("object_ids", data=[f"{key}-{split}-{i}" for i in range(n)],
                                 dtype=h5py.string_dtype(), maxshape=(None,))


@pytest.fixture(scope="module")
def v1_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("v1") / "v1.h5"
    write_v1(path, {CHAIR: {"train": 3, "val": 1, "test": 1}, TABLE: {"train": 3, "val": 1, "test": 1}})
    return str(path)


# ----------------------------------------------------------------------------------------------
# Format v2: layout, round trip, validation
# ----------------------------------------------------------------------------------------------

def test_v2_stores_meshes_and_both_grids(tiny_dataset: str) -> None:
    info = validate(tiny_dataset)
    assert (info.version, info.grids, info.meshes) == (2, ("softras-iou", "exact"), True)
    with GroundTruth(tiny_dataset, "softras") as gt, h5py.File(tiny_dataset) as f:
        for i in range(2):
            images, grids, verts, faces = object_record(CHAIR, SPLIT_OFFSET["test"] + i, 0)
            v, fc = gt.mesh(CHAIR, "test", i)
            np.testing.assert_array_equal(v.numpy(), verts)
            np.testing.assert_array_equal(fc.numpy(), faces)
            np.testing.assert_array_equal(f[CHAIR]["test/images"][i], images)
            np.testing.assert_array_equal(gt.voxels(CHAIR, "test", i).numpy(), grids["softras-iou"])
            np.testing.assert_array_equal(f[CHAIR]["test/voxels_exact"][i].astype(bool), grids["exact"])
            np.testing.assert_array_equal(grids["exact"], make_object(CHAIR, SPLIT_OFFSET["test"] + i, 0)[2])
        assert gt.grid(CHAIR, "test").dataset == "voxels" and gt.describe()["matches"]
    with GroundTruth(tiny_dataset, "exact") as gt:
        assert gt.grid(CHAIR, "test").dataset == "voxels_exact" and gt.notes() == []


def _copy_edit(src: str, dst: Path, edit) -> Path:
    dst.write_bytes(Path(src).read_bytes())
    with h5py.File(dst, "r+") as f:
        edit(f)
    return dst


@pytest.mark.parametrize("edit, message", [
    (lambda f: f[f"{CHAIR}/train/voxels"].attrs.__delitem__("protocol"), "attribute protocol=None"),
    (lambda f: f[f"{CHAIR}/train/voxels_exact"].attrs.__setitem__("protocol", "softras"), "expected exact"),
    (lambda f: f.__delitem__(f"{CHAIR}/val/mesh_faces"), "missing dataset (GT meshes need"),
    (lambda f: f[f"{TABLE}/test/mesh_offsets"].__setitem__(1, (10 ** 6, 0)), "never decrease and end at"),
    (lambda f: (f.__delitem__(f"{CHAIR}/test/mesh_offsets"),
                f.create_dataset(f"{CHAIR}/test/mesh_offsets", data=np.zeros((2, 2), np.int64))), "expected (3, 2)"),
])
def test_bad_v2_files_are_one_line_errors(tiny_dataset: str, tmp_path: Path, edit, message: str) -> None:
    bad = _copy_edit(tiny_dataset, tmp_path / "bad.h5", edit)
    with pytest.raises(DatasetFormatError) as e:
        validate(bad)
    assert message in str(e.value) and str(bad) in str(e.value) and "\n" not in str(e.value)


def test_mesh_with_face_index_out_of_range_is_named(tiny_dataset: str, tmp_path: Path) -> None:
    bad = _copy_edit(tiny_dataset, tmp_path / "faces.h5", lambda f: f[f"{CHAIR}/train/mesh_faces"].__setitem__(0, 999))
    validate(bad)  # offsets are consistent; the face values are only read with the mesh
    with GroundTruth(bad, "softras") as gt, pytest.raises(DatasetFormatError, match="mesh of object 0"):
        gt.mesh(CHAIR, "train", 0)


def test_v1_files_validate_and_report_their_grid(v1_file: str, tmp_path: Path) -> None:
    info = validate(v1_file)
    assert (info.version, info.grids, info.meshes) == (1, ("exact",), False)
    npz = tmp_path / "npz_v1.h5"
    write_v1(npz, {CHAIR: {"train": 1, "val": 1}}, npz_like=True)
    assert validate(npz).grids == ("softras-iou",)
    with h5py.File(npz) as f:
        assert stored_grid_protocol(f[CHAIR], "val") == "softras-iou"
    with GroundTruth(v1_file, "softras") as gt:
        assert not gt.has_meshes(CHAIR, "test") and gt.mesh(CHAIR, "test", 0) is None
        assert gt.grid(CHAIR, "test").protocol == "exact" and not gt.grid(CHAIR, "test").matches
        assert "mixes two grids" in gt.notes()[0]


# ----------------------------------------------------------------------------------------------
# Ground-truth grids and the scoring functions
# ----------------------------------------------------------------------------------------------

def _box(open_top: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    box = trimesh.creation.box(extents=(0.6, 0.3, 0.45))
    faces = np.asarray(box.faces)
    if open_top:
        normals = np.asarray(box.face_normals)
        faces = faces[normals[:, 1] < 0.5]  # remove the two +y triangles: a hole SoftRas's flood fill leaks through
    return torch.tensor(np.asarray(box.vertices), dtype=torch.float32), torch.tensor(faces, dtype=torch.int64)


def _solid_box(protocol: str) -> torch.Tensor:
    lo, hi = grid_bounds(protocol)
    c = lo + (torch.arange(32, dtype=torch.float64) + 0.5) * (hi - lo) / 32
    inside = [(c.abs() < h) for h in (0.3, 0.15, 0.225)]
    return inside[0][:, None, None] & inside[1][None, :, None] & inside[2][None, None, :]


def test_grid_bounds() -> None:
    assert grid_bounds("exact") == (-0.5, 0.5)
    assert grid_bounds("softras") == pytest.approx((-16 / 31, 16 / 31))
    with pytest.raises(ValueError, match="unknown 3D-IoU protocol"):
        grid_bounds("nmr")


def test_ground_truth_grid_closed_and_open_mesh() -> None:
    v, f = _box()
    soft = voxelize(v[None], f, protocol="softras")[0]
    assert torch.equal(ground_truth_grid(v, f, _solid_box("softras"), "softras"), soft)  # closed: SoftRas's grid
    assert torch.equal(ground_truth_grid(v, f, _solid_box("exact"), "exact"), _solid_box("exact"))
    vo, fo = _box(open_top=True)
    leaky = voxelize(vo[None], fo, protocol="softras")[0]
    gt = ground_truth_grid(vo, fo, _solid_box("softras"), "softras")
    assert leaky.sum() < 0.7 * soft.sum()  # the flood fill leaks through the hole: a shell
    assert torch.equal(gt, soft)  # the solid keeps the interior; same cells as the closed box here


def test_mesh_metrics_protocols_and_reference_points() -> None:
    v, f = _box()
    verts = torch.stack([v, v * 0.8])
    for protocol in ("softras", "exact"):
        gt = ground_truth_grid(v, f, _solid_box(protocol), protocol)[None].expand(2, -1, -1, -1)
        m = mesh_metrics(verts, f, gt, protocol)
        assert m["iou"][0] == 1 and 0.3 < m["iou"][1] < 0.9
        assert m["iou"][1] == iou_3d(voxelize(verts[1:], f, protocol=protocol), gt[1:])[0]
        ref = sample_mesh_surface(v, f, 4096, torch.Generator().manual_seed(1))
        with_points = mesh_metrics(verts, f, gt, protocol, ref_points=ref)
        assert with_points["chamfer"][0] < 0.015 < 0.03 < with_points["chamfer"][1]  # against its own surface
        assert with_points["fscore"][0] == 1
        assert set(mesh_metrics(verts, f, gt, protocol, full=False)) == {"iou"}
    exact_gt = _solid_box("exact")[None].expand(2, -1, -1, -1)
    old = mesh_vs_voxels_metrics(verts, f, exact_gt)
    new = mesh_metrics(verts, f, exact_gt, "exact")
    for k in old:
        torch.testing.assert_close(old[k], new[k], equal_nan=True)


# ----------------------------------------------------------------------------------------------
# Reference rows, the oracle
# ----------------------------------------------------------------------------------------------

def test_reference_rows_follow_the_protocol(tiny_dataset: str) -> None:
    tv, tf = icosphere(3)
    template = tv * 0.25
    for protocol in ("softras", "exact"):
        row = template_row(template, tf, tiny_dataset, "test", protocol=protocol)
        with GroundTruth(tiny_dataset, protocol) as gt:
            grids = gt.voxels(TABLE, "test", 0, 2)
            train = gt.voxels(TABLE, "train", 0, 6)
        occ = voxelize(template[None], tf, protocol=protocol)[0]
        assert row["per_category"]["table"]["iou"] == pytest.approx(float(iou_3d(occ[None].expand_as(grids),
                                                                                grids).mean()))
        mean = mean_shape_row(tiny_dataset, "test", protocol=protocol)
        shape = train.double().mean(0) > 0.5
        assert mean["per_category"]["table"]["iou"] == pytest.approx(float(iou_3d(shape[None].expand_as(grids),
                                                                                  grids).mean()))


def test_oracle_row_on_synthetic_data(tiny_dataset: str) -> None:
    soft = oracle_row(tiny_dataset, "test", protocol="softras")
    assert soft["mean_loss"] is None and set(soft["per_category"]) == {"chair", "table"}
    for m in soft["per_category"].values():
        assert m["iou"] >= 0.97 and m["n"] == 2  # the GT grid is the protocol's own: the ceiling is ~1
        assert m["chamfer"] < 0.02 and m["fscore"] > 0.99  # GT mesh points against other GT mesh points (floor)
    exact = oracle_row(tiny_dataset, "test", protocol="exact", full_metrics=False)
    assert set(exact["per_category"]["chair"]) == {"iou", "n"}
    assert 0.8 < exact["mean_iou"] <= 1  # ray parity of overlapping parts (XOR), against the union


def test_oracle_on_converted_closed_meshes(tmp_path: Path) -> None:
    src = tmp_path / "closed" / "03001627"
    src.mkdir(parents=True)
    shapes = {"box": trimesh.creation.box(extents=(1.0, 0.3, 0.6)),
              "cyl": trimesh.creation.cylinder(radius=0.3, height=1.0, sections=24),
              "ball": trimesh.creation.icosphere(subdivisions=2, radius=0.5),
              "capsule": trimesh.creation.capsule(height=0.8, radius=0.2),
              "plate": trimesh.creation.box(extents=(1.0, 0.02, 0.7)),  # thinner than a cell
              "cone": trimesh.creation.cone(radius=0.4, height=1.0)}
    for name, mesh in shapes.items():
        mesh.export(src / f"{name}.obj")
    out = tmp_path / "closed.h5"
    info, skipped = convert_meshes(src.parent, out, split=(0.5, 0.0, 0.5), workers=1, progress=False)
    assert skipped == [] and info.meshes and info.grids == ("softras-iou", "exact")
    row = oracle_row(out, "test", protocol="softras")
    assert row["mean_iou"] >= 0.97, row
    with GroundTruth(out, "exact") as gt:  # the exact grid is still the v1 centre sampling
        assert gt.grid("03001627", "test").dataset == "voxels_exact"


# ----------------------------------------------------------------------------------------------
# The eval pipeline: protocol, per-object records, meshes named after them; v1 files
# ----------------------------------------------------------------------------------------------

def _train(data: str, out: Path, **kw) -> Path:
    cfg = dict(data=data, out=str(out), iterations=2, batch_size=2, val_every=2, val_objects=1, val_views="1",
               log_every=1, device="cpu", tensorboard=False)
    cfg.update(kw)
    train(TrainConfig(**cfg))
    return out


@pytest.fixture(scope="module")
def run_dir(tiny_dataset: str, tmp_path_factory) -> Path:
    return _train(tiny_dataset, tmp_path_factory.mktemp("run") / "run")


def test_eval_json_records_protocol_per_object_and_meshes(tiny_dataset: str, run_dir: Path) -> None:
    from pipelines import eval as eval_pipeline

    rec = eval_pipeline.main(["--checkpoint", str(run_dir), "--data", tiny_dataset, "--views", "0,6,12",
                              "--device", "cpu", "--figures", "1", "--json", str(run_dir / "soft.json"),
                              "--out", str(run_dir / "soft")])
    data = json.loads((run_dir / "soft.json").read_text())
    assert data["protocol"] == "softras-iou" and data["ground_truth"]["matches"] and data["ground_truth"]["meshes"]
    assert set(data["baselines"]) == {"template", "mean_shape", "retrieval", "oracle"}
    assert set(data["reference_notes"]) == {"retrieval"}
    assert data["baselines"]["oracle"]["mean_iou"] >= 0.97
    per = data["per_object"]
    assert len(per) == 2 * 2 * 3 and {p["view"] for p in per} == {0, 6, 12}
    for name, m in data["per_category"].items():
        ious = [p["iou"] for p in per if p["category"] == name]
        assert m["iou"] == pytest.approx(np.mean(ious)) and m["n"] == len(ious)
    kept = [p for p in per if "mesh" in p]
    assert len(kept) == 2  # --figures 1: one per category
    manifest = {m["stem"]: m for m in json.loads((run_dir / "soft" / "meshes" / "predictions.json").read_text())}
    for p in kept:
        assert (run_dir / "soft" / "meshes" / f"{p['mesh']}.obj").is_file()
        assert manifest[p["mesh"]]["iou"] == pytest.approx(p["iou"]) and manifest[p["mesh"]]["view"] == p["view"]
    exact = eval_pipeline.main(["--checkpoint", str(run_dir), "--data", tiny_dataset, "--views", "0,6,12",
                                "--device", "cpu", "--figures", "0", "--protocol", "exact",
                                "--json", str(run_dir / "exact.json")])
    assert exact["protocol"] == "exact" and exact["ground_truth"]["grids"][f"{CHAIR}/test"] == "voxels_exact (exact)"
    assert exact["mean_iou"] != rec["mean_iou"]
    assert exact["baselines"]["template"]["mean_iou"] != rec["baselines"]["template"]["mean_iou"]


def test_bad_protocol_flag_is_one_line_error(run_dir: Path, tiny_dataset: str, capsys) -> None:
    from pipelines import eval as eval_pipeline

    with pytest.raises(SystemExit) as e:
        eval_pipeline.main(["--checkpoint", str(run_dir), "--data", tiny_dataset, "--protocol", "nmr"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--protocol" in err[0] and "softras" in err[0]


def test_v1_file_still_trains_and_evaluates(v1_file: str, tmp_path: Path) -> None:
    from pipelines import eval as eval_pipeline

    out = _train(v1_file, tmp_path / "v1run")
    rec = eval_pipeline.main(["--checkpoint", str(out), "--data", v1_file, "--views", "2", "--device", "cpu",
                              "--figures", "1"])
    assert rec["protocol"] == "softras-iou" and not rec["ground_truth"]["matches"] and not rec["ground_truth"]["meshes"]
    assert any("mixes two grids" in n for n in rec["notes"])
    assert "oracle" not in rec["baselines"] and "no ground-truth meshes" in rec["reference_notes"]["oracle"]
    assert 0 <= rec["mean_iou"] <= 1 and len(rec["per_object"]) == 2 * 1 * 2
    exact = eval_pipeline.main(["--checkpoint", str(out), "--data", v1_file, "--views", "2", "--device", "cpu",
                                "--figures", "0", "--protocol", "exact", "--json", str(tmp_path / "e.json")])
    assert exact["ground_truth"]["matches"] and exact["notes"] == []


def test_bench_protocols_reports_every_implementation() -> None:
    from tools.bench import bench_protocols

    out = bench_protocols(batch=2, repeats=1)
    assert set(out) == {"softras/cpp", "softras/torch", "exact"}
    assert isinstance(out["softras/torch"], float) and out["softras/torch"] > 0 and out["exact"] > 0
    assert isinstance(out["softras/cpp"], str) or out["softras/cpp"] > 0  # a reason when no compiler


def test_protocol_old_name_is_an_alias_and_files_keep_theirs(tmp_path: Path) -> None:
    """``softras-iou`` was ``softras`` (the backend's name): the old name still selects it everywhere,
    and dataset files still store ``softras`` (the format is unchanged)."""
    from recon.config import EvalConfig
    from recon.data.schema import DatasetWriter
    from recon.ops.voxelize import check_protocol

    assert check_protocol("softras") == check_protocol("softras-iou") == "softras-iou"
    assert EvalConfig(checkpoint="run", protocol="softras").protocol == "softras-iou"
    assert grid_bounds("softras") == grid_bounds("softras-iou")
    with pytest.raises(ValueError, match="unknown 3D-IoU protocol"):
        check_protocol("soft")
    path = tmp_path / "d.h5"
    grid = np.zeros((32, 32, 32), np.uint8)
    with DatasetWriter(path, voxel_protocol="exact", grids=("softras-iou",)) as w:
        w.add_category(CHAIR, "chair", source="test")
        for split in ("train", "val", "test"):
            w.create_split(CHAIR, split)
            w.append(CHAIR, split, np.zeros((24, 4, 64, 64), np.uint8), grid, "a", grids={"softras-iou": grid})
    with h5py.File(path) as f:
        assert f[f"{CHAIR}/test/voxels_softras"].attrs["protocol"] == "softras"
    assert validate(path).grids == ("exact", "softras-iou")
    with GroundTruth(path, "softras") as gt:
        assert gt.grid(CHAIR, "test").dataset == "voxels_softras" and gt.grid(CHAIR, "test").matches
