"""Shared CLI plumbing: one-line errors with exit status 2, rich console, progress bars."""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

__all__ = ["console", "err_console", "fail", "print_error", "user_errors", "make_progress", "OneLineParser"]

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


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line ``error: ...`` (exit status 2) instead of a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        fail(f"{message} (see {self.prog} --help)")


@contextmanager
def user_errors(*extra: type[BaseException]) -> Iterator[None]:
    """Turn expected user-facing errors into one line + exit status 2 (no traceback)."""
    from recon.checkpoint import CheckpointError
    from recon.data.schema import DatasetFormatError
    from recon.render.base import BackendUnavailable

    try:
        yield
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except (DatasetFormatError, CheckpointError, BackendUnavailable, ValueError, FileNotFoundError,
            PermissionError, IsADirectoryError, NotADirectoryError, *extra) as e:
        fail(str(e))
    except OSError as e:  # the environment (a path under a file, a full disk, ...): still one line
        fail(f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e))


def make_progress(*fields: str, transient: bool = False) -> Progress:
    """A rich progress bar with extra text fields (``task.fields[name]``)."""
    cols = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    cols += [TextColumn(f"{f}={{task.fields[{f}]}}") for f in fields]
    cols += [TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    return Progress(*cols, console=console, transient=transient)
