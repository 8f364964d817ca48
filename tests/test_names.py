"""Names read from dataset files (category keys and names, object ids) are data, never paths or markup:
``convert validate`` (and so every command) refuses path-like names with one line, every writer
sanitises the names that reach a file name (``recon.names.safe_component``), and the console shows
names as written. Nothing is ever written outside the output folder a command was given."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from checkpoints import untrained_checkpoint

from recon.data.schema import DatasetFormatError, DatasetWriter, validate
from recon.names import MAX_NAME_CHARS, name_problem, safe_component

REFUSED = ["../../../X", "../../../../../escape", "/abs/olute", "a/b", "..", ".", "a\x00b",
           "line\nbreak", "esc\x1b[31mred", "x" * 300, "C:\\win\\path", ""]  # as category names
HOSTILE = REFUSED + ["-rf"]  # as file names
FAST_EVAL = ["--split", "test", "--views", "0,", "--device", "cpu", "--impl", "torch", "--max-per-category", "1"]


def _tree(root: Path) -> set[Path]:
    """Every path under ``root`` (files, folders, links)."""
    return {Path(d) / n for d, dirs, files in os.walk(root) for n in dirs + files}


def _write(path: Path, names: dict[str, str], test_ids: list[str]) -> Path:
    """One object per split in each category ``key -> name``; the test objects get ``test_ids``."""
    rng = np.random.default_rng(0)
    with DatasetWriter(path) as w:
        for key, name in names.items():
            w.add_category(key, name, source="test")
            for split, ids in (("train", ["t0"]), ("val", ["v0"]), ("test", test_ids)):
                w.create_split(key, split, capacity=len(ids))
                for oid in ids:
                    images = np.zeros((24, 4, 64, 64), np.uint8)
                    images[:, :, 20:44, 20:44] = rng.integers(0, 255, (24, 4, 24, 24), dtype=np.uint8)
                    voxels = np.zeros((32,) * 3, bool)
                    voxels[10:20, 10:20, 10:20] = True
                    w.append(key, split, images, voxels, oid)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained (valid) checkpoint: naming does not need a trained model."""
    return untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", "attention")


@pytest.mark.parametrize("name", HOSTILE, ids=lambda n: repr(n[:20]))
def test_safe_component_is_one_file_name_inside_its_folder(tmp_path: Path, name: str) -> None:
    safe = safe_component(name)
    assert safe not in ("", ".", "..") and "/" not in safe and "\\" not in safe and "\x00" not in safe
    assert len(safe) <= 64 and not safe.startswith((".", "-"))
    assert (tmp_path / safe).resolve().parent == tmp_path.resolve()
    (tmp_path / safe).write_text("x")  # a real file name on this OS


def test_safe_component_keeps_plain_names_and_separates_changed_ones() -> None:
    assert [safe_component(n) for n in ("chair", "03001627", "obj-1_a.b")] == ["chair", "03001627", "obj-1_a.b"]
    changed = [safe_component(n) for n in ("a/b", "a_b", "a?b", "a b", "x" * 64, "x" * 65, "x" * 66)]
    assert len(set(changed)) == len(changed)


def test_save_prediction_meshes_writes_only_inside_its_folder(tmp_path: Path) -> None:
    """The defensive layer, for names no validator saw (a library caller, an older file)."""
    from recon.evaluate import Prediction
    from recon.mesh import load_obj
    from recon.report import save_prediction_meshes

    verts, faces = load_obj(Path(__file__).resolve().parents[1] / "assets" / "sphere_642.obj")
    out = tmp_path / "a" / "b" / "c" / "d" / "out"  # "../" x 5 from here is tmp_path: unsafe code stays in it
    out.mkdir(parents=True)
    before = _tree(tmp_path)
    names = [n for n in HOSTILE if not n.startswith("/")] + [str(tmp_path / "abs"), str(tmp_path / "abs2" / "x")]
    grid = torch.zeros(32, 32, 32, dtype=torch.bool)
    preds = [Prediction("k", name, oid, 0, torch.rand(4, 16, 16), verts * 0.4, grid, 0.5)
             for name, oid in zip(names, reversed(names))]
    paths = save_prediction_meshes(preds, faces, out)
    new = _tree(tmp_path) - before
    assert new and all(p.parent == out for p in new), sorted(map(str, new - {p for p in new if p.parent == out}))
    assert len(new) == 4 * len(preds) + 1  # obj, ply, glb, input png each; the manifest
    assert len({p.name for p in paths}) == len(preds)


@pytest.mark.parametrize("where, name", [("attr", n) for n in REFUSED] + [("key", "..")]
                         + [("key", "line\nbreak"), ("key", "x" * 300)], ids=lambda x: repr(x[:20]))
