"""Outputs and run directories under hostile conditions (issue 14): special files are never replaced,
a run directory is locked while a training writes it, a full disk and unwritable outputs give one
line (before any work where possible), plus the smaller training/eval items."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from recon.checkpoint import load_checkpoint
from recon.config import TrainConfig, parse_views
from recon.io import OutputPathError, atomic_write_bytes, check_output_file, write_json
from recon.runs import lock_holder, read_metrics, step_checkpoints
from recon.training import train

REPO = Path(__file__).resolve().parents[1]
FAST = ["--batch-size", "2", "--val-objects", "1", "--val-views", "1", "--log-every", "1", "--device", "cpu",
        "--no-tensorboard", "--threads", "1", "--encoder", "attention", "--impl", "torch"]


def _cfg(data: str, out: Path, **kw) -> TrainConfig:
    base = dict(data=data, out=str(out), iterations=2, batch_size=2, val_every=2, val_objects=1, val_views="1",
                log_every=1, device="cpu", tensorboard=False, threads=1, encoder="attention", impl="torch")
    base.update(kw)
    return TrainConfig(**base)


def _cli(module: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    import importlib

    main = importlib.import_module(f"pipelines.{module}").main
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    captured = capsys.readouterr()
    return exc.value.code, captured.err.strip().splitlines(), captured.out


@pytest.fixture(scope="module")
def trained_run(tiny_dataset: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-step run (one checkpoint at step 2) that tests copy before changing it."""
    out = tmp_path_factory.mktemp("outputs") / "run"
    train(_cfg(tiny_dataset, out))
    return out


# -- 2. special files are never replaced ---------------------------------------------------

def _special_files(tmp_path: Path) -> list[tuple[str, Path]]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    sock.close()  # the socket file stays
    (tmp_path / "dir").mkdir()
    (tmp_path / "link-to-fifo").symlink_to(fifo)
    return [("FIFO", fifo), ("socket", sock_path), ("directory", tmp_path / "dir"), ("FIFO", tmp_path / "link-to-fifo")]


def test_atomic_writers_refuse_special_files(tmp_path: Path) -> None:
    for kind, path in _special_files(tmp_path):
        before = os.stat(path).st_mode
        for write in (lambda p: atomic_write_bytes(p, b"x"), lambda p: write_json({"a": 1}, p)):
            with pytest.raises(OutputPathError, match=f"{path.name}: exists and is a {kind}.*refusing"):
                write(path)
        assert os.stat(path).st_mode == before  # still the same kind of file
        assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    # a device is refused by the same check (never written here: it is the machine's /dev/null)
    with pytest.raises(OutputPathError, match="/dev/null: exists and is a character device"):
        check_output_file("/dev/null", "--json")
    atomic_write_bytes(tmp_path / "regular", b"1")  # regular files and new paths are fine
    atomic_write_bytes(tmp_path / "regular", b"2")
    assert (tmp_path / "regular").read_bytes() == b"2"


