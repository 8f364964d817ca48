"""Progress that shows in a log (recon.progress): off a terminal, training, conversion and evaluation
print plain lines (step/total, loss, it/s, ETA) every RECON_PROGRESS_SECONDS or RECON_PROGRESS_STEPS,
never more than one per second; on a terminal the rich bar stays."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console
from rich.progress import Progress

from recon.progress import INTERVAL_ENV, STEPS_ENV, LineProgress, line_settings, progress_bar

LINE = re.compile(r"^(?P<task>[\w +-]+): (?P<done>\d+)/(?P<total>\d+) \(\d+\.\d%\)(?P<fields>.*) \| "
                  r"(?P<rate>[\d.]+|-) it/s, elapsed (?P<elapsed>\d+:\d\d:\d\d), ETA (\d+:\d\d:\d\d|-:--:--)$")


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_lines_every_interval_first_and_final_and_never_two_within_a_second():
    clock, out = FakeClock(), io.StringIO()
    bar = LineProgress(fields=("loss",), out=out, interval_s=5, clock=clock)
    task = bar.add_task("train", total=100, loss="-")
    for step in range(1, 101):
        clock.t += 0.25  # 4 it/s: 25 s in all
        bar.update(task, completed=step, loss=f"{1 / step:.4f}")
    lines = out.getvalue().splitlines()
    parsed = [LINE.match(x) for x in lines]
    assert all(parsed), lines
    done = [int(m["done"]) for m in parsed]
    assert done[0] == 1 and done[-1] == 100  # the start and the end are in the log
    assert done == [1, 21, 41, 61, 81, 100], done  # every 5 s (20 steps at 4 it/s) in between
    assert all(m["total"] == "100" for m in parsed)
    assert parsed[2]["fields"] == " loss=0.0244" and parsed[2]["rate"] == "4.00"
    assert lines[-1].endswith("ETA 0:00:00")


def test_every_n_steps_is_still_at_most_one_line_per_second():
    clock, out = FakeClock(), io.StringIO()
    bar = LineProgress(out=out, interval_s=1000, every_steps=10, clock=clock)
    task = bar.add_task("eval", total=1000)
    for step in range(1, 1001):
        clock.t += 0.01  # 100 it/s: 10 steps are 0.1 s, but lines stay >= 1 s apart
        bar.advance(task)
    done = [int(LINE.match(x)["done"]) for x in out.getvalue().splitlines()]
    # the closing line too yields to the one-second floor: the last line is within the last second
    assert len(done) <= 11 and done[0] == 1 and done[-1] >= 900
    assert all(b - a >= 100 for a, b in zip(done[1:], done[2:]))  # a second = 100 steps apart


def test_settings_come_from_the_environment_and_are_checked(monkeypatch):
    monkeypatch.setenv(INTERVAL_ENV, "2.5")
    monkeypatch.setenv(STEPS_ENV, "50")
    assert line_settings() == (2.5, 50)
    for name, value in ((INTERVAL_ENV, "0.1"), (INTERVAL_ENV, "soon"), (STEPS_ENV, "0"), (STEPS_ENV, "1.5")):
        monkeypatch.setenv(name, value)
        with pytest.raises(ValueError, match=name):
            line_settings()
        monkeypatch.delenv(name)


def test_a_terminal_keeps_the_rich_bar():
    assert isinstance(progress_bar(console=Console(file=io.StringIO(), force_terminal=True)), Progress)
    assert isinstance(progress_bar(console=Console(file=io.StringIO(), force_terminal=False)), LineProgress)
    assert isinstance(progress_bar(enabled=False, console=Console(file=io.StringIO())), Progress)


def _run_to_file(args: list[str], log: Path, env_extra: dict[str, str]) -> tuple[float, list[str]]:
    env = {**os.environ, **env_extra, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("FORCE_COLOR", None)
    env.pop("TTY_COMPATIBLE", None)
    with open(log, "w") as fh:
        start = time.monotonic()
        proc = subprocess.run([sys.executable, *args], stdout=fh, stderr=subprocess.PIPE, text=True, env=env,
                              timeout=300)
        wall = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    return wall, log.read_text().splitlines()


def test_training_and_evaluation_write_progress_lines_to_a_log_file(tiny_dataset: str, tmp_path: Path):
    wall, lines = _run_to_file(["-m", "pipelines.train", "--data", tiny_dataset, "--out", str(tmp_path / "run"),
                                "--iterations", "60", "--batch-size", "2", "--val-every", "60", "--val-objects", "1",
                                "--val-views", "1", "--device", "cpu", "--impl", "torch", "--no-tensorboard"],
                               tmp_path / "train.log", {INTERVAL_ENV: "1", STEPS_ENV: "2"})
    progress = [m for m in map(LINE.match, lines) if m and m["task"] == "train"]
    # first step and more: 60 steps take several seconds even on a fast machine (lines are >= 1 s apart)
    assert len(progress) >= 3 or wall < 3, lines
    assert len(progress) >= 2, lines
    assert all(m["total"] == "60" for m in progress)
    assert int(progress[0]["done"]) >= 1 and int(progress[-1]["done"]) <= 60
    assert all(" loss=" in m["fields"] for m in progress[1:]), lines
    assert len(progress) <= wall + 1  # never more than one line per second
    assert not any("\x1b[" in x or "\r" in x for x in lines)  # plain text, no terminal control codes

    wall, lines = _run_to_file(["-m", "pipelines.eval", "--checkpoint", str(tmp_path / "run"), "--data", tiny_dataset,
                                "--device", "cpu", "--impl", "torch", "--views", "0,1,2,3", "--figures", "0",
                                "--no-full-metrics", "--protocol", "exact"],
                               tmp_path / "eval.log", {INTERVAL_ENV: "1", STEPS_ENV: "1"})
    progress = [m for m in map(LINE.match, lines) if m and m["task"].startswith("eval")]
    assert progress and int(progress[0]["done"]) >= 1, lines


def test_conversion_writes_progress_lines_to_a_log_file(tmp_path: Path):
    _, lines = _run_to_file(["-m", "pipelines.convert", "synthetic", "--out", str(tmp_path / "s.h5"),
                             "--per-category", "6", "--val", "1", "--test", "1", "--classes", "chair",
                             "--workers", "1"], tmp_path / "convert.log", {INTERVAL_ENV: "1", STEPS_ENV: "1"})
    progress = [m for m in map(LINE.match, lines) if m and m["task"] == "synthetic"]
    assert progress and progress[0]["done"] == "1" and progress[0]["total"] == "8", lines
