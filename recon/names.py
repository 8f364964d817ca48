"""Names read from input files (category names and keys, object ids, mesh file names) are data:
what a dataset may call things, and how such a name becomes part of a file name or a one-line message.

Two layers, both needed:

* ``name_problem`` / ``object_id_problem``: why a name is refused by ``recon.data.schema.validate``
  (and so by ``convert validate`` and the start of every command): a path separator, ``.``/``..``,
  control characters (NUL, newline, escape sequences), empty, or too long.
* ``safe_component``: what every writer puts into a path instead of the raw name, whatever the
  validator let through (files of older versions, library callers): ASCII letters, digits, ``-``,
  ``_`` and inner ``.`` kept, anything else ``_``, at most ``max_chars``, and when the name had to be
  changed, a short hash of the original so that two names never share a file.

Console output is the third place a name goes: the CLI escapes names (``rich.markup.escape``) or
passes them as ``rich.text.Text``, so ``[bold]x`` is shown as written.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["MAX_NAME_CHARS", "MAX_OBJECT_ID_CHARS", "name_problem", "object_id_problem", "safe_component", "shown"]

MAX_NAME_CHARS = 100  # category names and keys: longer is a mistake, and unreadable in every table
MAX_OBJECT_ID_CHARS = 1024  # object ids (a mesh's relative path, a ShapeNet hash): a sanity bound
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


# Unicode control characters (category Cc: C0, DEL, C1), lone surrogates (Cs) and the line/paragraph separators
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]")


def _control(name: str) -> str | None:
    """The first control character (NUL, newline, ESC, C1, a lone surrogate) of ``name`` as ``U+XXXX``, or None."""
    m = _CONTROL.search(name)
    return f"U+{ord(m.group()):04X}" if m else None


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a category (its HDF5 group key or its ``name`` attribute), or None.

    Refused: empty, longer than ``MAX_NAME_CHARS``, a control character (NUL, newline, ESC ...),
    ``/`` or ``\\`` (a path), ``.`` or ``..``. Anything else (spaces, brackets, unicode) is allowed:
    writers and the console treat it as data."""
    if not name:
        return "is empty"
    if len(name) > MAX_NAME_CHARS:
        return f"is {len(name)} characters long (at most {MAX_NAME_CHARS})"
    bad = _control(name)
    if bad:
        return f"contains the control character {bad}"
    if "/" in name or "\\" in name:
        return "contains a path separator ('/' or '\\')"
    if name in (".", ".."):
        return "is a relative path component"
    return None


def object_id_problem(object_id: str) -> str | None:
    """Why ``object_id`` cannot be an object id, or None: longer than ``MAX_OBJECT_ID_CHARS`` or a
    control character. (``/`` is allowed: ``convert meshes`` stores a mesh's path below its category
    folder; it never reaches a path unsanitised.)"""
    if len(object_id) > MAX_OBJECT_ID_CHARS:
        return f"is {len(object_id)} characters long (at most {MAX_OBJECT_ID_CHARS})"
    bad = _control(object_id)
    return f"contains the control character {bad}" if bad else None


def safe_component(name: str, max_chars: int = 64) -> str:
    """A file-name component for ``name`` that stays in its folder on every OS.

    Keeps ASCII letters, digits, ``_``, and ``-`` and ``.`` when not first; replaces anything else
    by ``_`` and cuts at ``max_chars``; a name changed on the way (or empty) gets ``-`` and 8 hex
    digits of its SHA-1, so distinct names stay distinct files. ``chair`` stays ``chair``; ``../x`` becomes
    ``_._x-<8 hex>``: never a path, never hidden, never ``.``/``..``."""
    kept = "".join(ch if ch in _SAFE else "_" for ch in name) or "_"
    if kept.startswith((".", "-")):  # no hidden file, nothing a command line takes for an option
        kept = "_" + kept[1:]
    if kept == name and 0 < len(kept) <= max_chars:
        return kept
    digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{kept[:max(max_chars - 9, 1)]}-{digest}"


def shown(name: str, limit: int = 60) -> str:
    """``name`` for a one-line message: quoted, control characters escaped (``repr``), cut at ``limit``."""
    cut = name if len(name) <= limit else name[:limit] + "..."
    return repr(cut)
