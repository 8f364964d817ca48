"""Input checks that read tensor values back to the host, kept out of the kernels' hot path.

A face index outside ``[0, V)`` would make the fused kernels read out of bounds. Checking it means
reading ``faces.min()/max()`` back to the CPU, a device sync on CUDA, so it is done where a mesh
enters rather than on every forward and backward:

* ``recon.mesh.load_obj`` (the template and every user .obj) checks its faces once;
* every ``Renderer`` checks a faces tensor the first time it sees it (``FacesSeen``), and again
  only when that tensor is modified in place or another one comes;
* the torch references (``recon.ops.silhouette_torch``, ``recon.ops.rgba_soft_torch``) always check;
* the extension wrappers check on every call only with ``RECON_DEBUG_CHECKS=1`` (``debug_checks``).
"""

from __future__ import annotations

import os
import weakref

import torch

__all__ = ["DEBUG_ENV", "debug_checks", "check_face_indices", "FacesSeen"]

DEBUG_ENV = "RECON_DEBUG_CHECKS"


def debug_checks() -> bool:
    """True when ``RECON_DEBUG_CHECKS=1``: the kernels' wrappers then check face indices on every call."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def check_face_indices(faces: torch.Tensor, num_verts: int) -> None:
    """One-line ``ValueError`` when an index of ``faces`` (F, 3) is outside ``[0, num_verts)``.

    Reads the minimum and maximum back to the host (a device sync on CUDA): call it where a mesh
    enters, not per step.
    """
    if faces.numel() == 0:
        return
    lo, hi = (int(x) for x in torch.aminmax(faces.detach()))
    if lo < 0 or hi >= num_verts:
        raise ValueError(f"faces: face indices must be in [0, {num_verts}) (the vertex count), got [{lo}, {hi}]")


class FacesSeen:
    """Remembers the last faces tensor that passed :func:`check_face_indices` for a vertex count, so
    that a renderer called every step with the same (unmodified) faces checks them once."""

    def __init__(self) -> None:
        self._ref: weakref.ReferenceType | None = None
        self._key: tuple[int, int] | None = None

    def check(self, faces: torch.Tensor, num_verts: int) -> None:
        """:func:`check_face_indices` unless this very tensor, unmodified, passed it for ``num_verts``."""
        key = (faces._version, int(num_verts))
        if self._ref is not None and self._ref() is faces and self._key == key:
            return
        check_face_indices(faces, num_verts)
        self._ref, self._key = weakref.ref(faces), key
