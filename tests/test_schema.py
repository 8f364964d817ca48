"""Format v2 (and the v1 core): writer -> validator -> readers round trip, one-line errors on bad files, atomic
writes, and the SoftRas sampling of PairDataset (class uniform, deterministic)."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from recon.data.dataset import PairDataset, iter_objects
from recon.data.schema import DatasetFormatError, DatasetWriter, validate

S = 8  # tiny images keep these tests fast; the format allows any image_size


def write(path, counts: dict[str, dict[str, int]], seed: int = 0, image_size: int = S) -> dict:
    """Random dataset; returns {(cat, split): (images, voxels, ids)}."""
    rng = np.random.default_rng(seed)
    data = {}
    with DatasetWriter(path, image_size=image_size) as w:
        for cat, splits in counts.items():
            w.add_category(cat, f"name-{cat}", source="test")
            for split, n in splits.items():
                w.create_split(cat, split, capacity=n)
                imgs = rng.integers(0, 256, (n, 24, 4, image_size, image_size), dtype=np.uint8)
                vox = rng.random((n, 32, 32, 32)) > 0.8
                ids = [f"{cat}-{split}-{i}" for i in range(n)]
                for i in range(n):
                    w.append(cat, split, imgs[i], vox[i], ids[i])
                data[(cat, split)] = (imgs, vox, ids)
    return data


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.h5"
    data = write(path, {"c1": {"train": 3, "val": 2}, "c2": {"train": 2, "val": 1}})
    return path, data


def test_round_trip(small):
    path, data = small
    info = validate(path)
    assert info.categories == {"c1": "name-c1", "c2": "name-c2"}
    assert info.objects("train") == {"c1": 3, "c2": 2} and info.objects("val") == {"c1": 2, "c2": 1}
    assert (info.image_size, info.num_views) == (S, 24)
    with h5py.File(path) as f:
        for (cat, split), (imgs, vox, ids) in data.items():
            np.testing.assert_array_equal(f[cat][split]["images"][()], imgs)
            np.testing.assert_array_equal(f[cat][split]["voxels"][()].astype(bool), vox)
    records = list(iter_objects(path, "val"))
    assert [(r.category, r.index, r.object_id) for r in records] == [("c1", 0, "c1-val-0"), ("c1", 1, "c1-val-1"),
                                                                      ("c2", 0, "c2-val-0")]
    for r in records:
        imgs, vox, _ = data[(r.category, "val")]
        np.testing.assert_array_equal(r.voxels.numpy(), vox[r.index])
        np.testing.assert_allclose(r.images.numpy(), imgs[r.index] / 255.0, atol=1e-7)
    ds = PairDataset(path, "train", seed=3)
    for i in range(10):
        c, o, va, vb = ds.sample(i)
        item = ds[i]
        imgs, vox, _ = data[(ds.categories[c], "train")]
        np.testing.assert_allclose(item["image_a"].numpy(), imgs[o, va] / 255.0, atol=1e-7)
        np.testing.assert_allclose(item["image_b"].numpy(), imgs[o, vb] / 255.0, atol=1e-7)
        np.testing.assert_array_equal(item["voxels"].numpy().astype(bool), vox[o])
        assert (item["view_a"].item(), item["view_b"].item(), item["category"].item()) == (va, vb, c)


def expect_error(path, *fragments, **kw):
    with pytest.raises(DatasetFormatError) as e:
        validate(path, **kw)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg, msg
    for frag in fragments:
        assert frag in msg, msg
    return msg


def test_missing_file(tmp_path):
    expect_error(tmp_path / "nope.h5", "not found")


def test_not_hdf5(tmp_path):
    p = tmp_path / "text.h5"
    p.write_text("hello, I am not HDF5\n")
    expect_error(p, "not an HDF5 file")


def test_truncated(small, tmp_path):
    path, _ = small
    cut = tmp_path / "cut.h5"
    raw = path.read_bytes()
    cut.write_bytes(raw[: len(raw) // 2])
    expect_error(cut, "/", "HDF5")


def edit(src, dst, fn):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        fn(f)
    return dst


def test_wrong_format_and_version(small, tmp_path):
    path, _ = small
    p = edit(path, tmp_path / "fmt.h5", lambda f: f.attrs.__setitem__("format", "something-else"))
    expect_error(p, "format", "recon-hdf5")
    p = edit(path, tmp_path / "ver.h5", lambda f: f.attrs.__setitem__("version", 3))
    expect_error(p, "version", "expected one of 1, 2")


def test_wrong_shape_and_dtype(small, tmp_path):
    path, _ = small

    def reshape(f):
        del f["c1/train/images"]
        f["c1/train/images"] = np.zeros((3, 24, 4, S + 1, S + 1), np.uint8)

    expect_error(edit(path, tmp_path / "shape.h5", reshape), "/c1/train/images", f"expected (N, 24, 4, {S}, {S})")

    def retype(f):
        del f["c2/val/images"]
        f["c2/val/images"] = np.zeros((1, 24, 4, S, S), np.float32)

    expect_error(edit(path, tmp_path / "dtype.h5", retype), "/c2/val/images", "expected uint8")

    def voxels(f):
        del f["c1/val/voxels"]
        f["c1/val/voxels"] = np.zeros((2, 16, 16, 16), np.uint8)

    expect_error(edit(path, tmp_path / "vox.h5", voxels), "/c1/val/voxels", "expected (2, 32, 32, 32)")


def test_missing_split(small):
    path, _ = small
    expect_error(path, "/c1/test", "missing split", require_splits=("test",))
    with pytest.raises(DatasetFormatError, match="/c1/test"):
        PairDataset(path, "test")


def test_writer_crash_leaves_nothing(tmp_path):
    out = tmp_path / "crash.h5"

    class Boom(RuntimeError):
        pass

    with pytest.raises(Boom):
        with DatasetWriter(out, image_size=S) as w:
            w.add_category("c", "c")
            w.create_split("c", "train", capacity=2)
            w.append("c", "train", np.zeros((24, 4, S, S), np.uint8), np.zeros((32,) * 3, bool), "a")
            raise Boom("mid-write")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # the temp file is gone too


def test_sampling_class_uniform_and_deterministic(tmp_path):
    path = tmp_path / "unbalanced.h5"
    write(path, {"a": {"train": 1}, "b": {"train": 4}, "c": {"train": 16}})
    ds = PairDataset(path, "train", seed=11)
    draws = [ds.sample(i) for i in range(3000)]
    cats = np.bincount([d[0] for d in draws], minlength=3)
    expected = len(draws) / 3
    chi2 = ((cats - expected) ** 2 / expected).sum()
    assert chi2 < 13.8, cats  # p = 0.001 for 2 degrees of freedom; object-weighted would give ~(143, 571, 2286)
    # objects uniform within a class, views uniform over 24
    objs = np.bincount([d[1] for d in draws if d[0] == 2], minlength=16)
    assert objs.min() > 0.4 * objs.mean()
    views = np.bincount([d[2] for d in draws] + [d[3] for d in draws], minlength=24)
    assert views.min() > 0.6 * views.mean()
    # pure function of (seed, index)
    again = PairDataset(path, "train", seed=11)
    assert [again.sample(i) for i in (2999, 0, 17)] == [draws[2999], draws[0], draws[17]]
    other = PairDataset(path, "train", seed=12)
    assert [other.sample(i) for i in range(50)] != draws[:50]
