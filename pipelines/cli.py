"""Shared CLI plumbing: one-line errors with exit status 2, rich console, progress bars."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

__all__ = ["console", "err_console", "fail", "user_errors", "make_progress"]

console = Console()
err_console = Console(stderr=True)


def fail(message: str, status: int = 2) -> None:
    """Print ``error: <message>`` as one line on stderr and exit."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(status)


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


def make_progress(*fields: str, transient: bool = False) -> Progress:
    """A rich progress bar with extra text fields (``task.fields[name]``)."""
    cols = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    cols += [TextColumn(f"{f}={{task.fields[{f}]}}") for f in fields]
    cols += [TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    return Progress(*cols, console=console, transient=transient)
