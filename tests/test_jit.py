"""The JIT loader survives a builder killed mid-build (recon.ops.jit).

torch's build lock is a plain file that only the builder removes: before the fix, one SIGKILLed
build (a test timeout, a pool terminating its workers) made every later process wait on it forever.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from recon.ops import jit

REPO = Path(__file__).resolve().parents[1]
# pybind11 alone (from torch's include folder): a few seconds to build where torch/extension.h takes ~20
SOURCE = """
#include <pybind11/pybind11.h>
static double twice(double x) { return 2 * x; }
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("twice", &twice); }
"""
LOADER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from recon.ops import jit
    spec = jit.JitSpec("recon_jit_probe", "probe kernel", (Path(sys.argv[1]),))
    print(jit.load(spec).twice(1.5))
""")


def _loader(source: Path, ext_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", LOADER, str(source)], cwd=REPO, start_new_session=True,
                            env={**os.environ, "RECON_EXT_DIR": str(ext_dir)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_load_after_a_builder_was_killed_mid_build(tmp_path: Path) -> None:
    source, ext_dir = tmp_path / "probe.cpp", tmp_path / "ext"
    source.write_text(SOURCE)
    victim = _loader(source, ext_dir)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(ext_dir.glob("recon_jit_probe/*/lock")):
            assert victim.poll() is None, victim.communicate()
            time.sleep(0.01)
        assert list(ext_dir.glob("recon_jit_probe/*/lock")), "the build never started"
    finally:
        os.killpg(victim.pid, signal.SIGKILL)  # the loader and its compiler: as a test timeout would
        victim.wait()
    assert list(ext_dir.glob("recon_jit_probe/*/lock")), "the killed build left no lock file: nothing tested"

    survivor = _loader(source, ext_dir)
    try:
        out, err = survivor.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(survivor.pid, signal.SIGKILL)
        pytest.fail("the load after a killed build hangs on the stale lock file")
    assert survivor.returncode == 0, err
    assert out.strip() == "3.0"
    assert not list(ext_dir.glob("recon_jit_probe/*/lock"))

    # a loader killed while checking the finished build (its lock left behind): the next one reuses the build
    (so,) = ext_dir.glob("recon_jit_probe/*/recon_jit_probe.so")
    built = so.stat().st_mtime_ns
    (so.parent / jit.TORCH_LOCK).touch()
    again = _loader(source, ext_dir)
    try:
        out, err = again.communicate(timeout=120)
    finally:
        if again.poll() is None:
            os.killpg(again.pid, signal.SIGKILL)
    assert again.returncode == 0 and out.strip() == "3.0", err
    assert so.stat().st_mtime_ns == built and not (so.parent / jit.TORCH_LOCK).exists()


def test_exclusive_build_empties_a_folder_left_by_a_dead_builder(tmp_path: Path) -> None:
    (tmp_path / jit.TORCH_LOCK).touch()
    (tmp_path / "half_written.o").write_bytes(b"\0" * 10)
    (tmp_path / "sub").mkdir()
    with jit.exclusive_build(tmp_path):
        assert sorted(p.name for p in tmp_path.iterdir()) == [jit.FLOCK]


def test_exclusive_build_keeps_a_finished_build_and_excludes_others(tmp_path: Path) -> None:
    import fcntl

    (tmp_path / "probe.so").write_bytes(b"\0")
    with jit.exclusive_build(tmp_path):
        assert (tmp_path / "probe.so").exists()  # no stale lock: the build is reused
        with open(tmp_path / jit.FLOCK, "a+b") as other, pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(tmp_path / jit.FLOCK, "a+b") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released on exit


def test_exclusive_build_keeps_the_steps_a_dead_builder_finished(tmp_path: Path) -> None:
    """A loader killed after ninja logged some steps (typically during the up-to-date check of a finished
    build): only the stale lock goes; ninja redoes whatever its log does not record (see the module doc)."""
    (tmp_path / jit.TORCH_LOCK).touch()
    for name in (jit.NINJA_LOG, "build.ninja", "probe.o", "probe.so"):
        (tmp_path / name).write_bytes(b"x")
    with jit.exclusive_build(tmp_path):
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([jit.FLOCK, jit.NINJA_LOG, "build.ninja",
                                                                     "probe.o", "probe.so"])
