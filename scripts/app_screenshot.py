"""Screenshot of the app for the docs (docs/images/app.png): start `python -m pipelines.app` on a run,
open it in headless Chromium (Playwright, the system browser), drop a picture, wait until the 3D
view has drawn the mesh, save the page.

    PYTHONPATH=. python scripts/app_screenshot.py --checkpoint runs/demo --data data/synthetic.h5 \\
        --picture assets/app_examples/chair-test-00000.png --out docs/images/app.png
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _drawn(png: bytes) -> int:
    a = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3).astype(int)
    return int((np.abs(a - a[0]).sum(1) > 30).sum())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default=None)
    p.add_argument("--picture", default=str(ROOT / "assets" / "app_examples" / "chair-test-00000.png"))
    p.add_argument("--out", default=str(ROOT / "docs" / "img" / "app.png"))
    p.add_argument("--chromium", default="/usr/bin/chromium")
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    port = _free_port()
    cmd = [sys.executable, "-m", "pipelines.app", "--checkpoint", args.checkpoint, "--port", str(port)]
    if args.data:
        cmd += ["--data", args.data]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env)
    try:
        for line in server.stdout:  # wait for the URL line
            print(line, end="")
            if "running at" in line:
                break
        else:
            raise SystemExit(f"the app did not start (exit {server.wait()})")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 960})
            page.goto(f"http://127.0.0.1:{port}/")
            page.set_input_files("#picture input[type=file]", args.picture)
            page.wait_for_function("document.querySelector('#status').innerText.includes('IoU')", timeout=120_000)
            canvas = page.locator("#mesh canvas")
            deadline = time.time() + 30
            while _drawn(canvas.screenshot()) < 2000 and time.time() < deadline:
                page.wait_for_timeout(250)
            page.wait_for_timeout(500)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.out, full_page=True)
            browser.close()
        print(f"wrote {args.out}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
