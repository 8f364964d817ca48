"""`python -m pipelines.convert`: a tiny synthetic build, validate, and one-line errors (exit 2)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
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
    assert "valid" in r.stdout and "chair" in r.stdout
    # --test 0: valid, but eval's default split is empty; one warning line per category says so
    assert r.stderr.splitlines() == [f"warning: {built}: /{key}/test: no test objects in category {name!r}: eval "
                                     f"(--split test, the default), demo and compare will refuse this file"
                                     for key, name in (("02691156", "airplane"), ("03001627", "chair"))]


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
    """Call ``pipelines.convert.main`` here (a subprocess per case would cost seconds of imports); it sets
    torch threads: restore them afterwards, and check that the signal handlers are left as they were."""
    import torch

    from pipelines.convert import main

    threads = torch.get_num_threads()
    handlers = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]

    def call(*args: str) -> int:
        try:
            main([str(a) for a in args])
        except SystemExit as e:
            return int(e.code)
        return 0

    yield call
    assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == handlers
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
    ["nmr", "--src", "{tmp}", "--out", "{tmp}/x.h5", "--voxel-axes", "abc"],
    ["nmr", "--src", "{tmp}", "--out", "{tmp}/x.h5"],
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


def test_meshes_folder_errors_name_the_folder(tmp_path, in_process, capsys, monkeypatch):
    """A non-UTF-8 category folder and an unreadable folder: one line naming the folder (bytes as \\xNN)."""
    import trimesh

    bad = tmp_path / "src" / os.fsdecode(b"caf\xe9")
    bad.mkdir(parents=True)
    trimesh.creation.box().export(bad / "box.obj")
    assert in_process("meshes", "--src", bad.parent, "--out", tmp_path / "x.h5", "--workers", "1") == 2
    assert_one_line_error(capsys.readouterr().err, f"{tmp_path}/src/caf\\xe9: folder name is not valid UTF-8")
    real = os.scandir

    def scandir(path="."):  # a folder without read permission (tests run as root: chmod would block nothing)
        if Path(path) == bad.parent:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert in_process("meshes", "--src", bad.parent, "--out", tmp_path / "x.h5") == 2
    assert_one_line_error(capsys.readouterr().err, f"{bad.parent}: folder is not readable (permission denied)")
    assert not (tmp_path / "x.h5").exists()


# -- interrupts: SIGINT / SIGTERM at any moment -------------------------------------------------

LINUX = sys.platform.startswith("linux") and os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
needs_proc = pytest.mark.skipif(not LINUX, reason="watches the processes through Linux's /proc")
EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
SMALL = ("--per-category", "3", "--classes", "chair")  # 5 objects: the run is mostly imports + pool + writing


def start_convert(out: Path, *args: str) -> subprocess.Popen:
    """``convert synthetic`` with 2 workers in its own session (its own process group, like a shell job)."""
    return subprocess.Popen([sys.executable, "-m", "pipelines.convert", "synthetic", "--out", str(out), "--no-progress",
                             "--workers", "2", *args], cwd=ROOT, env=dict(os.environ, COLUMNS="120"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for(condition, timeout: float = 60.0, step: float = 0.002) -> float:
    """Poll until ``condition()``; returns the seconds it took."""
    t0 = time.monotonic()
    while not condition():
        assert time.monotonic() - t0 < timeout, "timed out waiting"
        time.sleep(step)
    return time.monotonic() - t0


def proc_state(pid: int) -> str:
    """``/proc`` state letter (``Z``: exited, not yet reaped; ``-``: gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "-"


def catches(pid: int, sig: int) -> bool:
    """Whether the process has a handler for ``sig`` (``SigCgt`` in ``/proc/<pid>/status``)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(caught >> (sig - 1) & 1)


def wait_until_running_our_code(proc: subprocess.Popen) -> None:
    """Until convert's ``default_stop_actions()`` has run: Python's start-up installs its SIGINT handler, ours
    removes it again. (Python's own start-up, before any of our code, can be covered by nothing we write.)"""
    seen = False

    def ready() -> bool:
        nonlocal seen
        if catches(proc.pid, signal.SIGINT):
            seen = True
            return False
        return proc.poll() is not None or seen or "libtorch" in Path(f"/proc/{proc.pid}/maps").read_text()

    wait_for(ready, step=0.0005)


def ignores_sigterm(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    ignored = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:")), 16)
    return bool(ignored >> (signal.SIGTERM - 1) & 1)


def has_workers(pid: int) -> bool:
    """A worker is running: a child that ignores SIGTERM (the import of torch also runs ``uname`` once)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return False
    return any(ignores_sigterm(int(c)) for c in children)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()  # state, ppid, pgrp, ...
            if int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(d.name))
    return pids


def finish(proc: subprocess.Popen, limit: float) -> tuple[str, float]:
    """Wait at most ``limit`` seconds for the process (then kill its group and fail); returns stderr and the wait."""
    t0 = time.monotonic()
    try:
        _, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"still running {limit:.0f} s after the signal (hang)") from None
    return err, time.monotonic() - t0


@needs_proc
def test_interrupt_leaves_nothing(tmp_path):
    """SIGTERM while a big build runs: exit 143, one line, no temp file, no output, no worker left."""
    out = tmp_path / "big.h5"
    proc = start_convert(out, "--per-category", "500")
    try:
        wait_for(lambda: any(p.suffix == ".tmp" for p in tmp_path.iterdir()) or proc.poll() is not None)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        err, _ = finish(proc, 10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, err
    assert err.strip() == "error: interrupted (SIGTERM)"
    assert list(tmp_path.iterdir()) == []
    wait_for(lambda: not group_members(proc.pid), timeout=5)


OLD = b"an older file at --out\n"


def _signal_run(folder: Path, sig: signal.Signals, to_group: bool, phase: str, old: bool, t_pool: float,
                t_work: float, rng: random.Random) -> tuple[str, float]:
    """One run of ``convert`` that gets ``sig`` at a random moment of ``phase`` (``old``: a file is at --out
    already); checks everything, returns the outcome and the seconds from the signal to the end. A run that
    finished before its moment is drawn again."""
    from recon.data.schema import validate

    for attempt in range(10):
        out = folder / f"try{attempt}" / "x.h5"
        out.parent.mkdir(parents=True)
        if old:
            out.write_bytes(OLD)
        proc = start_convert(out, *SMALL)
        try:
            wait_until_running_our_code(proc)
            if phase == "imports":  # parsing, importing torch/h5py, validating flags
                time.sleep(rng.uniform(0, t_pool))
            else:
                wait_for(lambda: has_workers(proc.pid) or proc.poll() is not None, step=0.0005)
                time.sleep(rng.uniform(0, 0.02) if phase == "pool start-up" else rng.uniform(0, t_work))
            if proc_state(proc.pid) in "Z-":  # this run was quicker than the calibration: draw again
                proc.communicate()
                continue
            (os.killpg if to_group else os.kill)(proc.pid, sig)
            err, seconds = finish(proc, 10)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        what = f"{sig.name} to the {'group' if to_group else 'process'} during {phase}"
        left = sorted(p.name for p in out.parent.iterdir())
        assert left == (["x.h5"] if old else left) and left in ([], ["x.h5"]), f"{what}: left {left}"
        if not left:
            result = "nothing at --out"
        elif old and out.read_bytes() == OLD:
            result = "old file intact"
        else:
            validate(out)  # a new file: complete (the signal came after the rename)
            result = "complete new file"
        wait_for(lambda: not group_members(proc.pid), timeout=5)  # no worker outlives the run
        if proc.returncode == -sig:  # no graceful_stop block was open (imports, exit): the default action ended
            assert err == "", f"{what}: stderr {err!r}"  # it at once (the shell reports 128 + signum all the same)
            return f"{128 + sig} by the default action, {result}", seconds
        assert proc.returncode == EXIT[sig], f"{what}: exit {proc.returncode}, stderr {err!r}"
        assert err.strip() == f"error: interrupted ({sig.name})", f"{what}: stderr {err!r}"
        return f"{proc.returncode} with one line, {result}", seconds
    raise AssertionError(f"{phase}: 10 runs in a row finished before their signal")


@needs_proc
def test_signals_at_random_moments(tmp_path):
    """20 signals at random moments of a tiny build (during the imports, while the worker pool starts, while it
    works, as the file is written and the process exits), SIGINT and SIGTERM, to the process and to its process
    group, half of them with an older file at --out. Each run ends within 10 s with exit status 130 / 143 (as the
    shell reports it), no traceback (one line ``error: interrupted (SIGx)`` if a file was being written, else
    nothing), no temp file, no worker left, and at --out nothing / the old file untouched, unless the new file was
    complete (then it validates). Runs go three at a time (a run is mostly single-threaded imports)."""
    proc = start_convert(tmp_path / "calibration.h5", *SMALL)  # phases: our code -> first worker -> exit
    wait_until_running_our_code(proc)
    t_pool = wait_for(lambda: has_workers(proc.pid) or proc.poll() is not None)
    t_work = wait_for(lambda: proc.poll() is not None, step=0.01)
    assert proc.returncode == 0, proc.communicate()[1]
    seed = int(os.environ.get("RECON_SIGNAL_SEED", time.time_ns() % 2 ** 32))
    plans = [((signal.SIGINT, signal.SIGTERM)[i % 2], i % 4 >= 2, ("imports", "pool start-up", "work")[i % 3],
              i % 8 >= 4) for i in range(20)]
    with ThreadPoolExecutor(3) as pool:
        runs = [pool.submit(_signal_run, tmp_path / f"run{i}", *plan, t_pool, t_work, random.Random(seed + i))
                for i, plan in enumerate(plans)]
        outcomes = [r.result() for r in runs]
    counts = Counter(o for o, _ in outcomes)
    print(f"\nseed {seed}; calibration: pool after {t_pool:.2f} s, exit {t_work:.2f} s later; slowest end after a "
          f"signal {max(s for _, s in outcomes):.2f} s; outcomes {dict(counts)}")


def test_nmr_converter_keeps_its_old_name():
    """``convert nmr`` was ``convert softras`` (the backend's name): both parse to the same command."""
    from pipelines.convert import build_parser
    from recon.config import ConvertConfig

    for name in ("nmr", "softras"):
        args = build_parser().parse_args([name, "--src", "s", "--out", "o.h5"])
        assert ConvertConfig(**vars(args)).command == "nmr"