@pytest.mark.parametrize("module", ["eval", "bench"])
def test_json_flag_refuses_special_files_before_work(trained_run: Path, tiny_dataset: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    import recon.workflows.eval
    import tools.bench

    def no_work(*args, **kwargs):
        raise AssertionError("computed before checking the output")

    monkeypatch.setattr(recon.workflows.eval, "evaluate", no_work)
    monkeypatch.setattr(tools.bench, "bench_renderers", no_work)
    fifo = tmp_path / "out.json"
    os.mkfifo(fifo)
    argv = (["--checkpoint", str(trained_run), "--data", tiny_dataset, "--device", "cpu", "--figures", "0"]
            if module == "eval" else ["--quick"])
    code, err, _ = _cli(module, [*argv, "--json", str(fifo)], capsys)
    assert code == 2 and len(err) == 1 and "out.json: exists and is a FIFO" in err[0], err
    assert fifo.is_fifo()


def test_train_out_refuses_special_file(tiny_dataset: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "run"
    os.mkfifo(fifo)
    code, err, _ = _cli("train", ["--data", tiny_dataset, "--out", str(fifo), "--iterations", "1", *FAST], capsys)
    assert code == 2 and len(err) == 1 and "--out" in err[0] and "not a directory" in err[0], err
    assert fifo.is_fifo()


# -- 3. the run-directory lock -------------------------------------------------------------

_HOLD = ("import sys, time\nfrom recon.runs import lock_run\nlock = lock_run(sys.argv[1])\n"
         "print('locked', flush=True)\ntime.sleep(120)\n")


def test_run_lock_refuses_a_second_training_and_dies_with_its_holder(trained_run: Path, tiny_dataset: str,
                                                                    tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, symlinks=True)
    metrics_before = (run / "metrics.jsonl").read_bytes()
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(run)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert lock_holder(run) == holder.pid
        # a second training into it fails at once, naming the holder, and writes nothing
        code, err, _ = _cli("train", ["--data", tiny_dataset, "--out", str(run), "--iterations", "4",
                                      "--val-every", "2", "--resume", *FAST], capsys)
        assert code == 2 and len(err) == 1 and f"PID {holder.pid}" in err[0] and "--out" in err[0], err
        assert (run / "metrics.jsonl").read_bytes() == metrics_before
        assert [s for s, _ in step_checkpoints(run)] == [2]
        # eval of a run being written says so (and still evaluates it)
        rec_out = _cli_ok("eval", ["--checkpoint", str(run), "--data", tiny_dataset, "--device", "cpu",
                                   "--views", "1", "--figures", "0", "--no-full-metrics",
                                   "--json", str(tmp_path / "e.json")], capsys)
        assert f"being written by a training (PID {holder.pid})" in " ".join(rec_out.split())
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
        holder.stdout.close()
    # SIGKILL leaves a .lock file but no lock: nothing to clean, the next training just runs
    assert (run / ".lock").exists() and lock_holder(run) is None
    assert train(_cfg(tiny_dataset, run, iterations=4, resume=True))["step"] == 4


def _cli_ok(module: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    import importlib

    capsys.readouterr()
    importlib.import_module(f"pipelines.{module}").main(argv)
    return capsys.readouterr().out


# -- 5. a full disk, unwritable outputs ----------------------------------------------------

def test_disk_full_during_training_is_one_line_and_resume_works(trained_run: Path, tiny_dataset: str,
                                                                tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, symlinks=True)
    limit = 256 * 1024  # far below a checkpoint: every checkpoint write fails as on a full disk (EFBIG)

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    cmd = [sys.executable, "-m", "pipelines.train", "--data", tiny_dataset, "--out", str(run), "--iterations", "4",
           "--val-every", "2", "--resume", *FAST]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, preexec_fn=small_files,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert str(run) in err[0] and "File too large" in err[0] and "step 4" in err[0], err
    assert "checkpoints up to step 2 are intact" in err[0] and "--resume" in err[0], err
    # nothing lost: the old checkpoints load, no temp file is left, and --resume finishes the run
    assert [s for s, _ in step_checkpoints(run)] == [2] and load_checkpoint(run / "last.pt")["step"] == 2
    assert not [p for p in run.rglob("*.tmp")]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert load_checkpoint(run / "last.pt")["step"] == 4
    assert [r["step"] for r in read_metrics(run) if "loss" in r] == [1, 2, 3, 4]


@pytest.mark.parametrize("flag", ["--json", "--out"])
def test_eval_checks_its_outputs_before_computing(trained_run: Path, tiny_dataset: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                                  flag: str) -> None:
    import recon.workflows.eval

    def no_work(*args, **kwargs):
        raise AssertionError("computed before checking the outputs")

    monkeypatch.setattr(recon.workflows.eval, "evaluate", no_work)
    unwritable = "/proc/recon-test/eval.json" if flag == "--json" else "/proc/recon-test/figures"
    argv = ["--checkpoint", str(trained_run), "--data", tiny_dataset, "--device", "cpu", "--json",
            str(tmp_path / "e.json"), "--out", str(tmp_path / "figs"), flag, unwritable]
    code, err, _ = _cli("eval", argv, capsys)
    assert code == 2 and len(err) == 1 and f"{flag} {unwritable}: cannot write in /proc" in err[0], err
    assert not (tmp_path / "e.json").exists()


# -- 6. the smaller items ------------------------------------------------------------------

def test_split_missing_in_one_category_fails_at_start(tiny_dataset: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "no-val.h5"
    shutil.copy(tiny_dataset, data)
    with h5py.File(data, "a") as f:
        del f["04379243"]["val"]  # tables have no val split; chairs do
    out = tmp_path / "run"
    code, err, _ = _cli("train", ["--data", str(data), "--out", str(out), "--iterations", "4", "--val-every", "2",
                                  *FAST], capsys)
    assert code == 2 and len(err) == 1 and "/04379243/val" in err[0] and "missing split 'val'" in err[0], err
    assert not out.exists()  # refused before the first step, not at the first validation


def test_view_specs_are_documented_and_consistent(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_views("all", 24) == list(range(24))
    assert parse_views("4", 24) == [0, 6, 12, 18]       # a bare number: that many evenly spaced views
    assert parse_views("0,6", 24) == [0, 6] and parse_views("5,", 24) == [5]  # comma list of indices
    with pytest.raises(ValueError, match="--val-views 0: a single number is a count.*write '0,'"):
        parse_views("0", 24, "--val-views")
    for module in ("train", "eval"):
        with pytest.raises(SystemExit):
            __import__(f"pipelines.{module}", fromlist=["main"]).main(["--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "N (N evenly spaced views" in text and "trailing comma" in text, text


def test_training_logs_the_iou_loss_under_its_name(trained_run: Path, tmp_path: Path) -> None:
    recs = [json.loads(x) for x in (trained_run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in recs if "loss" in r]
    assert steps and all("iou_loss" in r and "iou" not in r for r in steps)
    assert all(r["loss"] >= r["iou_loss"] > 0 for r in steps)  # the loss is the IoU loss + regularisers
    # runs written before the rename are still read, their "iou" as "iou_loss"
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 0.9, "iou": 0.8}) + "\n"
                                            + json.dumps({"step": 1, "val_iou": 0.1}) + "\n")
    assert read_metrics(tmp_path) == [{"step": 1, "loss": 0.9, "iou_loss": 0.8}, {"step": 1, "val_iou": 0.1}]


def test_refused_checkpoint_hides_torch_advice_to_load_it_unsafely(tmp_path: Path) -> None:
    import torch

    from recon.checkpoint import CheckpointError

    class Evil:
        def __reduce__(self):
            return os.getpid, ()

    torch.save({"model": {}, "config": {}, "step": 0, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(tmp_path / "evil.pt")
    msg = str(exc.value)
    assert "evil.pt: not a valid recon checkpoint" in msg and "refused unexecuted" in msg and "posix.getpid" in msg
    assert "weights_only" not in msg and "likely succeed" not in msg and "\n" not in msg


# -- 7. every JSON written is strict JSON (no NaN / Infinity) ---------------------------------

def _strict(text: str):
    """``json.loads`` as a strict reader (JavaScript's ``JSON.parse``) reads: NaN / Infinity are errors."""
    def refuse(constant: str):
        raise ValueError(f"not strict JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def test_write_json_writes_null_and_a_note_for_non_finite_values(tmp_path: Path) -> None:
    import numpy as np
    import torch

    write_json({"a": float("nan"), "b": [1.0, np.float32("inf"), torch.tensor(-float("inf"))],
                "c": {"d": np.float64(2.5), "e": np.int64(3)}}, tmp_path / "x.json")
    assert _strict((tmp_path / "x.json").read_text()) == {
        "a": None, "b": [1.0, None, None], "c": {"d": 2.5, "e": 3},
        "non_finite": {"a": "nan", "b[1]": "inf", "b[2]": "-inf"}}


def test_eval_json_config_and_metrics_are_strict_json(trained_run: Path, tiny_dataset: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--checkpoint", str(trained_run), "--data", tiny_dataset, "--device", "cpu", "--impl", "torch",
            "--views", "1", "--max-per-category", "1", "--figures", "1", "--no-full-metrics",
            "--json", str(tmp_path / "e.json"), "--out", str(tmp_path / "figs")]
    __import__("pipelines.eval", fromlist=["main"]).main(argv)
    record = _strict((tmp_path / "e.json").read_text())
    # no Chamfer without --full-metrics: its mean is not a number, written as null with a note saying so
    assert record["mean_chamfer"] is None and record["non_finite"]["mean_chamfer"] == "nan"
    assert record["mean_iou"] > 0
    _strict((tmp_path / "figs" / "meshes" / "predictions.json").read_text())
    _strict((trained_run / "config.json").read_text())
    for line in (trained_run / "metrics.jsonl").read_text().splitlines():
        _strict(line)


def test_metrics_log_writes_a_nan_loss_as_null(tmp_path: Path) -> None:
    from recon.runs import MetricsLog

    log = MetricsLog(tmp_path, tensorboard=False)
    log.log({"step": 1, "loss": float("nan"), "val_iou": 0.5})
    log.close()
    line = (tmp_path / "metrics.jsonl").read_text().splitlines()[0]
    assert _strict(line) == {"step": 1, "loss": None, "val_iou": 0.5, "non_finite": {"loss": "nan"}}
    assert read_metrics(tmp_path)[0]["loss"] is None
