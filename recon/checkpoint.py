"""The checkpoint file format: save (temp + fsync + rename) and safe load. The run directory that
holds checkpoints (rotation, last/best, resume) is ``recon.runs``.

Checkpoints hold only tensors and plain containers and are always read with
``torch.load(..., weights_only=True)``: loading never executes pickled code, and a file that
needs more than tensors and plain containers is refused with ``CheckpointError``.

A checkpoint is written to a temp file in the same directory, flushed to disk, then renamed
over the target, and the directory entry is flushed too: a crash (kill, power loss, full disk)
leaves either the old file or the new one, never half of one. A killed save leaves at most a
``.step-N.pt.*.tmp`` file, which ``recon.runs.remove_stale_temps`` deletes on resume. A save that
fails (disk full, read-only) raises ``OSError`` naming the file, with the old file untouched.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import torch

from recon.errors import InputError
from recon.io import OutputWriteError, atomic_path

__all__ = ["CHECKPOINT_VERSION", "CheckpointError", "save_checkpoint", "load_checkpoint"]

CHECKPOINT_VERSION = 1


class CheckpointError(InputError):
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
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
    except RuntimeError as e:  # torch's writer reports a failed write (ENOSPC, EFBIG) as "unexpected pos"
        cause = _os_error(e)
        code = cause.errno if cause is not None and cause.errno else errno.EIO
        raise OutputWriteError(code, os.strerror(code), str(path)) from None
    _fsync_dir(path.parent)


def _os_error(e: BaseException) -> OSError | None:
    """The OSError behind ``e`` (its cause/context chain), if any."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def _load_failure(e: Exception) -> str:
    """One line saying why torch.load refused a file, without torch's advice to load it unsafely."""
    lines = [x.strip() for x in str(e).strip().splitlines() if x.strip()]
    if lines and lines[0].startswith("Weights only load failed"):
        what = next((x for x in lines[1:] if "GLOBAL" in x or "global" in x), "")
        return ("it holds pickled objects other than tensors and plain containers, refused unexecuted"
                + (f": {what.rstrip('.')}" if what else ""))
    return f"{type(e).__name__}: {lines[0] if lines else ''}"


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with ``weights_only=True``. Raises CheckpointError naming the file on any failure
    (missing, a directory, truncated, not a torch file, holding pickled objects other than
    tensors and plain containers, or model weights with NaN/infinite values)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if not path.is_file():
        raise CheckpointError(f"{path}: expected a checkpoint file, found a directory or special file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for corrupt/truncated/unsafe files
        raise CheckpointError(f"{path}: not a valid recon checkpoint ({_load_failure(e)})") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict) \
            or not isinstance(state.get("config"), dict):
        raise CheckpointError(f"{path}: not a recon checkpoint (expected a dict with 'model' and 'config' dicts)")
    if not isinstance(state.get("step", 0), int):
        raise CheckpointError(f"{path}: not a recon checkpoint ('step' is {type(state.get('step')).__name__}, "
                              f"expected int)")
    bad = _non_finite(state["model"])
    if bad:
        raise CheckpointError(f"{path}: weights are not finite ({bad}): the training that wrote it diverged; use an "
                              f"earlier checkpoint")
    return state


def _non_finite(weights: dict[str, Any]) -> str:
    """``"decoder.fc.weight has 12 of 4096 values NaN or infinite"`` for the first floating tensor of
    ``weights`` with such values (and how many other tensors have some), or ``""`` when all are finite."""
    bad = [(k, v) for k, v in weights.items()
           if isinstance(v, torch.Tensor) and (v.is_floating_point() or v.is_complex()) and not torch.isfinite(v).all()]
    if not bad:
        return ""
    name, t = bad[0]
    more = f", and {len(bad) - 1} other tensor(s) have some" if len(bad) > 1 else ""
    return f"{name} has {int((~torch.isfinite(t)).sum())} of {t.numel()} values NaN or infinite{more}"

