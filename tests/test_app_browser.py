"""The web app end to end (python -m pipelines.app on a small trained run): in headless Chromium,
driven by Playwright, upload a dataset image, wait for the 3D view, check its canvas is drawn,
download the .glb and compare it with pipelines.predict's mesh for the image, open the browse tab
and check the worst-first order; no request may leave 127.0.0.1. Then 16 predictions at once
through Gradio's Python client (scripts/app_load.py): every answer is its own picture's mesh, the
server's memory stays bounded and it answers afterwards.

Skips, saying why, where the system Chromium (Debian package ``chromium``), Playwright or the app's
extra (Gradio) is missing."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

from app_helpers import dataset_png, glb_vertices

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
LOCAL_HOSTS = {"127.0.0.1"}

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("gradio") is None,
                       reason="the app's extra is not installed: pip install -e '.[app]' (make setup installs it)"),
]
_MISSING = ([f"Chromium at {CHROMIUM} (Debian package chromium; .ci/run installs it when it can)"]
            if not os.access(CHROMIUM, os.X_OK) else []) + \
           (["Playwright (pip install -e '.[dev]')"] if importlib.util.find_spec("playwright") is None else [])
needs_browser = pytest.mark.skipif(bool(_MISSING), reason="the browser test needs " + " and ".join(_MISSING))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(app_run: str, tiny_dataset: str, tmp_path_factory):
    """``python -m pipelines.app`` on ``app_run`` in a subprocess: (URL, process)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pipelines.app", "--checkpoint", app_run, "--data", tiny_dataset,
                                 "--port", str(port), "--device", "cpu"], stdout=out, stderr=subprocess.STDOUT,
                                cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 180
        while "running at" not in log.read_text():
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"the app did not start (exit {proc.poll()}):\n{log.read_text()}")
            time.sleep(0.2)
        assert f"running at {url}" in log.read_text()
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _drawn_pixels(png: bytes) -> int:
    """Pixels of a screenshot that differ from its most common colour (the clear colour)."""
    from io import BytesIO

    a = np.asarray(Image.open(BytesIO(png)).convert("RGB")).reshape(-1, 3)
    colours, counts = np.unique(a, axis=0, return_counts=True)
    return int((np.abs(a.astype(int) - colours[np.argmax(counts)]).sum(1) > 30).sum())


