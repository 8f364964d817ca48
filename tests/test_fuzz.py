"""Hostile inputs: corrupt datasets, npz and mesh files, non-images, and every CLI flag with bad
values. Each must end in a clear error (one ``error:`` line on stderr, exit status 2, or a
documented skip), never a traceback, a hang or a partial output file."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from dataclasses import asdict
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recon.data.schema import DatasetFormatError, DatasetInfo, DatasetWriter, validate

REPO = Path(__file__).resolve().parents[1]
FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
                derandomize=True)
NON_UTF8 = os.fsdecode(b"caf\xe9-\xff\xfe")  # a Latin-1 file name: not valid UTF-8


def _small_dataset(path: Path, n: int = 1, splits: tuple[str, ...] = ("train", "val")) -> Path:
    rng = np.random.default_rng(0)
    with DatasetWriter(path) as w:
        w.add_category("03001627", "chair", source="fuzz")
        for split in splits:
            w.create_split("03001627", split, capacity=n)
            for i in range(n):
                images = np.zeros((24, 4, 64, 64), np.uint8)
                images[:, :, 20:40, 20:40] = rng.integers(0, 255, (24, 4, 20, 20), dtype=np.uint8)
                w.append("03001627", split, images, np.zeros((32,) * 3, bool), f"obj{i}")
    return path


@pytest.fixture(scope="module")
def valid_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _small_dataset(tmp_path_factory.mktemp("fuzz") / "valid.h5")


def _expect_format_error(path: Path | str) -> str:
    with pytest.raises(DatasetFormatError) as exc:
        validate(path)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(str(path)), msg
    return msg


def _copy_with(valid: Path, dst: Path, edit) -> Path:
    dst.write_bytes(valid.read_bytes())
    with h5py.File(dst, "a") as f:
        edit(f)
    return dst


# -- the HDF5 validator --------------------------------------------------------------------

@pytest.mark.parametrize("cut", [0, 8, 100, 1000, 0.5, 0.9, -1])
def test_truncated_dataset(valid_h5: Path, tmp_path: Path, cut: float) -> None:
    raw = valid_h5.read_bytes()
    n = int(len(raw) * cut) if isinstance(cut, float) else (len(raw) + cut if cut < 0 else cut)
    p = tmp_path / "cut.h5"
    p.write_bytes(raw[:n])
    _expect_format_error(p)


@pytest.mark.parametrize("attr, value, message", [
    ("image_size", np.inf, "not a valid int"),
    ("image_size", np.nan, "not a valid int"),
    ("image_size", -64, "must be positive"),
    ("image_size", np.array([64, 64]), "not a valid int"),
    ("image_size", 63.5, "not a valid int"),
    ("num_views", 0, "must be positive"),
    ("elevation", np.nan, "not a valid float"),
    ("distance", np.inf, "not a valid float"),
    ("viewing_angle", -np.inf, "not a valid float"),
    ("azimuth_step", "fifteen", "not a valid float"),
    ("version", 3, "unsupported format version"),
    ("version", np.inf, "not a valid int"),
    ("format", np.bytes_(b"\xff\xfe"), "expected 'recon-hdf5'"),
    ("format", 7, "not a valid str"),
])
def test_bad_file_attributes(valid_h5: Path, tmp_path: Path, attr: str, value, message: str) -> None:
    def edit(f):
        f.attrs[attr] = value
    assert message in _expect_format_error(_copy_with(valid_h5, tmp_path / "a.h5", edit))


def _replace(path: str, data=None, **kw):
    def edit(f):
        del f[path]
        if data is not None:
            f.create_dataset(path, data=data)
        else:
            f.create_dataset(path, **kw)
    return edit


def _declare_huge(f: h5py.File, n: int) -> None:
    g = f["03001627/train"]
    for key, tail, dtype in (("images", (24, 4, 64, 64), np.uint8), ("voxels", (32, 32, 32), np.uint8),
                             ("object_ids", (), h5py.string_dtype())):
        del g[key]
        g.create_dataset(key, shape=(n, *tail), dtype=dtype, chunks=(1, *tail) if tail else (1024,))


@pytest.mark.parametrize("edit, message", [
    (_replace("03001627/train/images", data=np.zeros((1, 24, 4, 64, 64), np.float32)), "expected uint8"),
    (_replace("03001627/train/images", data=np.zeros((1, 24, 3, 64, 64), np.uint8)), "expected (N, 24, 4, 64, 64)"),
    (_replace("03001627/train/images", data=np.zeros((0,), np.uint8)), "expected (N, 24, 4, 64, 64)"),
    (_replace("03001627/train/images", data=np.uint8(3)), "expected (N, 24, 4, 64, 64)"),
    (_replace("03001627/train/voxels", data=np.zeros((1, 32, 32, 32), np.float64)), "expected uint8 or bool"),
    (_replace("03001627/train/voxels", data=np.zeros((2, 32, 32, 32), np.uint8)), "matching images"),
    (_replace("03001627/train/object_ids", data=np.zeros((1,), np.int32)), "expected variable-length strings"),
    # huge declared shapes: nothing stored behind them (HDF5 would read zeros forever)
    (lambda f: _declare_huge(f, 2 ** 40), "not stored"),
    (_replace("03001627/train/voxels", shape=(1, 32, 32, 32), dtype=np.uint8), "not stored"),
    (lambda f: f["03001627/train/images"].resize(5, axis=0), "matching images"),
    (lambda f: f.create_group("03001627/holdout"), "unknown split"),
    (lambda f: f.create_dataset("stray", data=[1]), "expected a category group"),
    (lambda f: [f.__delitem__(k) for k in list(f)], "no category groups"),
    (lambda f: f.create_group(b"\xff\xfe"), "unreadable"),  # a non-UTF-8 group name
])
def test_bad_layouts(valid_h5: Path, tmp_path: Path, edit, message: str) -> None:
    assert message in _expect_format_error(_copy_with(valid_h5, tmp_path / "l.h5", edit))


def test_zero_train_objects_is_refused_by_validate(tmp_path: Path) -> None:
    from recon.data.dataset import PairDataset

    p = _small_dataset(tmp_path / "empty.h5", n=0)
    assert "/03001627/train: no train objects" in _expect_format_error(p)
    with pytest.raises(DatasetFormatError, match="/03001627/train: no train objects"):
        PairDataset(p, "train")


def test_not_files(tmp_path: Path) -> None:
    assert "file not found" in _expect_format_error(tmp_path / "missing.h5")
    assert "expected a file" in _expect_format_error(tmp_path)
    (tmp_path / f"{NON_UTF8}.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    _expect_format_error(tmp_path / f"{NON_UTF8}.h5")


@FUZZ
@given(data=st.binary(min_size=0, max_size=3000), hdf5_magic=st.booleans())
def test_random_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes, hdf5_magic: bool) -> None:
    p = tmp_path_factory.mktemp("rnd") / "r.h5"
    p.write_bytes((b"\x89HDF\r\n\x1a\n" if hdf5_magic else b"") + data)
    _expect_format_error(p)


@FUZZ
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=30),
       cut=st.none() | st.floats(0, 1))
def test_mutated_dataset_fails_cleanly_when_read(valid_h5: Path, tmp_path_factory: pytest.TempPathFactory,
                                                 flips: list, cut: float | None) -> None:
    """Random byte flips anywhere (metadata or compressed chunks), then read like training and eval do."""
    from recon.data.dataset import PairDataset, iter_objects

    raw = bytearray(valid_h5.read_bytes())
    for where, value in flips:
        raw[int(where * len(raw))] = value
    if cut is not None:
        raw = raw[: int(cut * len(raw))]
    p = tmp_path_factory.mktemp("mut") / "m.h5"
    p.write_bytes(bytes(raw))
    try:
        validate(p)
        ds = PairDataset(p, "train", with_voxels=True)
        for i in range(48):
            ds[i]
        for _ in iter_objects(p, "val"):
            pass
    except ValueError as e:  # DatasetFormatError, or "split has no objects" after a flip in a count
        assert "\n" not in str(e) and str(p) in str(e), e


_ATTR_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2 ** 63), 2 ** 63 - 1), st.text(max_size=8),
    st.binary(max_size=8), st.lists(st.integers(0, 100), min_size=0, max_size=3).map(np.array), st.booleans())


@FUZZ
@given(values=st.fixed_dictionaries({}, optional={k: _ATTR_VALUES for k in (
    "format", "version", "image_size", "num_views", "elevation", "distance", "viewing_angle", "azimuth_step")}))
def test_random_attributes(valid_h5: Path, tmp_path_factory: pytest.TempPathFactory, values: dict) -> None:
    p = tmp_path_factory.mktemp("attr") / "a.h5"

    def edit(f):
        for k, v in values.items():
            try:
                f.attrs[k] = v
            except (TypeError, ValueError):  # h5py cannot store this value at all
                del f.attrs[k]
    _copy_with(valid_h5, p, edit)
    try:
        info = validate(p)
    except DatasetFormatError as e:
        assert "\n" not in str(e) and str(e).startswith(str(p))
    else:
        assert isinstance(info, DatasetInfo) and info.image_size == 64 and info.num_views == 24


def test_corrupt_chunk_mid_training_is_a_format_error(valid_h5: Path, tmp_path: Path) -> None:
    from recon.data.dataset import PairDataset

    p = tmp_path / "c.h5"
    p.write_bytes(valid_h5.read_bytes())
    with h5py.File(p) as f:
        info = f["03001627/train/images"].id.get_chunk_info_by_coord((0, 5, 0, 0, 0))
    with open(p, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\xde\xad" * (info.size // 2))
    validate(p)  # metadata is intact: only reading the data can tell
    ds = PairDataset(p, "train")
    hit = next(i for i in range(10000) if 5 in ds.sample(i)[2:])
    with pytest.raises(DatasetFormatError, match=r"/03001627/train: object 0 is unreadable"):
        ds[hit]


# -- the npz converter ---------------------------------------------------------------------

def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _pair(folder: Path, images=None, voxels=None, cls: str = "03001627", split: str = "train") -> Path:
    folder.mkdir(exist_ok=True)
    _npz(folder / f"{cls}_{split}_images.npz",
         arr_0=np.zeros((2, 24, 4, 64, 64), np.uint8) if images is None else images)
    _npz(folder / f"{cls}_{split}_voxels.npz", arr_0=np.zeros((2, 32, 32, 32), bool) if voxels is None else voxels)
    return folder


def _truncate(path: Path, keep: float) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])


@pytest.mark.parametrize("case", ["truncated_images", "truncated_voxels", "zip_of_nothing", "wrong_dtype",
                                  "wrong_shape", "scalar", "pickled_objects", "no_arr_0", "count_mismatch",
                                  "random_bytes", "directory", "huge_declared_n"])
def test_npz_converter_bad_inputs(tmp_path: Path, case: str) -> None:
    from recon.data.softras_npz import convert_softras

    src = tmp_path / "src"
    if case.startswith("truncated"):
        _pair(src, images=np.random.default_rng(0).integers(0, 255, (2, 24, 4, 64, 64), dtype=np.uint8))
        _truncate(src / f"03001627_train_{case.split('_')[1]}.npz", 0.6)
    elif case == "zip_of_nothing":
        _pair(src)
        with zipfile.ZipFile(src / "03001627_train_images.npz", "w"):
            pass
    elif case == "wrong_dtype":
        _pair(src, images=np.zeros((2, 24, 4, 64, 64), np.float32))
    elif case == "wrong_shape":
        _pair(src, voxels=np.zeros((2, 64, 64, 64), bool))
    elif case == "scalar":
        _pair(src, images=np.uint8(1))
    elif case == "pickled_objects":
        _pair(src, images=np.array([{"x": 1}, None], dtype=object))
    elif case == "no_arr_0":
        _pair(src)
        _npz(src / "03001627_train_images.npz", a=np.zeros(1), b=np.zeros(1))
    elif case == "count_mismatch":
        _pair(src, voxels=np.zeros((3, 32, 32, 32), bool))
    elif case == "random_bytes":
        _pair(src)
        (src / "03001627_train_voxels.npz").write_bytes(os.urandom(5000))
    elif case == "directory":
        _pair(src)
        (src / "03001627_train_voxels.npz").unlink()
        (src / "03001627_train_voxels.npz").mkdir()
    elif case == "huge_declared_n":  # headers that promise 10^12 objects, then hold two
        src.mkdir()
        for kind, descr, tail in (("images", "|u1", (24, 4, 64, 64)), ("voxels", "|b1", (32, 32, 32))):
            with zipfile.ZipFile(src / f"03001627_train_{kind}.npz", "w") as z, z.open("arr_0.npy", "w") as fh:
                np.lib.format.write_array_header_1_0(fh, {"descr": descr, "fortran_order": False,
                                                          "shape": (10 ** 12, *tail)})
                fh.write(bytes(2 * int(np.prod(tail))))
    out = tmp_path / "out" / "x.h5"
    with pytest.raises((ValueError, FileNotFoundError)) as exc:
        convert_softras(src, out, voxel_axes="nmr", progress=False)
    assert "\n" not in str(exc.value) and "03001627_train" in str(exc.value), exc.value
    assert not out.exists()
    assert not (out.parent.exists() and list(out.parent.iterdir()))  # no temp file left either


# -- the mesh converter --------------------------------------------------------------------

_CUBE = ("\n".join(f"v {x} {y} {z}" for x in (0, 1) for y in (0, 1) for z in (0, 1)) + "\n"
         "f 1 2 4\nf 1 4 3\nf 5 7 8\nf 5 8 6\nf 1 5 6\nf 1 6 2\nf 3 4 8\nf 3 8 7\nf 1 3 7\nf 1 7 5\nf 2 6 8\nf 2 8 4\n")
_BAD_MESHES = {
    "empty.obj": (b"", "empty file"),
    "blank.obj": (b"  \n\n", "empty mesh"),
    "garbage.obj": (bytes(range(256)) * 3, "empty mesh"),
    "garbage.stl": (b"solid x\n" + bytes(range(200)), None),
    "garbage.glb": (b"glTF" + bytes(50), "unreadable"),
    "bomb.ply": (b"ply\nformat ascii 1.0\nelement vertex 99999999999\nend_header\n", None),
    "nan.obj": (b"v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "non-finite"),
    "inf.obj": (b"v inf 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "non-finite"),
    "huge.obj": (b"v 1e308 0 0\nv -1e308 0 0\nv 0 1e308 0\nf 1 2 3\n", "too large"),
    "point.obj": (b"v 1 1 1\nv 1 1 1\nv 1 1 1\nf 1 2 3\n", "zero extent"),
    "line.obj": (b"v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n", "zero area"),
    "badindex.obj": (b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 99\n", None),
    "nofaces.obj": (b"v 0 0 0\nv 1 0 0\n", "empty mesh"),
}


@pytest.mark.parametrize("name", sorted(_BAD_MESHES))
def test_bad_mesh_files_are_refused(tmp_path: Path, name: str) -> None:
    from recon.data.meshes import MeshError, load_mesh

    content, reason = _BAD_MESHES[name]
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(MeshError) as exc:
        load_mesh(p)
    assert "\n" not in str(exc.value) and (reason is None or reason in str(exc.value)), exc.value


def test_mesh_folder_skips_bad_files_and_refuses_all_bad(tmp_path: Path) -> None:
    from recon.data.meshes import convert_meshes

    src = tmp_path / "src" / "chair"
    src.mkdir(parents=True)
    for name, (content, _) in _BAD_MESHES.items():
        (src / name).write_bytes(content)
    (src / f"{NON_UTF8}.obj").write_bytes(b"# \xff\xfe not utf-8\n" + _CUBE.encode())  # the one usable mesh
    (src / "folder.obj").mkdir()  # not a file: not a mesh either
    out = tmp_path / "out" / "m.h5"
    with pytest.warns(UserWarning, match=f"skipped {len(_BAD_MESHES)} mesh file"):  # the documented skip
        info, skipped = convert_meshes(src.parent, out, split=(1, 0, 0), workers=1, progress=False)
    assert info.objects("train") == {"chair": 1}
    assert {Path(p).name for p, _ in skipped} == set(_BAD_MESHES)
    with h5py.File(out) as f:
        assert f["chair/train/object_ids"][0].decode() == "caf\\xe9-\\xff\\xfe"
    (src / f"{NON_UTF8}.obj").unlink()
    out2 = tmp_path / "out" / "none.h5"
    with pytest.raises(ValueError, match="no usable meshes"):
        convert_meshes(src.parent, out2, split=(1, 0, 0), workers=1, progress=False)
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.h5"]  # nothing partial beside it


# -- predict -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from recon.checkpoint import save_checkpoint
    from recon.config import TrainConfig
    from recon.models import Reconstructor

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint({"version": 1, "model": Reconstructor("attention").state_dict(), "step": 0,
                     "config": asdict(TrainConfig(encoder="attention"))}, path)
    return path


def _png_header(w: int, h: int) -> bytes:
    import struct
    import zlib

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_predict_rejects_non_images_one_line_each(checkpoint: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import io

    from PIL import Image

    from pipelines import predict

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buf, "PNG")
    bad = {"empty.png": b"", "random.jpg": os.urandom(2000), "text.png": b"hello",
           "bomb.png": _png_header(10 ** 5, 10 ** 5), "zero.png": _png_header(0, 0),
           "truncated.png": buf.getvalue()[:60], "plain.png": buf.getvalue(), f"{NON_UTF8}.png": os.urandom(100)}
    for name, content in bad.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "dir.png").mkdir()
    paths = [str(tmp_path / n) for n in [*bad, "dir.png", "missing.png"]]
    out = tmp_path / "out"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        predict.main([*paths, "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2
    assert len(err) == len(paths) and all(line.startswith("error: ") for line in err), err
    assert "too large" in " ".join(err) and "Traceback" not in " ".join(err)
    assert not out.exists() or not list(out.iterdir())


# -- every CLI flag with hostile values ----------------------------------------------------

def _cli(module: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    import importlib

    main = importlib.import_module(f"pipelines.{module}").main
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code, capsys.readouterr().err.strip().splitlines()


def _assert_one_line_error(code: int, err: list[str], *must: str) -> None:
    assert code == 2, (code, err)
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "Traceback" not in err[0] and all(m in err[0] for m in must), err


_INT_BAD = ["-1", "nan", "inf", "1e30", "abc", "", "3.5"]
_FLOAT_BAD = ["nan", "inf", "-1", "1e400", "abc", ""]
_TRAIN_BAD = (
    [(f, v) for f in ("--iterations", "--batch-size", "--val-every", "--log-every", "--keep", "--max-bad-steps")
     for v in _INT_BAD + ["0"]]
    + [(f, v) for f in ("--val-objects", "--workers", "--threads") for v in _INT_BAD]
    + [("--seed", v) for v in ["-1", str(2 ** 64), "nan", "abc"]]
    + [("--batch-size", str(10 ** 20)), ("--workers", str(10 ** 9)), ("--threads", str(10 ** 9))]
    + [(f, v) for f in ("--lr", "--sigma") for v in _FLOAT_BAD + ["0"]]
    + [(f, v) for f in ("--lambda-lap", "--lambda-flat") for v in _FLOAT_BAD]
    + [("--decay-at", v) for v in ["nan", "1.5", "-0.1", "abc"]] + [("--decay", v) for v in ["nan", "0", "2", "inf"]]
    + [("--encoder", v) for v in ["", "vgg", "../baseline"]] + [("--backend", v) for v in ["", "opengl", "kaolin"]]
    + [("--impl", v) for v in ["", "gpu", "cuda"]] + [("--device", v) for v in ["", "gpu", "cuda", "cuda:99", "meta"]]
    + [("--val-views", v) for v in ["", "abc", "0", "25", "-1", "0,99", ","]]
    + [("--data", v) for v in ["", "/nonexistent/x.h5", "{tmp}", "{file}", "{tmp}/" + NON_UTF8 + ".h5"]]
    + [("--out", v) for v in ["", "{file}", "{file}/sub"]]
    + [("--resume", "yes"), ("--bogus", "1"), ("--tensorboard", "1")]
)


@pytest.mark.parametrize("flag, value", _TRAIN_BAD)
def test_train_flags(valid_h5: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str,
                     value: str) -> None:
    (tmp_path / "file").write_text("x")
    value = value.format(tmp=tmp_path, file=tmp_path / "file")
    out = tmp_path / "run"
    argv = ["--data", str(valid_h5), "--out", str(out), "--iterations", "1", "--device", "cpu", "--val-views", "1",
            "--no-tensorboard", f"{flag}={value}"]
    code, err = _cli("train", argv, capsys)
    _assert_one_line_error(code, err)
    assert not out.exists()  # nothing written by a refused run


def test_train_accepts_large_but_valid_values() -> None:
    """Documented: big counts are valid (a long run, rare logs), they are not errors, up to the bounds of
    docs/operations.md (recon.ranges: beyond them a value is a typo)."""
    from recon.config import TrainConfig
    from recon.ranges import MAX_OBJECTS, MAX_STEPS

    TrainConfig(iterations=MAX_STEPS, val_every=MAX_STEPS, log_every=MAX_STEPS, keep=1000, max_bad_steps=MAX_STEPS,
                val_objects=MAX_OBJECTS, seed=2 ** 63 - 1, lambda_lap=0, lambda_flat=0, decay_at=0, decay=1,
                batch_size=4096).check_flags()


_EVAL_BAD = (
    [("--checkpoint", v) for v in ["", "/nonexistent", "{tmp}", "{file}", "{tmp}/" + NON_UTF8]]
    + [("--data", v) for v in ["", "/nonexistent.h5", "{tmp}", "{file}"]]
    + [("--split", v) for v in ["", "holdout"]] + [("--views", v) for v in ["", "0", "25", "abc", "nan", "-1", "1,99"]]
    + [("--backend", v) for v in ["", "x"]] + [("--impl", v) for v in ["", "x"]] + [("--encoder", v) for v in ["x"]]
    + [("--device", v) for v in ["", "gpu", "cuda:3"]]
    + [("--max-per-category", v) for v in ["-1", "nan", "abc"]] + [("--figures", v) for v in ["-1", "nan", "x"]]
    + [("--json", v) for v in ["{tmp}", "{file}/x.json"]] + [("--out", v) for v in ["{file}"]]
)


@pytest.mark.parametrize("flag, value", _EVAL_BAD)
def test_eval_flags(valid_h5: Path, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                    flag: str, value: str) -> None:
    (tmp_path / "file").write_text("x")
    value = value.format(tmp=tmp_path, file=tmp_path / "file")
    json_path = tmp_path / "e.json"
    argv = ["--checkpoint", str(checkpoint), "--data", str(valid_h5), "--split", "val", "--views", "1",
            "--device", "cpu", "--json", str(json_path), "--out", str(tmp_path / "figs"),
            f"{flag}={value}"]
    code, err = _cli("eval", argv, capsys)
    _assert_one_line_error(code, err)
    assert not json_path.exists() and not (tmp_path / "figs").exists()


_CONVERT_BAD = (
    [["synthetic", "--per-category", v] for v in ["0", "-1", "nan", "", str(10 ** 20)]]
    + [["synthetic", "--per-category", "1", f, v] for f in ("--val", "--test") for v in ["-1", "x", str(10 ** 20)]]
    + [["synthetic", "--per-category", "1", "--seed", v] for v in ["-1", "nan", str(2 ** 64)]]
    + [["synthetic", "--per-category", "1", "--workers", v] for v in ["-1", "nan", str(10 ** 20)]]
    + [["synthetic", "--per-category", "1", "--classes", v] for v in [",", "", "nope"]]
    + [["meshes", "--src", v] for v in ["/nonexistent", "{file}", "{empty}"]]
    + [["meshes", "--src", "{empty}", "--split", v] for v in ["nan,0,0", "1,0", "inf,-inf,1", "0.5,0.5,0.5", "a,b,c"]]
    + [["softras", "--src", v] for v in ["/nonexistent", "{file}", "{empty}"]]
    + [["softras", "--src", "{empty}", "--voxel-axes", v] for v in ["", "+x+x+x", "nope"]]
    + [["bogus"], []]
)


@pytest.mark.parametrize("argv", _CONVERT_BAD, ids=lambda a: " ".join(a) or "<none>")
def test_convert_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    argv = [a.format(file=tmp_path / "file", empty=tmp_path / "empty") for a in argv]
    out = tmp_path / "out.h5"
    full = argv[:1] + ["--out", str(out), "--no-progress"] + argv[1:] if argv and argv[0] != "bogus" else argv
    code, err = _cli("convert", full, capsys)
    _assert_one_line_error(code, err)
    assert not out.exists() and not list(tmp_path.glob(".out.h5*"))


@pytest.mark.parametrize("out", ["{tmp}", "{file}/x.h5", "", "/proc/x.h5"])
def test_convert_out_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str], out: str) -> None:
    (tmp_path / "file").write_text("x")
    out = out.format(tmp=tmp_path, file=tmp_path / "file")
    code, err = _cli("convert", ["synthetic", "--out", out, "--per-category", "1", "--no-progress"], capsys)
    _assert_one_line_error(code, err)


@pytest.mark.parametrize("target", ["/nonexistent.h5", "{tmp}", "{file}", "{tmp}/" + NON_UTF8 + ".h5", "", "{inf}"])
def test_convert_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str], valid_h5: Path, target: str) -> None:
    (tmp_path / "file").write_text("x")
    inf = _copy_with(valid_h5, tmp_path / "inf.h5", lambda f: f.attrs.__setitem__("image_size", np.inf))
    target = target.format(tmp=tmp_path, file=tmp_path / "file", inf=inf)
    code, err = _cli("convert", ["validate", target], capsys)
    _assert_one_line_error(code, err)


def test_real_process_non_utf8_and_argparse_errors_are_one_line(tmp_path: Path) -> None:
    """The in-process checks above, confirmed once through a real interpreter (argv bytes, stderr)."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    script = ("import sys\nfrom pipelines import train\n"
              "for argv in (['--data', sys.argv[1]], ['--iterations', 'nan']):\n"
              "    try:\n        train.main([*argv, '--out', sys.argv[2]])\n"
              "    except SystemExit as e:\n        print('exit', e.code)\n")
    proc = subprocess.run([sys.executable, "-c", script, os.fsencode(str(tmp_path / NON_UTF8)),
                           str(tmp_path / "run")], cwd=REPO, env=env, capture_output=True, timeout=120)
    err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    assert proc.stdout.decode().split() == ["exit", "2", "exit", "2"], (proc.stdout, err)
    assert len(err) == 2 and all(x.startswith("error: ") for x in err), err
    assert "file not found" in err[0] and "--iterations" in err[1]
