"""Atomic file output: every file recon writes goes to a temp file beside its target, then is
renamed over it, so a reader (or a crash) never sees half a file.

A target that exists and is not a regular file (a directory, a device such as ``/dev/null``, a
FIFO, a socket) is refused with ``OutputPathError`` naming it: the rename would replace it.
A symlink to a regular file is written through: its target gets the new content and the link
stays (a dangling link is replaced by the file).
"""

from __future__ import annotations

import json
import math
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from recon.errors import UserError

__all__ = ["OutputPathError", "OutputWriteError", "check_output_file", "check_writable_file", "check_output_dir",
           "atomic_path", "atomic_write_bytes", "NON_FINITE_NOTE", "json_text", "write_json"]

# key added to a top-level JSON object some of whose values were NaN/inf: {dotted path: "nan" | "inf" | "-inf"}
NON_FINITE_NOTE = "non_finite"


class OutputPathError(UserError, ValueError):
    """An output path that must not be written (a special file, a directory where a file is expected)."""


class OutputWriteError(UserError, OSError):
    """Writing an output failed (a full disk, a read-only or vanished directory): ``errno``,
    ``strerror`` and ``filename`` as the ``OSError`` behind it; the message names the file."""

    def __str__(self) -> str:
        return f"{self.filename}: cannot write ({self.strerror})" if self.filename and self.strerror else \
            super().__str__()


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def check_output_file(path: str | os.PathLike, flag: str = "") -> Path:
    """Raise ``OutputPathError`` unless ``path`` is absent or a regular file (a symlink is judged by
    its target). ``flag`` (e.g. ``"--json"``) prefixes the message. Returns ``Path(path)``."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return path  # absent (or a dangling symlink): writing creates it
    if not stat.S_ISREG(mode):
        prefix = f"{flag} " if flag else ""
        raise OutputPathError(f"{prefix}{path}: exists and is {_kind(mode)}, expected a regular file; "
                              f"refusing to replace it")
    return path


def check_writable_file(path: str | os.PathLike, flag: str = "") -> Path:
    """``check_output_file`` and ``check_output_dir`` of its directory, the messages naming ``path``:
    call it before long work whose result goes to ``path``. Creates nothing."""
    path = check_output_file(path, flag)
    prefix = f"{flag} " if flag else ""
    if path.parent.exists() and not path.parent.is_dir():
        raise OutputPathError(f"{prefix}{path}: {path.parent} is not a directory")
    try:
        check_output_dir(path.parent)
    except OutputPathError as e:
        raise OutputPathError(f"{prefix}{path}: {str(e).split(': ', 1)[1]}") from None
    return path


def check_output_dir(path: str | os.PathLike, flag: str = "") -> Path:
    """Raise ``OutputPathError`` if ``path`` exists and is not a directory, or if files cannot be
    created in it (or, while it does not exist, in its nearest existing ancestor): call it before
    long work, so nothing is computed for outputs that cannot be written. Creates nothing."""
    path = Path(path)
    prefix = f"{flag} " if flag else ""
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{prefix}{path}: exists and is not a directory")
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputPathError(f"{prefix}{path}: {parent} is not a directory")
    try:  # a real probe: permissions, read-only mounts and root all answer the same way
        fd, probe = tempfile.mkstemp(prefix=".recon-write-test.", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputPathError(f"{prefix}{path}: cannot write in {parent} ({e.strerror or e})") from None
    return path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it gets normal permissions (umask) and is
    renamed onto ``path``, on any error it is removed. Readers never see a half-written file.

    Raises:
        OutputPathError: ``path`` exists and is not a regular file (checked before and after writing).
        OutputWriteError: an ``OSError`` while creating or writing the file (the disk is full, the
            folder is read-only or gone), with its ``errno``.
    """
    path = check_output_file(path)
    if path.is_symlink() and path.is_file():  # write through the link to its (regular) target
        path = Path(os.path.realpath(path))
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600
        check_output_file(path)  # something may have appeared there while we wrote
        os.replace(tmp, path)
    except OSError as e:
        if isinstance(e, UserError):
            raise
        raise OutputWriteError(e.errno, e.strerror or str(e), str(path)) from e
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file + rename (never a half-written file)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _plain(obj: Any, where: str, found: dict[str, str]) -> Any:
    """``obj`` with numpy/torch scalars as Python numbers and every non-finite float as None, its
    dotted path recorded in ``found`` (``"nan"``, ``"inf"`` or ``"-inf"``)."""
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        found[where or "."] = "nan" if obj != obj else ("inf" if obj > 0 else "-inf")
        return None
    if isinstance(obj, dict):
        return {k: _plain(v, f"{where}.{k}" if where else str(k), found) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, f"{where}[{i}]", found) for i, v in enumerate(obj)]
    item = getattr(obj, "item", None)  # numpy scalars, one-element tensors
    if callable(item):
        try:
            return _plain(item(), where, found)
        except (ValueError, RuntimeError):  # an array of several values: not a JSON number
            pass
    return _plain(float(obj), where, found)  # TypeError for anything else, as json.dumps would


def json_text(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON (RFC 8259: no ``NaN``/``Infinity``, which ``JSON.parse`` and other strict readers
    reject) for ``obj``: numpy/torch scalars become numbers, a non-finite float becomes ``null``, and a
    top-level object with such values gets a note ``"non_finite": {"dotted.path": "nan" | "inf" | "-inf"}``
    saying which values were not numbers. No trailing newline; ``indent=None`` gives one line."""
    found: dict[str, str] = {}
    plain = _plain(obj, "", found)
    if found and isinstance(plain, dict):
        plain[NON_FINITE_NOTE] = {**(plain.get(NON_FINITE_NOTE) or {}), **found}
    return json.dumps(plain, indent=indent, allow_nan=False)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """``obj`` as indented strict JSON (``json_text``), written atomically."""
    atomic_write_bytes(path, (json_text(obj) + "\n").encode())
