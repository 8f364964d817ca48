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


# -- refuse instead of answering wrongly ----------------------------------------------------

TETRA_V = np.array([[0, 0, 0], [0.3, 0, 0], [0, 0.3, 0], [0, 0, 0.3]], np.float32)
TETRA_F = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int32)


def write_meshes(path, counts: dict[str, dict[str, int]], names: dict[str, str] | None = None):
    """Like ``write``, format v2 with a GT tetrahedron per object."""
    rng = np.random.default_rng(0)
    with DatasetWriter(path, image_size=S, meshes=True) as w:
        for cat, splits in counts.items():
            w.add_category(cat, (names or {}).get(cat, f"name-{cat}"), source="test")
            for split, n in splits.items():
                w.create_split(cat, split, capacity=n)
                for i in range(n):
                    w.append(cat, split, rng.integers(0, 256, (24, 4, S, S), dtype=np.uint8),
                             rng.random((32, 32, 32)) > 0.8, f"{cat}-{split}-{i}", mesh=(TETRA_V * (i + 1), TETRA_F))
    return path


ALL = {"train": 2, "val": 1, "test": 2}


def test_duplicate_category_names_are_refused(tmp_path):
    p = tmp_path / "dup.h5"
    write(p, {"c1": {"train": 1}, "c2": {"train": 1}})
    with h5py.File(p, "a") as f:
        f["c2"].attrs["name"] = "NAME-c1"  # results are per name: the two would be merged into one row
    expect_error(p, "/c2", "'NAME-c1' is also the name of /c1")


def test_category_without_train_objects_is_refused(tmp_path):
    for name, c2 in (("empty.h5", {"train": 0, "val": 1}), ("missing.h5", {"val": 1})):
        write(tmp_path / name, {"c1": {"train": 2}, "c2": c2})
        expect_error(tmp_path / name, "/c2/train", "no train objects")


def test_a_needed_split_empty_in_one_category_is_refused(tmp_path):
    from recon.checkpoint import save_checkpoint
    from recon.config import EvalConfig, TrainConfig
    from recon.training import check_train_inputs
    from recon.workflows.eval import evaluate_run

    p = write_meshes(tmp_path / "empty_val.h5", {"c1": ALL, "c2": {**ALL, "val": 0, "test": 0}})
    validate(p)  # no command named: val and test may be empty
    expect_error(p, "/c2/val", "no objects in split 'val'", require_splits=("val",))
    with pytest.raises(DatasetFormatError, match="/c2/val: no objects in split 'val'"):
        check_train_inputs(TrainConfig(data=str(p), out=str(tmp_path / "run")))  # the start of a training
    ckpt = tmp_path / "model.pt"
    save_checkpoint({"model": {}, "config": {}, "step": 0}, ckpt)  # eval checks the data before loading weights
    with pytest.raises(DatasetFormatError, match="/c2/test: no objects in split 'test'"):
        evaluate_run(EvalConfig(checkpoint=str(ckpt), data=str(p), json=str(tmp_path / "e.json")))
    assert not (tmp_path / "e.json").exists()


@pytest.mark.parametrize("edit, where, fragment", [
    (lambda f: f["c1/test/mesh_faces"].__setitem__(5, (0, 1, 4)), "/c1/test/mesh_faces",
     "object 1 ('c1-test-1'): face 1 is [0, 1, 4], outside [0, 4)"),
    (lambda f: f["c1/train/mesh_faces"].__setitem__(0, (0, -1, 2)), "/c1/train/mesh_faces", "outside [0, 4)"),
    (lambda f: f["c2/val/mesh_verts"].__setitem__(2, (0, np.nan, 0)), "/c2/val/mesh_verts",
     "object 0 ('c2-val-0'): its GT mesh has a NaN or infinite vertex"),
    (lambda f: f["c2/test/mesh_verts"].__setitem__(7, (np.inf, 0, 0)), "/c2/test/mesh_verts", "object 1 ('c2-test-1')"),
])
def test_mesh_values_are_checked_when_asked(tmp_path, edit, where, fragment):
    from recon.config import TrainConfig
    from recon.training import check_train_inputs

    p = edit_file = write_meshes(tmp_path / "m.h5", {"c1": ALL, "c2": ALL})
    with h5py.File(edit_file, "a") as f:
        edit(f)
    validate(p)  # structure only: the mesh data are not read
    expect_error(p, where, fragment, check_meshes=True)
    with pytest.raises(DatasetFormatError, match="mesh"):
        check_train_inputs(TrainConfig(data=str(p), out=str(tmp_path / "run")))  # the start of a training


def test_gt_mesh_without_faces_is_refused(tmp_path):
    p = write_meshes(tmp_path / "nofaces.h5", {"c1": ALL})

    def drop_faces(f):  # object 1 of test keeps its vertices but loses its 4 faces
        g = f["c1/test"]
        faces = g["mesh_faces"][:]
        del g["mesh_faces"]
        g["mesh_faces"] = faces[:4]
        g["mesh_offsets"][2] = (g["mesh_offsets"][2][0], 4)

    with h5py.File(p, "a") as f:
        drop_faces(f)
    expect_error(p, "/c1/test/mesh_offsets", "object 1 ('c1-test-1') has a GT mesh of 4 vertices and 0 faces")


def test_deep_validation_finds_a_corrupt_compressed_image_chunk(tmp_path, capsys):
    from pipelines import convert

    p = write_meshes(tmp_path / "flip.h5", {"c1": ALL})
    with h5py.File(p) as f:
        chunk = f["c1/train/images"].id.get_chunk_info_by_coord((1, 7, 0, 0, 0))
    with open(p, "r+b") as fh:  # flip a few bytes in the middle of the compressed stream
        fh.seek(chunk.byte_offset + chunk.size // 2)
        raw = bytearray(fh.read(4))
        fh.seek(chunk.byte_offset + chunk.size // 2)
        fh.write(bytes(b ^ 0xFF for b in raw))
    validate(p, check_meshes=True)  # metadata and meshes are intact: only decompressing the images tells
    expect_error(p, "/c1/train/images", "object 1 ('c1-train-1'): unreadable data", deep=True)
    with pytest.raises(SystemExit) as e:
        convert.main(["validate", "--deep", str(p)])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "/c1/train/images" in err[0], err
    assert validate(write_meshes(tmp_path / "ok.h5", {"c1": ALL}), deep=True).meshes  # a sound file passes


def test_convert_validate_warns_about_empty_val_and_test(tmp_path, capsys):
    from pipelines import convert

    p = write_meshes(tmp_path / "w.h5", {"c1": ALL, "c2": {"train": 2, "val": 1}})
    convert.main(["validate", str(p)])
    err = capsys.readouterr().err
    assert "/c2/test: no test objects in category 'name-c2'" in err and "/c2/val" not in err, err