def test_validate_refuses_path_like_category_names(tmp_path: Path, where: str, name: str) -> None:
    p = _write(tmp_path / "d.h5", {"c1": "chair"}, ["o1"])
    with h5py.File(p, "a") as f:
        if where == "attr":  # bytes: the only way HDF5 stores a NUL in a string attribute
            f["c1"].attrs["name"] = np.bytes_(name.encode())
        else:
            f.move("c1", name)
    with pytest.raises(DatasetFormatError) as e:
        validate(p)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(p)) and repr(name[:60])[1:-1] in msg, msg
    assert name_problem(name) in msg


def test_validate_accepts_names_that_are_only_unusual(tmp_path: Path) -> None:
    names = {"c1": "[bold red]evil", "c2": "a $x^$ b", "c3": "Stühle & Bänke (2)", "c4": "y" * MAX_NAME_CHARS}
    info = validate(_write(tmp_path / "ok.h5", names, ["../../../x", "/etc/passwd", "z" * 900]))
    assert info.categories == names


def test_convert_validate_refuses_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipelines import convert

    p = _write(tmp_path / "d.h5", {"c1": "../../../X"}, ["o1"])
    with pytest.raises(SystemExit) as e:
        convert.main(["validate", str(p)])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "'../../../X'" in err[0] and "path separator" in err[0], err


def test_eval_refuses_a_path_like_category_and_writes_nothing(tmp_path: Path, checkpoint: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from pipelines import eval as eval_pipeline

    data = _write(tmp_path / "data.h5", {"c1": "chair", "c2": "../../../X"}, ["o1"])
    out = tmp_path / "a" / "b" / "c" / "out"
    before = _tree(tmp_path)
    with pytest.raises(SystemExit) as e:
        eval_pipeline.main(["--checkpoint", str(checkpoint), "--data", str(data), "--json", str(out / "e.json"),
                            "--out", str(out / "figs"), *FAST_EVAL])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "'../../../X'" in err[0], err
    assert _tree(tmp_path) == before


def test_eval_with_unusual_names_writes_inside_out_and_prints_them_literally(
        tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipelines import eval as eval_pipeline

    names = {"c1": "[bold red]evil", "c2": "a $x^$ b"}
    ids = ["../../../../../../escape", str(tmp_path / "abs-escape"), "w" * 900]
    data = _write(tmp_path / "data.h5", names, ids)
    out = tmp_path / "a" / "b" / "c" / "d" / "out"
    out.mkdir(parents=True)
    before = _tree(tmp_path)
    record = eval_pipeline.main(["--checkpoint", str(checkpoint), "--data", str(data), "--json", str(out / "e.json"),
                                 "--out", str(out / "figs"), "--figures", "3", *FAST_EVAL[:-2]])
    printed = capsys.readouterr().out
    new = _tree(tmp_path) - before
    assert all(out in p.parents for p in new), sorted(str(p) for p in new if out not in p.parents)
    assert len(list((out / "figs" / "meshes").glob("*.obj"))) == 6  # every test object of both categories
    for name in names.values():
        assert name in printed, printed  # the table shows the name as written, not as markup
    assert set(record["per_category"]) == set(names.values())
    assert {r["object_id"] for r in record["per_object"]} <= set(ids)


def test_convert_meshes_keeps_folder_and_file_names_as_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Mesh folder and file names become category names and object ids: refused or skipped when they
    cannot be names, shown literally when they can."""
    import trimesh

    from pipelines import convert

    src = tmp_path / "src"
    for folder, stems in {"[bold red]chairs": ["a", "b", "c"], "tables": ["t1", "t2", "bad\nname"]}.items():
        (src / folder).mkdir(parents=True)
        for i, stem in enumerate(stems):
            trimesh.creation.box(extents=(0.5, 0.8 + 0.1 * i, 0.4)).export(src / folder / f"{stem}.obj")
    out = tmp_path / "m.h5"
    info = convert.main(["meshes", "--src", str(src), "--out", str(out), "--workers", "0", "--no-progress"])
    captured = capsys.readouterr()
    assert "[bold red]chairs" in captured.out  # the summary table shows the folder name as written
    assert "its name contains the control character U+000A (it becomes the object id)" in captured.err
    assert info.categories["[bold red]chairs"] == "[bold red]chairs" and sum(info.objects("train").values()) >= 3
    validate(out, check_meshes=True)

    (src / "line\nbreak").mkdir()
    trimesh.creation.box().export(src / "line\nbreak" / "x.obj")
    with pytest.raises(SystemExit) as e:
        convert.main(["meshes", "--src", str(src), "--out", str(tmp_path / "n.h5"), "--workers", "0", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "folder name 'line\\nbreak' contains the control character" in err[0]
    assert not (tmp_path / "n.h5").exists()


def test_convert_softras_refuses_a_class_id_that_cannot_be_a_name(tmp_path: Path) -> None:
    from recon.data.softras_npz import NpzFormatError, convert_softras

    for kind in ("images", "voxels"):
        (tmp_path / f"esc\x1b[2J_train_{kind}.npz").write_bytes(b"never read")
    with pytest.raises(NpzFormatError) as e:
        convert_softras(tmp_path, tmp_path / "out.h5", progress=False)
    assert "class id 'esc\\x1b[2J'" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out.h5").exists()
