"""Atomic checkpoints: save (temp + fsync + rename), keep the last K, resume from the newest valid one.

Checkpoints hold only tensors and plain containers and are always read with
``torch.load(..., weights_only=True)``: loading never executes pickled code, and a file that
needs more than tensors and plain containers is refused with ``CheckpointError``.

A checkpoint is written to a temp file in the same directory, flushed to disk, then renamed
over the target, and the directory entry is flushed too: a crash (kill, power loss, full disk)
leaves either the old file or the new one, never half of one. A killed save leaves at most a
``.step-N.pt.*.tmp`` file, which ``remove_stale_temps`` deletes on resume.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from recon.mesh import atomic_path

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "step_checkpoints", "latest_valid_checkpoint",
           "resolve_checkpoint", "quarantine", "remove_stale_temps", "CKPT_DIR"]

CKPT_DIR = "checkpoints"
_STEP_RE = re.compile(r"^step-(\d+)\.pt$")
_TEMP_RE = re.compile(r"^\..+\.tmp$")


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or does not match what was asked for."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some filesystems do not let a directory be opened; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Serialise ``state`` to ``path`` atomically and durably (temp file + fsync + rename)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(path.parent)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with ``weights_only=True``. Raises CheckpointError naming the file on any failure
    (missing, a directory, truncated, not a torch file, or holding pickled objects other than
    tensors and plain containers)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if not path.is_file():
        raise CheckpointError(f"{path}: expected a checkpoint file, found a directory or special file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for corrupt/truncated/unsafe files
        first = (str(e).strip().splitlines() or [""])[0]
        raise CheckpointError(f"{path}: not a valid recon checkpoint ({type(e).__name__}: {first})") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict) \
            or not isinstance(state.get("config"), dict):
        raise CheckpointError(f"{path}: not a recon checkpoint (expected a dict with 'model' and 'config' dicts)")
    if not isinstance(state.get("step", 0), int):
        raise CheckpointError(f"{path}: not a recon checkpoint ('step' is {type(state.get('step')).__name__}, "
                              f"expected int)")
    return state


def step_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``[(step, path)]`` of ``RUN/checkpoints/step-*.pt``, newest first."""
    d = Path(run_dir) / CKPT_DIR
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _STEP_RE.match(p.name))]
    return sorted(found, reverse=True)


def latest_valid_checkpoint(run_dir: str | os.PathLike, map_location: str | torch.device = "cpu",
                            skipped: list[tuple[Path, str]] | None = None) -> tuple[Path, dict[str, Any]] | None:
    """Newest step checkpoint that loads; corrupt ones are skipped with a warning.

    Args:
        skipped: if given, ``(path, reason)`` of every skipped checkpoint is appended to it.
    """
    for _, path in step_checkpoints(run_dir):
        try:
            return path, load_checkpoint(path, map_location)
        except CheckpointError as e:
            warnings.warn(f"skipping corrupt checkpoint: {e}", stacklevel=2)
            if skipped is not None:
                skipped.append((path, str(e)))
    return None


def quarantine(path: str | os.PathLike) -> Path:
    """Rename a corrupt checkpoint to ``<name>.corrupt`` (kept for inspection, never picked again,
    never deleted by the keep-last-K rotation). Returns the new path."""
    path = Path(path)
    target = path.with_name(path.name + ".corrupt")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt{n}")
        n += 1
    os.replace(path, target)
    return target


def remove_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Delete ``.<name>.*.tmp`` files left in ``directory`` by a save that was killed midway
    (they are never complete: the rename that would have published them did not happen)."""
    d = Path(directory)
    removed = []
    if d.is_dir():
        for p in d.iterdir():
            if _TEMP_RE.match(p.name) and p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def resolve_checkpoint(spec: str | os.PathLike, prefer: str = "best") -> Path:
    """A checkpoint file from a file path or a run directory (``best.pt``, else newest step)."""
    p = Path(spec)
    if p.is_file():
        return p
    if p.is_dir():
        for name in (f"{prefer}.pt", "best.pt", "last.pt"):
            if (p / name).is_file():
                return p / name
        steps = step_checkpoints(p)
        if steps:
            return steps[0][1]
        raise CheckpointError(f"{p}: run directory has no checkpoint (best.pt, last.pt or checkpoints/step-*.pt)")
    raise CheckpointError(f"{p}: no such checkpoint file or run directory")
