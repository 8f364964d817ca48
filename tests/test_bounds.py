"""Bounded work on any input (docs/operations.md): every numeric flag has a valid range checked up
front; predict refuses special files as inputs before opening them and checks every output before
writing any; images over the pixel limit get one line; ``convert meshes`` bounds each mesh (file size,
face budget by decimation, workers by free memory); and the minor cases of issue 20 (symlinked and
read-only outputs, the --json message, weight-shape errors)."""

from __future__ import annotations

import dataclasses
import os
import struct
import subprocess
import sys
import warnings
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from checkpoints import untrained_checkpoint
import trimesh
from PIL import Image

from recon.config import CompareConfig, DemoConfig, EvalConfig, TrainConfig
from recon.ranges import MAX_STEPS, RANGES, Range, check_range

ROOT = Path(__file__).resolve().parents[1]


# -- numeric flags --------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [TrainConfig, EvalConfig, CompareConfig, DemoConfig])
def test_every_numeric_flag_has_a_range(cls):
    numeric = [f.name for f in dataclasses.fields(cls)
               if str(f.type).replace(" | None", "") in ("int", "float")]
    assert numeric and sorted(numeric) == sorted(RANGES[cls.__name__]), numeric
    doc = (ROOT / "docs" / "operations.md").read_text()
    for name in numeric:  # each is listed in the docs with its range
        assert f"`--{name.replace('_', '-')}`" in doc, name


@pytest.mark.parametrize("kw, message", [
    (dict(iterations=99999999999999999999999), "--iterations 99999999999999999999999: expected an integer in "
                                               "[1, 2,147,483,647]"),
    (dict(iterations=MAX_STEPS + 1), "--iterations"),
    (dict(lr=5.0), "--lr 5.0: expected a number in (0, 1]"),
    (dict(val_every=10 ** 12), "--val-every"),
    (dict(lambda_flat=1e300), "--lambda-flat"),
    (dict(keep=10 ** 6), "--keep"),
])
def test_train_flags_out_of_range_are_refused(kw, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace("[", r"\[").replace("]", r"\]")
                       .replace(")", r"\)")):
        TrainConfig(**kw).check_flags()
    TrainConfig(iterations=MAX_STEPS).check_flags()  # the bound itself is valid


def test_range_checks_reject_nan_fractions_and_bools():
    whole, frac = Range(1, 10), Range(0, 1, lo_open=True, integer=False)
    for value in (float("nan"), 2.5, True, "3"):
        with pytest.raises(ValueError, match="--x"):
            check_range("--x", value, whole)
    for value in (0.0, float("nan"), float("inf"), 1.5):
        with pytest.raises(ValueError, match=r"--y .*\(0, 1\]"):
            check_range("--y", value, frac)
    check_range("--x", 10, whole)
    check_range("--y", 1.0, frac)


def test_demo_budget_below_the_minimum_is_refused_unless_steps_are_given(tmp_path):
    with pytest.raises(ValueError, match=r"--budget-minutes 0.01: expected a number in \[1, 10,080\]"):
        DemoConfig.of(budget_minutes=0.01, out=str(tmp_path / "d")).validate()
    DemoConfig.of(budget_minutes=0.01, iterations=40, out=str(tmp_path / "d")).validate()  # the budget is unused


def test_eval_and_compare_flags_have_upper_bounds():
    with pytest.raises(ValueError, match="--figures 100000"):
        EvalConfig(checkpoint="x", figures=100_000).validate()
    with pytest.raises(ValueError, match="--max-per-category"):
        CompareConfig(max_per_category=10 ** 9).validate()


# -- predict: --fill, special files, outputs, pixel limit ---------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", "baseline")


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    """A red disc on white, 96 px JPEG."""
    yy, xx = np.mgrid[:96, :96]
    rgb = np.full((96, 96, 3), 255, np.uint8)
    rgb[(yy - 48) ** 2 + (xx - 44) ** 2 < 30 ** 2] = (200, 40, 30)
    path = tmp_path_factory.mktemp("pics") / "disc.jpg"
    Image.fromarray(rgb).save(path, quality=95)
    return path


