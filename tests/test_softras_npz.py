"""SoftRas/NMR npz -> HDF5: streaming conversion, the NMR voxel axis convention, automatic axis
detection from the alpha masks, and one-line errors on bad inputs."""

from __future__ import annotations

import warnings
import zipfile

import h5py
import numpy as np
import pytest

from recon.data.softras_npz import NpzFormatError, NpzRowReader, convert_softras
from recon.data.voxel_axes import AXIS_SPECS, NMR_AXES, apply_axes, axes_matrix, parse_axes, to_source_axes
from recon.data.synthetic import render_object


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def objects():
    """Our-order images/voxels of a few asymmetric synthetic objects per class."""
    out = {}
    for key, n in (("02691156", 3), ("03636649", 2)):
        objs = [render_object(key, i, 0) for i in range(n)]
        out[key] = (np.stack([o[0] for o in objs]), np.stack([o[1] for o in objs]))
    return out


def write_nmr(folder, objects, axes=NMR_AXES, splits=("train", "val")):
    folder.mkdir(exist_ok=True)
    for key, (images, voxels) in objects.items():
        for k, split in enumerate(splits):
            sel = slice(0, len(images) - 1) if k == 0 else slice(len(images) - 1, None)
            np.savez_compressed(folder / f"{key}_{split}_images.npz", images[sel])
            np.savez_compressed(folder / f"{key}_{split}_voxels.npz", to_source_axes(voxels[sel], axes))
    return folder


def test_nmr_convention_matches_softras_eval():
    # SoftRas evaluate_iou: voxels_predict (our x, y, z order) .transpose(0, 2, 1, 3)[:, :, :, ::-1] ~ NMR grid.
    rng = np.random.default_rng(0)
    ours = rng.random((2, 32, 32, 32)) > 0.5
    np.testing.assert_array_equal(to_source_axes(ours, "nmr"), ours.transpose(0, 2, 1, 3)[:, :, :, ::-1])
    assert parse_axes("nmr") == ((1, 0, 2), (1, 1, -1))


def test_axis_transforms_are_consistent():
    rng = np.random.default_rng(1)
    grid = rng.random((32, 32, 32)) > 0.9
    assert len(set(AXIS_SPECS)) == 48
    c = -0.5 + (np.arange(32) + 0.5) / 32
    for spec in AXIS_SPECS:
        np.testing.assert_array_equal(apply_axes(to_source_axes(grid, spec), spec), grid)
        # a source cell centre maps to the world point given by axes_matrix
        ours = apply_axes(grid, spec)
        src_pts = c[np.argwhere(grid)]
        world = src_pts @ axes_matrix(spec).T
        idx = np.rint((world + 0.5) * 32 - 0.5).astype(int)
        assert ours[tuple(idx.T)].all() and len(idx) == ours.sum()
    for bad in ("xyz1", "xxy", "+a+b+c", ""):
        with pytest.raises(ValueError):
            parse_axes(bad)


def test_convert_auto_detects_nmr(objects, tmp_path, monkeypatch):
    src = write_nmr(tmp_path / "nmr", objects)
    # Streaming: np.load is never used on the inputs.
    monkeypatch.setattr(np, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("np.load used")))
    out = tmp_path / "out.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no axis warning expected
        info = convert_softras(src, out, progress=False)
    assert info.categories == {"02691156": "airplane", "03636649": "lamp"}
    assert info.objects("train") == {"02691156": 2, "03636649": 1}
    assert info.objects("val") == {"02691156": 1, "03636649": 1}
    assert info.objects("test") == {"02691156": 0, "03636649": 0}
    with h5py.File(out) as f:
        for key, (images, voxels) in objects.items():
            assert f[key].attrs["voxel_transform"] == NMR_AXES
            got_i = np.concatenate([f[key]["train/images"][()], f[key]["val/images"][()]])
            got_v = np.concatenate([f[key]["train/voxels"][()], f[key]["val/voxels"][()]]).astype(bool)
            np.testing.assert_array_equal(got_i, images)
            np.testing.assert_array_equal(got_v, voxels)
            assert f[key]["val/object_ids"][0].decode() == f"{key}_val_000000"


