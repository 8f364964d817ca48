"""Shared CLI plumbing: the error model's front end (``user_errors``: a ``recon.errors.UserError``
is one line and exit status 2, anything else a bug with its traceback and exit status 1), rich
console, progress bars, the training progress display (``TrainProgress``) and tables printed uncut
(``wide_print``).

Nothing here imports torch at module level: ``pipelines.convert`` installs its signal handlers
before the heavy imports.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from recon.config import add_dataclass_args
from recon.errors import ExtensionUnavailable, UserError
from recon.progress import LineProgress, progress_bar

if TYPE_CHECKING:
    from recon.training import Trainer

__all__ = ["console", "err_console", "fail", "print_error", "user_errors", "debug_requested", "DEBUG_ENV",
           "BUG_REPORT", "make_progress", "OneLineParser", "TrainProgress", "wide_print"]

console = Console()
err_console = Console(stderr=True)


def print_error(message: object) -> None:
    """Print ``error: <message>`` as one line on stderr. Undecodable bytes of file names (surrogate
    escapes) are shown as ``\\xNN``, so printing never fails whatever the stream's encoding."""
    text = " ".join(str(message).split()).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    print(f"error: {text}", file=sys.stderr)


def fail(message: str, status: int = 2) -> None:
    """Print ``error: <message>`` as one line on stderr and exit."""
    print_error(message)
    raise SystemExit(status)


DEBUG_ENV = "RECON_DEBUG"  # set (to anything but "" or "0"): tracebacks for user errors too
BUG_REPORT = ("this is a bug in recon, not a problem with your input: please report it with the traceback above "
              "and the command line that caused it")


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line ``error: ...`` (exit status 2) instead of a usage dump,
    with a ``--debug`` flag (``debug_requested``) on every command and subcommand."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # SUPPRESS: a subcommand's parser must not reset a --debug given before the subcommand
        self.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                          help=f"on an error, show its traceback (also: {DEBUG_ENV}=1)")

    def error(self, message: str) -> None:  # type: ignore[override]
        fail(f"{message} (see {self.prog} --help)")