def _predict(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pipelines.predict", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("fill", ["1e-6", "1e-310", "0.003", "1.5", "nan"])
def test_predict_fill_out_of_range_is_one_line_before_any_work(fill, picture, tmp_path, capsys):
    from pipelines import predict

    with pytest.raises(SystemExit) as e:
        predict.main([str(picture), "--checkpoint", str(tmp_path / "absent.pt"), "--out", str(tmp_path / "o"),
                      "--fill", fill])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1
    assert err[0].startswith(f"error: --fill {float(fill)}: expected a fraction of the frame in [0.1, 1]"), err


def test_predict_refuses_a_fifo_input_and_goes_on_with_the_others(checkpoint, picture, tmp_path):
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    proc = _predict([str(fifo), str(picture), "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu"])
    assert proc.returncode == 2, proc.stderr
    assert f"error: {fifo}: is a FIFO, expected a PNG or JPEG image file" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["disc.obj", "disc_turntable.png"]  # the other image was done


def test_predict_checks_every_output_before_writing_any(checkpoint, picture, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "disc_turntable.png")
    proc = _predict([str(picture), "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu"], 120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{out / 'disc_turntable.png'}: exists and is a FIFO" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["disc_turntable.png"]  # no disc.obj written first


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header declares ``width x height`` (8-bit RGB) and whose data is one tiny zlib block:
    enough for Image.open (which reads the header); the pixels are never needed."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))


def test_images_over_the_pixel_limit_get_one_line_and_no_warning(tmp_path):
    from recon.data.image_io import MAX_IMAGE_PIXELS, ImageError, load_rgba

    path = tmp_path / "huge.png"
    _png_header_only(path, 10_000, 10_000)  # 100 MP: Pillow would warn (DecompressionBombWarning) and decode it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageError, match=r"^image is too large: 10000x10000 = 100,000,000 pixels, more than the "
                                             r"limit of 64,000,000"):
            load_rgba(path)
    assert not caught, [str(w.message) for w in caught]
    assert MAX_IMAGE_PIXELS == 64_000_000


# -- convert meshes: file size, face budget, workers ----------------------------------------------------

def _sphere(subdivisions: int) -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdivisions=subdivisions, radius=0.5)


def test_a_mesh_over_the_face_budget_is_decimated_and_keeps_its_shape(tmp_path):
    from recon.data.meshes import load_mesh, occupancy

    path = tmp_path / "fine.obj"
    _sphere(6).export(path)  # 81,920 faces
    full_v, full_f = load_mesh(path, max_faces=10 ** 9)
    v, f = load_mesh(path, max_faces=40_000)
    assert len(full_f) == 81_920 and 0 < len(f) <= 40_000
    a, b = occupancy(full_v, full_f), occupancy(v, f)
    assert (a & b).sum() / (a | b).sum() > 0.97  # the shape moved by less than a voxel
    np.testing.assert_allclose(np.abs(v).max(0), np.abs(full_v).max(0), atol=1 / 64)


def test_convert_meshes_decimates_to_the_budget_and_refuses_what_cannot_meet_it(tmp_path, monkeypatch):
    import h5py

    import recon.data.meshes as meshes
    from recon.data.decimate import CLUSTER_RESOLUTIONS

    src = tmp_path / "src" / "ball"
    src.mkdir(parents=True)
    _sphere(6).export(src / "a.obj")  # 81,920 faces
    big = src / "big.obj"
    big.write_text((src / "a.obj").read_text() + "# padding\n" * 1000)
    monkeypatch.setattr(meshes, "MAX_MESH_FACES", 40_000)
    monkeypatch.setattr(meshes, "MAX_MESH_BYTES", (src / "a.obj").stat().st_size + 100)
    with pytest.warns(UserWarning) as w:
        _, skipped = meshes.convert_meshes(src.parent, tmp_path / "o.h5", split=(1, 0, 0), workers=1, progress=False)
    assert [(Path(p).name, r) for p, r in skipped] == [
        ("big.obj", f"file of {big.stat().st_size:,} bytes: larger than the limit of {meshes.MAX_MESH_BYTES:,} bytes "
                    f"per mesh file (decimate it first)")]
    assert "big.obj" in str(w[0].message)
    with h5py.File(tmp_path / "o.h5") as f:
        offsets = f["ball/train/mesh_offsets"][:]
    assert len(offsets) == 2 and 0 < offsets[1, 1] <= 40_000  # the stored mesh is the decimated one
    # a budget that clustering cannot meet: one line with the counts and the budget
    with pytest.raises(meshes.MeshError, match=rf"after vertex clustering at {CLUSTER_RESOLUTIONS[-1]}\^3 cells: "
                                               r"more than the budget of 10 faces"):
        meshes.load_mesh(src / "a.obj", max_faces=10)


