"""The web app's logic without a browser (recon.app.service, recon.app.browse) and its command line:
the app's mesh is pipelines.predict's, bad pictures get a message and the next one works, the eval
table is worst-first, start-up errors are one line with exit status 2, and nothing else imports the app.
The browser test is tests/test_app_browser.py."""

from __future__ import annotations

import ast
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from recon.app.browse import ALL, EvalBrowser, EvalFileError
from recon.app.service import AppService
from recon.data.image_io import ImageError
from recon.mesh import load_obj

from app_helpers import dataset_png, glb_vertices

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def service(app_run: str, tmp_path_factory):
    s = AppService.load(app_run, "cpu", work_dir=tmp_path_factory.mktemp("work"))
    yield s
    s.close()


def test_app_mesh_is_the_mesh_predict_writes(service: AppService, app_run: str, tiny_dataset: str,
                                             tmp_path: Path) -> None:
    from pipelines import predict

    image = dataset_png(tiny_dataset, tmp_path / "chair.png")
    answer = service.try_image(image)
    predict.main([str(image), "--checkpoint", app_run, "--out", str(tmp_path / "out"), "--device", "cpu"])
    expected, faces = load_obj(tmp_path / "out" / "chair.obj")
    for got in (answer.verts, load_obj(answer.obj)[0], torch.from_numpy(glb_vertices(answer.glb)).float()):
        assert got.shape == expected.shape
        assert float((got - expected).norm(dim=1).max()) <= 1e-5
    assert torch.equal(load_obj(answer.obj)[1], faces)
    assert answer.ply.read_bytes().startswith(b"ply\n")
    assert 0.0 <= answer.iou <= 1.0 and 0 <= answer.view < 24 and f"IoU {answer.iou:.3f}" in answer.summary
    assert Image.open(answer.figure).size == (3 * 192 + 2 * 6, 192)


def _huge_png(path: Path, side: int = 20000) -> Path:
    Image.new("1", (side, side), 0).save(path)  # 50 MB in memory, a few hundred kB on disk
    return path


@pytest.mark.parametrize("kind, message", [
    ("text", "not an image (expected PNG or JPEG)"),
    ("huge", "image is too large"),
    ("transparent", "no object found: the alpha channel is empty"),
])
def test_bad_pictures_get_a_message_and_the_next_one_works(kind: str, message: str, service: AppService,
                                                           tiny_dataset: str, tmp_path: Path) -> None:
    path = tmp_path / f"{kind}.png"
    if kind == "text":
        path.write_text("this is not an image\n")
    elif kind == "huge":
        _huge_png(path)
    else:
        Image.new("RGBA", (128, 128), (200, 30, 30, 0)).save(path)
    with pytest.raises(ImageError, match=re.escape(message)):
        service.try_image(path)
    good = service.try_image(dataset_png(tiny_dataset, tmp_path / "good.png"))
    assert good.glb.is_file()


def test_answer_folders_are_bounded(service: AppService, tiny_dataset: str, tmp_path: Path, monkeypatch) -> None:
    from recon.app import service as service_module

    monkeypatch.setattr(service_module, "KEEP_ANSWERS", 2)
    image = dataset_png(tiny_dataset, tmp_path / "x.png")
    answers = [service.try_image(image) for _ in range(4)]
    assert [a.glb.exists() for a in answers] == [False, False, True, True]


def test_browse_table_is_worst_first_and_filters(app_run: str, tiny_dataset: str, service: AppService,
                                                 tmp_path: Path) -> None:
    browser = EvalBrowser(Path(app_run) / "eval_test.json", tiny_dataset, tmp_path / "browse", service)
    per = json.loads((Path(app_run) / "eval_test.json").read_text())["per_object"]
    rows = browser.table()
    assert len(rows) == len(per) == 2 * 2 * 3
    assert [r[4] for r in rows] == sorted(round(p["iou"], 4) for p in per)
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    best = browser.table(worst_first=False)
    assert best[0][4] == max(r[4] for r in rows)
    chairs = browser.table("chair")
    assert chairs and {r[1] for r in chairs} == {"chair"} and len(chairs) == 6
    assert browser.categories == ["chair", "table"] and len(browser.table(ALL)) == len(rows)


