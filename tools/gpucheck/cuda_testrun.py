"""The ``cuda_tests`` section: every ``pytest.mark.cuda`` test, in a pytest subprocess."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from tools.gpucheck.plans import ERROR_TAIL, REPO_ROOT
from recon.io import atomic_write_bytes

__all__ = ["cuda_test_files", "cuda_tests"]


def cuda_test_files() -> list[Path]:
    """Test files with a ``pytest.mark.cuda`` test."""
    return sorted(p for p in (REPO_ROOT / "tests").glob("test_*.py") if "mark.cuda" in p.read_text())


def cuda_tests(out_dir: Path, collect_only: bool, timeout_s: float) -> dict[str, Any]:
    """Run (or, for the dry run, collect) the CUDA-marked tests in a pytest subprocess."""
    if importlib.util.find_spec("pytest") is None:
        return {"status": "skipped", "reason": "pytest is not installed here (carry it in: `make gpu-bundle`, "
                                               "then put .gpu_vendor on PYTHONPATH; scripts/gpu_check.sh does)"}
    files = [str(p.relative_to(REPO_ROOT)) for p in cuda_test_files()]
    xml = out_dir / "cuda_tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", *files]
    cmd += ["--collect-only"] if collect_only else [f"--junitxml={xml}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    t = time.perf_counter()
    try:
        res = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        atomic_write_bytes(out_dir / "cuda_tests.log", out.encode())
        return {"status": "error", "reason": f"pytest did not finish within {timeout_s:.0f} s", "files": files}
    log = res.stdout + res.stderr
    atomic_write_bytes(out_dir / "cuda_tests.log", log.encode())
    rec: dict[str, Any] = {"files": files, "command": " ".join(cmd[1:]), "returncode": res.returncode,
                           "seconds": round(time.perf_counter() - t, 1)}
    if collect_only:
        m = re.search(r"(\d+)(?:/\d+)? tests? collected", log) or re.search(r"(\d+) selected", log)
        rec.update(status="passed" if res.returncode == 0 else "error", collected=int(m.group(1)) if m else None)
        if res.returncode != 0:
            rec["reason"] = log[-ERROR_TAIL:]
        return rec
    counts = _junit_counts(xml)
    rec.update(counts)
    bad = counts.get("failures", 0) + counts.get("errors", 0)
    if res.returncode not in (0, 5) and not bad:  # 5: nothing collected
        rec.update(status="error", reason=log[-ERROR_TAIL:])
    else:
        rec["status"] = "failed" if bad else "passed"
    return rec


def _junit_counts(xml: Path) -> dict[str, Any]:
    if not xml.is_file():
        return {}
    root = ET.parse(xml).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    counts["failed_tests"] = [f"{c.get('classname')}::{c.get('name')}" for s in suites for c in s.iter("testcase")
                              if c.find("failure") is not None or c.find("error") is not None]
    return counts
