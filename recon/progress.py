"""Progress that shows in a log: on a terminal a rich bar; anywhere else (a file, a pipe, nohup, CI,
a cluster job) one plain line now and then, because a rich bar draws nothing off a terminal.

A line says ``<task>: <done>/<total> (<pct>) <fields> | <rate> it/s, elapsed <h:mm:ss>, ETA <h:mm:ss>``
(the fields are the caller's, e.g. ``loss=0.4123``; ``-`` values are left out). A line is printed
when ``RECON_PROGRESS_SECONDS`` (default 30) have passed since the task's last line, or when
``RECON_PROGRESS_STEPS`` (default: off) steps have been done since it, and when a task completes;
never more than one line per ``MIN_GAP_S`` (1 s) over all tasks, whatever the settings (so a task
that completes within a second of the previous line ends without its closing line: the caller's
summary follows anyway). The first step of a task is printed too (the log shows that work started
and its total).

``progress_bar(...)`` is the one factory: ``LineProgress`` off a terminal, ``rich.progress.Progress``
on one. ``LineProgress`` implements the part of rich's ``Progress`` that the project uses
(``add_task``, ``update``, ``advance``, ``start``, ``stop``, ``with``).
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Callable, TextIO

from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress

from recon.errors import ConfigError

__all__ = ["INTERVAL_ENV", "STEPS_ENV", "DEFAULT_INTERVAL_S", "MIN_GAP_S", "LineProgress", "progress_bar",
           "line_settings"]

INTERVAL_ENV = "RECON_PROGRESS_SECONDS"
STEPS_ENV = "RECON_PROGRESS_STEPS"
DEFAULT_INTERVAL_S = 30.0
MIN_GAP_S = 1.0  # the floor between two lines, over all tasks


def line_settings() -> tuple[float, int | None]:
    """``(interval_s, every_steps)`` from the environment: ``RECON_PROGRESS_SECONDS`` (a number >= 1,
    default 30) and ``RECON_PROGRESS_STEPS`` (an integer >= 1, default none).

    Raises:
        ConfigError: a value out of range or not a number, naming the variable.
    """
    interval = _env_number(INTERVAL_ENV, float, MIN_GAP_S, 86400, "seconds between progress lines in [1, 86400]")
    steps = _env_number(STEPS_ENV, int, 1, 10 ** 12, "a whole number of steps between progress lines >= 1")
    return DEFAULT_INTERVAL_S if interval is None else interval, None if steps is None else int(steps)


def _env_number(name: str, parse: type, low: float, high: float, expected: str) -> float | None:
    """The number in environment variable ``name`` (None when unset or blank), parsed by ``parse`` and
    within ``[low, high]``; else ConfigError naming the variable and ``expected``."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = parse(text)
    except ValueError:
        value = math.nan
    if not (low <= value <= high):
        raise ConfigError(f"{name}={text!r}: expected {expected}")
    return value


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-:--:--"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class _Task:
    def __init__(self, name: str, total: float | None, completed: float, fields: dict[str, Any], now: float):
        self.name, self.total, self.completed, self.fields = name, total, completed, fields
        self.start, self.start_done = now, completed
        self.last_t, self.last_done = now, completed  # at the last printed line
        self.printed_final = False


class LineProgress:
    """A rich-``Progress``-like reporter that prints plain lines (see the module docstring).

    Args:
        fields: the task fields to show, in order (others are ignored); None shows every field.
        out: stream for the lines (default ``sys.stdout`` at print time); every line is flushed.
        interval_s, every_steps: as ``line_settings()`` (default: read from the environment).
        clock: seconds, monotonic (tests pass a fake).
    """

    def __init__(self, fields: tuple[str, ...] | None = None, out: TextIO | None = None,
                 interval_s: float | None = None, every_steps: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        env_interval, env_steps = line_settings()
        self.interval = env_interval if interval_s is None else max(MIN_GAP_S, float(interval_s))
        self.every = env_steps if every_steps is None else every_steps
        self.fields, self.out, self.clock = fields, out, clock
        self.tasks: dict[int, _Task] = {}
        self.last_line = -math.inf

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def add_task(self, description: str, total: float | None = 100.0, completed: float = 0, **fields: Any) -> int:
        task_id = len(self.tasks)
        self.tasks[task_id] = _Task(description, total, completed, dict(fields), self.clock())
        return task_id

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def update(self, task_id: int, *, total: float | None = None, completed: float | None = None,
               advance: float | None = None, description: str | None = None, **fields: Any) -> None:
        t = self.tasks[task_id]
        if total is not None:
            t.total = total
        if description is not None:
            t.name = description
        if completed is not None:
            t.completed = completed
        if advance is not None:
            t.completed += advance
        t.fields.update(fields)
        now = self.clock()
        if now - self.last_line < MIN_GAP_S:
            return
        final = t.total is not None and t.completed >= t.total and not t.printed_final
        first = t.last_done == t.start_done and t.completed > t.start_done and t.last_t == t.start
        due = now - t.last_t >= self.interval or (self.every is not None and t.completed - t.last_done >= self.every)
        if final or first or (due and t.completed > t.last_done):
            self._print(t, now)
            t.printed_final = t.printed_final or final

    def _print(self, t: _Task, now: float) -> None:
        done, total = t.completed, t.total
        count = f"{done:g}/{total:g}" if total is not None else f"{done:g}"
        if total:
            count += f" ({100.0 * done / total:.1f}%)"
        names = self.fields if self.fields is not None else tuple(t.fields)
        shown = " ".join(f"{k}={t.fields[k]}" for k in names if k in t.fields and str(t.fields[k]) != "-")
        span = now - t.last_t
        rate = (done - t.last_done) / span if span > 0 else math.nan
        left = (total - done) / rate if total is not None and rate > 0 else (0.0 if total is not None and done >= total
                                                                               else math.nan)
        rate_text = f"{rate:.2f} it/s" if math.isfinite(rate) else "- it/s"
        line = (f"{t.name}: {count}" + (f" {shown}" if shown else "")
                + f" | {rate_text}, elapsed {_clock(now - t.start)}, ETA {_clock(left)}")
        print(line, file=self.out or sys.stdout, flush=True)
        t.last_t, t.last_done = now, done
        self.last_line = now


def progress_bar(*columns: Any, fields: tuple[str, ...] | None = None, enabled: bool = True,
                 console: Console | None = None, transient: bool = False) -> Progress | LineProgress:
    """The project's progress display: ``rich.progress.Progress(*columns)`` (default columns + M/N)
    when ``console`` (default: stdout's) is a terminal, else a ``LineProgress`` showing ``fields``
    on that console's stream. ``enabled=False`` gives a disabled rich bar (prints nothing)."""
    console = console or Console()
    if enabled and not console.is_terminal:
        return LineProgress(fields=fields, out=console.file)
    cols = columns or (*Progress.get_default_columns(), MofNCompleteColumn())
    return Progress(*cols, console=console, transient=transient, disable=not enabled)
