"""`python -m pipelines.convert`: a tiny synthetic build, validate, and one-line errors (exit 2)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="120")
    return subprocess.run([sys.executable, "-m", "pipelines.convert", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "tiny.h5"
    r = run("synthetic", "--out", out, "--per-category", "2", "--test", "0", "--classes", "chair,02691156",
            "--workers", "1", "--seed", "3")
    assert r.returncode == 0, r.stderr
    assert "chair" in r.stdout and "airplane" in r.stdout and "MiB" in r.stdout
    return out


def test_synthetic_and_validate(built):
    with h5py.File(built) as f:
        assert sorted(f) == ["02691156", "03001627"]
        assert [f["03001627"][s]["images"].shape[0] for s in ("train", "val", "test")] == [2, 1, 0]
    r = run("validate", built)
    assert r.returncode == 0, r.stderr
    assert "valid" in r.stdout and "chair" in r.stdout and r.stderr == ""


def bad_files(d: Path, good: Path) -> dict[str, Path]:
    text = d / "text.h5"
    text.write_text("not hdf5\n")
    cut = d / "cut.h5"
    raw = good.read_bytes()
    cut.write_bytes(raw[: len(raw) // 3])
    version = d / "version.h5"
    version.write_bytes(raw)
    with h5py.File(version, "r+") as f:
        f.attrs["version"] = 99
    return {"missing": d / "missing.h5", "text": text, "truncated": cut, "version": version, "directory": d}


@pytest.fixture
def in_process(monkeypatch):
    """Call ``pipelines.convert.main`` here (a subprocess per case would cost seconds of imports);
    it installs a SIGTERM handler and sets torch threads: restore both afterwards."""
    import torch

    from pipelines.convert import main

    threads = torch.get_num_threads()
    handler = signal.getsignal(signal.SIGTERM)

    def call(*args: str) -> int:
        try:
            main([str(a) for a in args])
        except SystemExit as e:
            return int(e.code)
        return 0

    yield call
    signal.signal(signal.SIGTERM, handler)
    torch.set_num_threads(threads)


def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for frag in fragments:
        assert frag in lines[0], err


def test_validate_bad_file_subprocess(built, tmp_path):
    path = bad_files(tmp_path, built)["truncated"]
    r = run("validate", path)
    assert r.returncode == 2 and r.stdout == ""
    assert_one_line_error(r.stderr, str(path))


@pytest.mark.parametrize("case", ["missing", "text", "truncated", "version", "directory"])
def test_validate_bad_files(case, built, tmp_path, in_process, capsys):
    path = bad_files(tmp_path, built)[case]
    assert in_process("validate", path) == 2
    assert_one_line_error(capsys.readouterr().err, str(path))


def test_bad_flag_subprocess(tmp_path):
    r = run("meshes", "--src", tmp_path, "--out", tmp_path / "x.h5", "--split", "0.5,0.2")
    assert r.returncode == 2
    assert_one_line_error(r.stderr, "--split", "0.5,0.2")


@pytest.mark.parametrize("args", [
    ["meshes", "--src", "{tmp}/nope", "--out", "{tmp}/x.h5"],
    ["meshes", "--src", "{tmp}", "--out", "{tmp}/x.h5", "--split", "0.5,0.5,0.5"],
    ["softras", "--src", "{tmp}", "--out", "{tmp}/x.h5", "--voxel-axes", "abc"],
    ["softras", "--src", "{tmp}", "--out", "{tmp}/x.h5"],
    ["synthetic", "--out", "{tmp}/x.h5", "--per-category", "-3"],
    ["synthetic", "--out", "{tmp}/x.h5", "--classes", "spaceship"],
    ["synthetic", "--out", "{tmp}", "--per-category", "1"],
    ["synthetic", "--out", "{tmp}/x.h5", "--bogus"],
    ["frobnicate"],
    [],
])
def test_bad_flags(args, tmp_path, in_process, capsys):
    assert in_process(*[a.format(tmp=tmp_path) for a in args]) == 2
    assert_one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.slow  # known bug: SIGTERM during the worker pool's start-up sometimes hangs convert (see README)
def test_interrupt_leaves_nothing(tmp_path):
    out = tmp_path / "big.h5"
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.convert", "synthetic", "--out", str(out),
                             "--per-category", "500", "--workers", "2", "--no-progress"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while time.time() < deadline and not any(p.suffix == ".tmp" for p in tmp_path.iterdir()):
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert err.strip() == "error: interrupted"
    assert list(tmp_path.iterdir()) == []