def test_auto_detects_other_axes_and_warns(objects, tmp_path):
    sub = {"02691156": objects["02691156"]}
    src = write_nmr(tmp_path / "ours", sub, axes="identity", splits=("train",))
    with pytest.warns(UserWarning, match=r"\+x\+y\+z match the images better"):
        convert_softras(src, tmp_path / "a.h5", progress=False)
    with h5py.File(tmp_path / "a.h5") as f:
        assert f["02691156"].attrs["voxel_transform"] == "+x+y+z"
        np.testing.assert_array_equal(f["02691156/train/voxels"][()].astype(bool), sub["02691156"][1][:-1])
    # an explicit spec is applied as given (here: wrongly), without detection
    convert_softras(src, tmp_path / "b.h5", voxel_axes="nmr", classes=["airplane"], progress=False)
    with h5py.File(tmp_path / "b.h5") as f:
        assert f["02691156"].attrs["voxel_transform"] == NMR_AXES
        assert not np.array_equal(f["02691156/train/voxels"][()].astype(bool), sub["02691156"][1][:-1])


def expect(err_type, fn, *fragments):
    with pytest.raises(err_type) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg, msg
    for frag in fragments:
        assert frag in msg, msg


def test_bad_inputs(objects, tmp_path):
    images, voxels = objects["02691156"]
    d = tmp_path / "bad"
    d.mkdir()
    out = tmp_path / "out.h5"
    conv = lambda **kw: convert_softras(d, out, progress=False, voxel_axes="nmr", **kw)  # noqa: E731
    expect(FileNotFoundError, conv, "no <classid>_<split>_images.npz")
    # wrong image shape
    np.savez_compressed(d / "02691156_train_images.npz", images[:, :, :, :32, :32])
    np.savez_compressed(d / "02691156_train_voxels.npz", voxels)
    expect(NpzFormatError, conv, "02691156_train_images.npz", f"({len(images)}, 24, 4, 32, 32)", "expected",
           "(N, 24, 4, 64, 64)")
    # wrong voxel dtype
    np.savez_compressed(d / "02691156_train_images.npz", images)
    np.savez_compressed(d / "02691156_train_voxels.npz", voxels.astype(np.float32))
    expect(NpzFormatError, conv, "02691156_train_voxels.npz", "float32", "expected")
    # different N
    np.savez_compressed(d / "02691156_train_voxels.npz", voxels[:1])
    expect(NpzFormatError, conv, "02691156_train_voxels.npz", "1 objects", f"has {len(images)}")
    # missing voxels file
    (d / "02691156_train_voxels.npz").unlink()
    expect(NpzFormatError, conv, "02691156_train_voxels.npz", "missing voxels file")
    # not a zip
    (d / "02691156_train_voxels.npz").write_text("nope")
    expect(NpzFormatError, conv, "02691156_train_voxels.npz", "not a readable .npz")
    # truncated member data (valid zip, short array)
    with zipfile.ZipFile(d / "02691156_train_voxels.npz", "w") as z:
        text = f"{{'descr': '|b1', 'fortran_order': False, 'shape': ({len(images)}, 32, 32, 32), }}"
        header = b"\x93NUMPY\x01\x00" + b"v\x00" + (text.ljust(117) + "\n").encode()
        z.writestr("arr_0.npy", header + b"\x00" * 40000)
    expect(NpzFormatError, conv, "02691156_train_voxels.npz", f"truncated at object 1 of {len(images)}")
    # unknown class / bad spec
    np.savez_compressed(d / "02691156_train_voxels.npz", voxels)
    expect(ValueError, lambda: conv(classes=["sofa"]), "class 'sofa' not found")
    expect(ValueError, lambda: convert_softras(d, out, voxel_axes="xy", progress=False), "invalid voxel axes")
    assert not out.exists()
    conv()
    assert out.exists()


def test_row_reader_reads_sequentially(tmp_path):
    arr = (np.arange(3 * 32 ** 3) % 7 == 0).reshape(3, 32, 32, 32)
    np.savez_compressed(tmp_path / "v.npz", arr)
    with NpzRowReader(tmp_path / "v.npz", (32, 32, 32), (np.dtype(bool),), "voxels") as r:
        assert r.num == 3
        rows = [r.read() for _ in range(3)]
    np.testing.assert_array_equal(np.stack(rows), arr)
