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
from types import ModuleType
from typing import Callable

import torch

__all__ = ["DEBUG_ENV", "debug_checks", "check_mesh_shapes", "check_face_indices", "FacesSeen", "kernel_inputs"]

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


def check_mesh_shapes(verts: torch.Tensor, faces: torch.Tensor, name: str = "verts_ndc") -> None:
    """One-line ``ValueError`` unless ``verts`` is (B, V, 3) and ``faces`` (F, 3) (no value is read)."""
    if verts.dim() != 3 or verts.shape[-1] != 3:
        raise ValueError(f"{name} must be (B, V, 3), got {tuple(verts.shape)}")
    if faces.dim() != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be (F, 3), got {tuple(faces.shape)}")


def kernel_inputs(verts_ndc: torch.Tensor, faces: torch.Tensor, kind: str | None, load: Callable[[str], ModuleType],
                  cpu_kinds: tuple[str, ...] = ("cpp",)) -> tuple[torch.Tensor, torch.Tensor, ModuleType]:
    """The checks and conversions every fused-kernel wrapper does before calling its extension.

    Args:
        verts_ndc: (B, V, 3) float32/float64; faces: (F, 3) integer vertex indices.
        kind: the extension kind; default "cuda" for CUDA tensors, else "cpp".
        load: kind -> the compiled module (the family's ``load_extension``).
        cpu_kinds: the kinds that run on CPU tensors only.
    Returns:
        contiguous ``verts_ndc``, ``faces`` as contiguous int64 on its device, and the module.
    Raises:
        ValueError: misshapen inputs, another dtype, a CPU kernel asked for CUDA tensors; face
            indices outside ``[0, V)`` with ``RECON_DEBUG_CHECKS=1``.
        BackendUnavailable: the kernel cannot be built here.
    """
    check_mesh_shapes(verts_ndc, faces)
    if verts_ndc.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"verts_ndc must be float32 or float64, got {verts_ndc.dtype}")
    if debug_checks():  # a host sync: off the hot path unless RECON_DEBUG_CHECKS=1
        check_face_indices(faces, verts_ndc.shape[1])
    kind = kind or ("cuda" if verts_ndc.is_cuda else "cpp")
    if kind in cpu_kinds and verts_ndc.is_cuda:
        raise ValueError(f"the {kind} kernel runs on CPU tensors; use kind='cuda' for CUDA tensors")
    module = load(kind)
    return verts_ndc.contiguous(), faces.to(device=verts_ndc.device, dtype=torch.long).contiguous(), module


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