@needs_browser
def test_try_and_browse_in_chromium(server, app_run: str, tiny_dataset: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from pipelines import predict

    url, _ = server
    picture = dataset_png(tiny_dataset, tmp_path / "chair.png")
    predict.main([str(picture), "--checkpoint", app_run, "--out", str(tmp_path / "predict"), "--device", "cpu"])
    from recon.mesh import load_obj
    expected = load_obj(tmp_path / "predict" / "chair.obj")[0].numpy()

    requests, outside = [], []

    def route(r) -> None:  # every request the page makes: local ones go through, others are refused
        requests.append(r.request.url)
        host = urlparse(r.request.url).hostname
        if r.request.url.startswith(("data:", "blob:")) or host in LOCAL_HOSTS:
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
            context.route("**/*", route)
            page = context.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            page.set_input_files("#picture input[type=file]", str(picture))
            page.wait_for_function("document.querySelector('#status') && "
                                   "document.querySelector('#status').innerText.includes('IoU')", timeout=60_000)
            canvas = page.locator("#mesh canvas")
            canvas.wait_for(timeout=30_000)
            drawn = 0
            for _ in range(40):  # the 3D view draws once its mesh file has loaded
                drawn = _drawn_pixels(canvas.screenshot())
                if drawn > 2000:
                    break
                page.wait_for_timeout(250)
            assert drawn > 2000, f"the 3D view stays blank ({drawn} pixels drawn)"
            with page.expect_download() as download:
                page.click("#download-glb")
            glb = tmp_path / "download.glb"
            download.value.save_as(glb)
            got = glb_vertices(glb)
            assert got.shape == expected.shape
            assert float(np.linalg.norm(got - expected, axis=1).max()) <= 1e-5

            page.get_by_role("tab", name="Browse an evaluation").click()
            page.locator("#eval-table [data-testid='cell-0-4']").wait_for(timeout=30_000)
            rows = page.evaluate("""() => { const out = {};
                document.querySelectorAll("#eval-table [data-testid^='cell-']").forEach(c => {
                  const [r, k] = c.dataset.testid.split('-').slice(1).map(Number);
                  (out[r] = out[r] || [])[k] = c.innerText.trim(); });
                return Object.keys(out).map(Number).sort((a, b) => a - b).map(r => out[r]); }""")
            assert len(rows) == 12 and all(len(r) == 5 for r in rows)
            ious = [float(r[4]) for r in rows]
            assert ious == sorted(ious) and [int(r[0]) for r in rows] == list(range(1, 13))
            page.click("#eval-table [data-testid='cell-0-2']")  # the worst prediction
            page.wait_for_function("document.querySelector('#row-note').innerText.includes('IoU')", timeout=60_000)
            note = page.inner_text("#row-note")
            assert f"{rows[0][1]} {rows[0][2]}, view {rows[0][3]}: IoU" in note and "ground truth" in note
            page.locator("#row-prediction canvas").wait_for(timeout=30_000)
            page.locator("#row-truth canvas").wait_for(timeout=30_000)
            assert errors == []
        finally:
            browser.close()
    assert outside == [], f"requests left 127.0.0.1: {outside}"
    assert requests and all(urlparse(u).hostname in LOCAL_HOSTS for u in requests if u.startswith("http"))


def _load_module():
    spec = importlib.util.spec_from_file_location("app_load", ROOT / "scripts" / "app_load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sixteen_predictions_at_once(server, tiny_dataset: str, tmp_path: Path) -> None:
    """All answered, each with its own picture's mesh; the queue keeps memory bounded; the app answers after."""
    app_load = _load_module()
    url, proc = server
    pictures = [dataset_png(tiny_dataset, tmp_path / f"{key}_{i}.png", key, i)
                for key in ("03001627", "04379243") for i in (0, 1)]
    result = app_load.fire(url, pictures, n=16, pid=proc.pid, warm=1)
    reference = {}
    for picture in pictures:  # one lone request per picture: the mesh each answer must carry
        out, _ = app_load.predict(__import__("gradio_client").Client(url, verbose=False), picture)
        reference[picture] = glb_vertices(Path(out[2]))
    assert len(result["answers"]) == 16
    for picture, out in result["answers"]:
        assert "IoU" in out[5]
        assert np.array_equal(glb_vertices(Path(out[2])), reference[picture])
    assert result["after"][2] and Path(result["after"][2]).is_file()
    memory = result["memory"]
    growth = memory["after"]["VmHWM"] - memory["before"]["VmRSS"]
    assert growth < 400, f"the server's memory grew by {growth:.0f} MiB under 16 requests: {memory}"
    assert proc.poll() is None


def test_bad_pictures_over_http_get_a_message_and_the_server_lives(server, tiny_dataset: str, tmp_path: Path) -> None:
    """Through the server (Gradio's upload and queue, not only recon.app.service): each bad picture
    is answered with the app's one-line reason in the page's status, and the next picture works."""
    from gradio_client import Client

    app_load = _load_module()
    url, proc = server
    client = Client(url, verbose=False)
    text = tmp_path / "notes.png"
    text.write_text("this is not an image\n")
    huge = tmp_path / "huge.png"
    Image.new("1", (20000, 20000), 0).save(huge)
    clear = tmp_path / "clear.png"
    Image.new("RGBA", (128, 128), (200, 30, 30, 0)).save(clear)
    good = dataset_png(tiny_dataset, tmp_path / "good.png")
    for picture, reason in ((text, "not an image (expected PNG or JPEG)"), (huge, "image is too large"),
                            (clear, "no object found: the alpha channel is empty")):
        out, _ = app_load.predict(client, picture)
        assert out[0] is None and out[2] is None
        assert out[5].startswith(f"**Cannot use {picture.name}:** ") and reason in out[5], out[5]
        out, _ = app_load.predict(client, good)
        assert "IoU" in out[5] and Path(out[2]).is_file()
    assert proc.poll() is None