def command_parser(module: str, doc: str | None, config: type | None = None) -> OneLineParser:
    """The parser of ``python -m <module>``: its module docstring as the description (kept as
    written), ``--debug``, and the flags of dataclass ``config`` (``recon.config.add_dataclass_args``)."""
    p = OneLineParser(prog=f"python -m {module}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if config is not None:
        add_dataclass_args(p, config)
    return p


def debug_requested(args: argparse.Namespace | None = None) -> bool:
    """True when ``args`` has ``--debug`` or the environment sets ``RECON_DEBUG`` (not "" or "0")."""
    return bool(getattr(args, "debug", False)) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


@contextmanager
def user_errors(*extra: type[BaseException], debug: bool = False) -> Iterator[None]:
    """The error model at the command line (see ``recon.errors``).

    - ``recon.errors.UserError`` (and ``extra``): ``error: <message>`` as one line, exit status 2;
    - an interrupt: ``error: interrupted (SIGINT|SIGTERM)``, exit status 130 / 143;
    - any other exception is a bug: its traceback, a line saying how to report it, exit status 1.

    ``debug`` (a command's ``--debug``) or ``RECON_DEBUG=1`` prints the traceback of the first two as well.
    """
    debug = debug or debug_requested()
    try:
        yield
    except KeyboardInterrupt as e:  # recon.signals.Interrupted carries its signal's status: 130 SIGINT, 143 SIGTERM
        if debug:
            traceback.print_exc()
        fail(str(e) or "interrupted", getattr(e, "exit_code", 130))
    except (UserError, *extra) as e:
        if debug:
            traceback.print_exc()
        fail(str(e))
    except Exception as e:
        traceback.print_exc()
        print_error(f"internal error ({type(e).__name__}): {BUG_REPORT}")
        raise SystemExit(1) from None


def require_source_tree(command: str, module: str) -> None:
    """Stop with a user error when ``module`` of the repository's ``tools/`` package (benchmarks, GPU
    check) is not importable: it ships with the source checkout, not with the installed wheel."""
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # no "tools" package at all (or another one without that module)
        found = False
    if not found:
        raise ExtensionUnavailable(f"{command} needs {module} from the repository's tools/ package, which an "
                                   "installed wheel does not include: run it from the root of a clone of the "
                                   "repository")


def make_progress(*fields: str, transient: bool = False) -> Progress | LineProgress:
    """A rich progress bar with extra text fields (``task.fields[name]``) on a terminal; elsewhere
    (a log file, a pipe) plain lines now and then (``recon.progress.LineProgress``, which computes
    its own it/s, so an ``it_s`` field is not repeated there)."""
    cols = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    cols += [TextColumn(f"{f}={{task.fields[{f}]}}") for f in fields]
    cols += [TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    return progress_bar(*cols, fields=tuple(f for f in fields if f != "it_s"), console=console, transient=transient)


@contextmanager
def counting_progress() -> Iterator[Callable[..., None]]:
    """A progress callback ``update(done, total, name="eval")`` whose bars appear only once work
    is under way (not before the inputs were checked; not in the middle of a training's own bar)."""
    bar, tasks = make_progress(), {}

    def update(done: int, total: int, name: str = "eval") -> None:
        if not tasks:
            bar.start()
        if name not in tasks:
            tasks[name] = bar.add_task(name, total=total)
        bar.update(tasks[name], completed=done, total=total)

    try:
        yield update
    finally:
        bar.stop()


def wide_print(renderable: Any) -> None:
    """Print a table on stdout: fitted to a terminal's width, but never cut (no ellipses) when the
    output goes to a file or a pipe."""
    if console.is_terminal:
        console.print(renderable)
    else:
        Console(width=10_000, highlight=False).print(renderable)


def _impls(t: "Trainer") -> str:
    """The implementations the training renders with: ``cpp``, or ``cpp (colour: cpp)`` for ``--colour``."""
    impl = getattr(t.renderer, "impl", "-")
    if not t.cfg.colour or not hasattr(t.renderer, "rgba_impl"):
        return impl
    return f"{impl} (colour: {t.renderer.rgba_impl})"


class TrainProgress:
    """``recon.training.TrainHooks`` for a console: rank 0 prints a header line, a progress bar
    (``loss``, ``iou_loss``, ``val_iou``, it/s) and the training's notes and warnings."""

    def __init__(self) -> None:
        self.bar: Progress | LineProgress | None = None

    def on_start(self, t: "Trainer") -> None:
        if not t.is_main:
            return
        n = t.model.num_parameters()
        colour = f" + {n['colour']:,} colour head" if "colour" in n else ""
        console.print(f"[bold]recon train[/] encoder={t.cfg.encoder} ({n['encoder']:,} + {n['decoder']:,} decoder"
                      f"{colour} = "
                      f"{n['total']:,} parameters) backend={t.cfg.backend} impl={_impls(t)} "
                      f"device={t.device} world={t.world} -> {escape(t.cfg.out)}")
        self.bar = make_progress("loss", "iou_loss", "val_iou", "it_s")
        self.task = self.bar.add_task("train", total=t.cfg.iterations, completed=t.step, loss="-", iou_loss="-",
                                      val_iou="-", it_s="-")
        self.last = (time.time(), t.step)
        self.trainer = t  # its cfg.iterations moves when a clock-steered budget re-plans (recon.budget)
        self.bar.start()

    def on_step(self, step: int, info: dict[str, float]) -> None:
        if self.bar is None:
            return
        fields = {k: f"{info[k]:.4f}" for k in ("loss", "iou_loss", "val_iou") if k in info}
        now, (t, s) = time.time(), self.last
        if now - t > 2:
            fields["it_s"] = f"{(step - s) / (now - t):.2f}"
            self.last = (now, step)
        self.bar.update(self.task, completed=step, total=self.trainer.cfg.iterations, **fields)

    def plan(self, step: int, validated: bool) -> None:
        """No re-planning (``recon.training.TrainHooks.plan``): a plain training keeps its steps."""
        return None

    def on_message(self, text: str, level: str = "") -> None:
        console.print((f"[yellow]{level}:[/] " if level else "") + escape(text), highlight=False, soft_wrap=True)

    def on_end(self, t: "Trainer", summary: dict[str, Any] | None) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