def test_default_workers_follow_free_memory(tmp_path, monkeypatch):
    import recon.data.meshes as meshes

    f = tmp_path / "m.obj"
    f.write_bytes(b"v 0 0 0\n" * 1000)
    monkeypatch.setattr(meshes.os, "cpu_count", lambda: 16)
    monkeypatch.setattr(meshes, "available_memory", lambda: 2 * 2 ** 30)
    assert meshes.mesh_workers([f], None) == 3  # 2 GiB / (600 MiB + 12 x 8 kB)
    monkeypatch.setattr(meshes, "available_memory", lambda: 100 * 2 ** 30)
    assert meshes.mesh_workers([f], None) == 16  # cores are the limit
    monkeypatch.setattr(meshes, "available_memory", lambda: 2 ** 20)
    assert meshes.mesh_workers([f], None) == 1  # never none
    assert meshes.mesh_workers([f], 5) == 5  # an explicit --workers is kept


# -- outputs: symlinks, read-only folders, messages -----------------------------------------------------

def test_an_output_that_is_a_symlink_to_a_file_is_written_through(tmp_path):
    from recon.io import atomic_write_bytes

    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new"
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "nowhere" / "x.json")
    atomic_write_bytes(dangling, b"d")  # a dangling link is replaced by the file, nothing created elsewhere
    assert not dangling.is_symlink() and dangling.read_text() == "d" and not (tmp_path / "nowhere").exists()


def test_an_unwritable_folder_is_reported_by_the_users_path(tmp_path, monkeypatch):
    import recon.io as rio

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / ".out.h5.abc123.tmp"))

    monkeypatch.setattr(rio.tempfile, "mkstemp", refuse)
    with pytest.raises(rio.OutputWriteError) as e:  # a user error (recon.errors), an OSError with the errno
        rio.atomic_write_bytes(tmp_path / "out.h5", b"x")
    assert e.value.errno == 13 and e.value.filename == str(tmp_path / "out.h5") and ".tmp" not in str(e.value)


def test_convert_checks_that_out_can_be_written_before_any_work(tmp_path, monkeypatch):
    from recon.config import ConvertConfig
    from recon.workflows.convert import convert

    (tmp_path / "regfile").write_text("")
    with pytest.raises(ValueError, match=rf"^--out {tmp_path / 'regfile' / 'x.h5'}: {tmp_path / 'regfile'} is not a "
                                         r"directory$"):
        convert(ConvertConfig("synthetic", out=str(tmp_path / "regfile" / "x.h5")))


def test_json_under_a_regular_file_names_the_file_that_is_not_a_directory(tmp_path):
    from recon.io import OutputPathError, check_writable_file

    (tmp_path / "regfile").write_text("")
    path = tmp_path / "regfile" / "e.json"
    with pytest.raises(OutputPathError) as e:
        check_writable_file(path, "--json")
    assert str(e.value) == f"--json {path}: {tmp_path / 'regfile'} is not a directory"


def test_wrong_weight_shapes_name_the_tensor_and_both_shapes(tmp_path):
    from recon.checkpoint import CheckpointError, save_checkpoint
    from recon.models import Reconstructor
    from recon.runs import load_model

    state = Reconstructor("baseline").state_dict()
    name = next(k for k, v in state.items() if v.dim() == 2)
    state[name] = torch.zeros(state[name].shape[0] + 1, state[name].shape[1])
    save_checkpoint({"version": 1, "model": state, "step": 0, "config": asdict(TrainConfig())}, tmp_path / "w.pt")
    with pytest.raises(CheckpointError) as e:
        load_model(tmp_path / "w.pt")
    text = str(e.value)
    assert f"size mismatch for {name}" in text and "torch.Size" in text and "\n" not in text, text


def test_convert_out_that_is_a_symlink_to_a_file_keeps_the_link(tmp_path):
    from recon.data.schema import validate
    from recon.data.synthetic import build_synthetic

    target = tmp_path / "data" / "real.h5"
    target.parent.mkdir()
    target.write_bytes(b"an older file")
    link = tmp_path / "link.h5"
    link.symlink_to(target)
    build_synthetic(link, per_category=(1, 1, 1), categories=["03001627"], seed=0, workers=1, progress=False)
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert validate(target).categories == {"03001627": "chair"}
