"""Atomic checkpoints: save (temp + rename), keep the last K, resume from the newest valid one.

Checkpoints hold only tensors and plain containers and are always read with
``torch.load(..., weights_only=True)``: loading never executes pickled code.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from recon.mesh import atomic_write_bytes

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "step_checkpoints", "latest_valid_checkpoint",
           "resolve_checkpoint", "CKPT_DIR"]

CKPT_DIR = "checkpoints"
_STEP_RE = re.compile(r"^step-(\d+)\.pt$")


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or does not match what was asked for."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Serialise ``state`` to ``path`` atomically (temp file + rename)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with ``weights_only=True``. Raises CheckpointError naming the file on any failure."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for corrupt/truncated/unsafe files
        raise CheckpointError(f"{path}: not a valid recon checkpoint ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"{path}: not a recon checkpoint (expected keys 'model' and 'config')")
    return state


def step_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``[(step, path)]`` of ``RUN/checkpoints/step-*.pt``, newest first."""
    d = Path(run_dir) / CKPT_DIR
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _STEP_RE.match(p.name))]
    return sorted(found, reverse=True)


def latest_valid_checkpoint(run_dir: str | os.PathLike, map_location: str | torch.device = "cpu"
                            ) -> tuple[Path, dict[str, Any]] | None:
    """Newest step checkpoint that loads; corrupt ones are skipped with a warning."""
    for _, path in step_checkpoints(run_dir):
        try:
            return path, load_checkpoint(path, map_location)
        except CheckpointError as e:
            warnings.warn(f"skipping corrupt checkpoint: {e}", stacklevel=2)
    return None


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