def test_browse_row_files(app_run: str, tiny_dataset: str, service: AppService, tmp_path: Path) -> None:
    browser = EvalBrowser(Path(app_run) / "eval_test.json", tiny_dataset, tmp_path / "browse", service)
    saved = next(r for r in browser.rows if r.mesh)  # eval saved this one's mesh
    files = browser.files(saved)
    assert files.prediction is not None and files.prediction.parent == browser.mesh_dir
    assert "the mesh eval saved" in files.note and "the GT mesh" in files.note
    other = next(r for r in browser.rows if not r.mesh and r.category == saved.category)
    files = browser.files(other)
    assert "the app's model" in files.note and "the checkpoint evaluated" in files.note
    # the app's model on the stored image gives eval's saved mesh for the saved row's view
    again = service.try_image(browser.files(saved).image)
    assert float(np.abs(glb_vertices(browser.files(saved).prediction) - again.verts.numpy()).max()) <= 1e-4
    rgba = np.asarray(Image.open(files.image))
    assert rgba.shape == (64, 64, 4)
    gt = glb_vertices(files.ground_truth)
    assert gt.min() >= -0.5 - 1e-6 and gt.max() <= 0.5 + 1e-6


def test_browse_bad_eval_json(tmp_path: Path) -> None:
    with pytest.raises(EvalFileError, match="no such eval JSON"):
        EvalBrowser(tmp_path / "missing.json", None, tmp_path)
    (tmp_path / "x.json").write_text('{"mean_iou": 0.5}')
    with pytest.raises(EvalFileError, match="no per_object list"):
        EvalBrowser(tmp_path / "x.json", None, tmp_path)
    (tmp_path / "y.json").write_text('{"per_object": [{"category": "chair"}]}')
    with pytest.raises(EvalFileError, match=r"per_object\[0\]"):
        EvalBrowser(tmp_path / "y.json", None, tmp_path)


@pytest.mark.parametrize("case", ["missing", "corrupt", "truncated", "eval", "port"])
def test_start_up_errors_are_one_line_exit_2(case: str, app_run: str, tmp_path: Path, capsys) -> None:
    pytest.importorskip("gradio", reason="the app's extra is not installed: pip install -e '.[app]'")
    from pipelines import app

    args = ["--port", "1"]
    if case == "missing":
        args += ["--checkpoint", str(tmp_path / "nope")]
        expected = "no such checkpoint file or run directory"
    elif case == "corrupt":
        (tmp_path / "bad.pt").write_text("not a checkpoint\n")
        args += ["--checkpoint", str(tmp_path / "bad.pt")]
        expected = "not a valid recon checkpoint"
    elif case == "truncated":
        data = (Path(app_run) / "best.pt").read_bytes()
        (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
        args += ["--checkpoint", str(tmp_path / "cut.pt")]
        expected = "not a valid recon checkpoint"
    elif case == "eval":
        (tmp_path / "e.json").write_text("{")
        args += ["--checkpoint", app_run, "--eval", str(tmp_path / "e.json")]
        expected = "not a readable eval JSON"
    else:
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["--checkpoint", app_run, "--port", str(port)]
        expected = f"--port {port}: cannot listen on 127.0.0.1:{port}"
    try:
        with pytest.raises(SystemExit) as exc:
            app.main(args)
    finally:
        if case == "port":
            taken.close()
    assert exc.value.code == 2
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], captured.err
    assert "Traceback" not in captured.out + captured.err


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_nothing_else_imports_the_app() -> None:
    """recon.app (and Gradio) stay out of the library and the other commands: their imports and
    --help cost what they did."""
    offenders = []
    for path in sorted((ROOT / "recon").rglob("*.py")) + sorted((ROOT / "pipelines").glob("*.py")):
        if path.is_relative_to(ROOT / "recon" / "app") or path.name == "app.py":
            continue
        bad = {n for n in _imports(path) if n == "gradio" or n.startswith(("recon.app", "gradio."))}
        if bad:
            offenders.append(f"{path.relative_to(ROOT)}: {sorted(bad)}")
    assert offenders == []
    code = ("import sys; import pipelines.predict, pipelines.eval, recon.workflows.predict, recon.workflows.eval; "
            "print(sorted(m for m in sys.modules if m == 'gradio' or m.startswith('recon.app')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stderr
