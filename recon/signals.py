"""The one interrupt strategy of recon: a signal sets a flag; work stops at the next safe point.

Code that must not be cut short anywhere (a file being written, a worker pool, a training run
between checkpoints) runs inside ``with graceful_stop():``. There SIGINT (Ctrl-C) and SIGTERM
do nothing but record which signal arrived; the work calls ``check()`` at safe points (between
objects, between worker results, between training steps), which raises ``Interrupted(signum)``.
Nothing is raised in the middle of a write, an import or a pool start-up, so the code that
unwinds from ``Interrupted`` (``finally`` blocks and context managers: temp files removed,
worker pools torn down) always runs, and runs once.

``Interrupted`` is a ``KeyboardInterrupt`` (code that treats Ctrl-C as "stop" keeps working)
that carries the signal: ``exit_code`` is ``128 + signum`` as a shell reports it, 130 for
SIGINT and 143 for SIGTERM. ``pipelines.cli.user_errors`` turns it into one line
``error: interrupted (SIGTERM)`` and that exit status, with no traceback.

Rules:

* Outside any block, a program (``if __name__ == "__main__":``) calls
  ``default_stop_actions()`` first: there is nothing to clean up, so a signal ends the process
  at once with the system's default action (the shell reports 130 / 143, nothing is printed)
  instead of raising ``KeyboardInterrupt`` in whatever code runs (a traceback): during the
  imports, and while the interpreter exits after the work is done.
* No signal is lost: a block that ends normally after a signal arrived raises ``Interrupted``
  as it exits (what is finished stays, e.g. a renamed output file, but the status says stopped).
* Handlers are installed only from the main thread (Python delivers signals there); from any
  other thread ``graceful_stop`` is a no-op that yields a flag nothing sets.
* On exit the previous handlers are restored, so blocks nest and tests stay isolated.
  ``check()`` looks at every open block, so library code needs no flag passed to it.
* Worker processes ignore SIGINT/SIGTERM (``ignore_stop_signals``): a Ctrl-C or a SIGTERM to
  the process group reaches them too, and only the parent decides (it kills the pool).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterable, Iterator

__all__ = ["Interrupted", "StopFlag", "graceful_stop", "check", "raise_if_stopped", "stop_requested",
           "ignore_stop_signals", "default_stop_actions", "STOP_SIGNALS"]

STOP_SIGNALS: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)


def signal_name(signum: int) -> str:
    """``"SIGTERM"`` for 15 (``"signal N"`` for numbers Python has no name for)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Interrupted(KeyboardInterrupt):
    """Work stopped on a signal. ``signum``: the signal; ``exit_code``: ``128 + signum``."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        self.signum = int(signum)
        super().__init__(f"interrupted ({signal_name(self.signum)})")

    @property
    def exit_code(self) -> int:
        """The shell's status for a process stopped by this signal (130 SIGINT, 143 SIGTERM)."""
        return 128 + self.signum

    def __reduce__(self):  # picklable with its signal (exceptions pickle their args by default)
        return type(self), (self.signum,)


class StopFlag:
    """Records the first stop signal received; ``raise_if_stopped()`` turns it into ``Interrupted``."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def set(self, signum: int) -> None:
        if self.signum is None:
            self.signum = int(signum)

    def __bool__(self) -> bool:
        return self.signum is not None

    def raise_if_stopped(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)


_active: list[StopFlag] = []  # flags of the open graceful_stop contexts (main thread only)


@contextmanager
def graceful_stop(signals: Iterable[int] = STOP_SIGNALS) -> Iterator[StopFlag]:
    """Within the block, ``signals`` only set the yielded flag; previous handlers are restored on exit.

    A signal is never lost: if the block ends normally after one arrived, leaving it raises
    ``Interrupted``. A no-op (the flag is never set by a signal) outside the main thread.
    """
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    signals = tuple(signals)

    def on_signal(signum: int, frame: object) -> None:
        flag.set(signum)

    previous = {}
    _active.append(flag)
    try:
        for s in signals:
            previous[s] = signal.signal(s, on_signal)
        yield flag
    finally:
        for s, handler in previous.items():
            # None: a handler not installed from Python; the default is the closest we can restore
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        _active.remove(flag)
    flag.raise_if_stopped()  # the block ended normally after a signal: it is not lost


def stop_requested() -> bool:
    """True when a stop signal arrived in any open ``graceful_stop`` context."""
    return any(_active)


def check() -> None:
    """Raise ``Interrupted`` if a stop signal arrived in any open ``graceful_stop`` context (a safe point)."""
    for flag in _active:
        flag.raise_if_stopped()


raise_if_stopped = check


def default_stop_actions() -> None:
    """For ``if __name__ == "__main__":``: SIGINT/SIGTERM take the system's default action (end the process,
    status 128 + signum) wherever no ``graceful_stop`` block is open, so they never raise a stray traceback.
    Not for libraries or tests: it replaces Python's ``KeyboardInterrupt`` on Ctrl-C for the whole process."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_DFL)


def ignore_stop_signals() -> None:
    """For worker processes: SIGINT and SIGTERM are ignored; the parent stops (kills) the workers."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
