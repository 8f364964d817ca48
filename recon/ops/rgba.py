"""The RGBA ops: colour renders behind one call each, with a choice of implementation.

    soft_rgba(verts_ndc, faces, colours, settings, impl)   SoftRas soft z-buffer + soft silhouette
    dibr_rgba(verts_ndc, faces, colours, settings, impl)   DIB-R-style hard interpolation + soft alpha

``impl``: "torch" (the references, any device), "cpp" (CPU kernel), "cuda" (CUDA kernel) or "auto":
the kernel for the input's device, falling back to torch (logged once, with the reason) when it
cannot be built. One kernel family, declared once: the torch references
(:mod:`recon.ops.rgba_soft_torch`, :mod:`recon.ops.rgba_dibr_torch`), the extension
(:mod:`recon.ops.rgba_ext`, sources in ``csrc/rgba/`` + ``csrc/common/``) and ``CHOICE``, the one
implementation choice of both ops (the ``dibr`` renderer and the ``softras`` renderer's colour use it).
"""

from __future__ import annotations

import torch

from recon.ops.impl import CHOICES, IMPLS, ImplChoice
from recon.ops.rgba_dibr_torch import dibr_rgba_torch
from recon.ops.rgba_ext import dibr_rgba_ext, load_extension, soft_rgba_ext
from recon.ops.rgba_soft_torch import soft_rgba_torch
from recon.ops.settings import RasterSettings

__all__ = ["IMPLS", "CHOICES", "CHOICE", "available_impls", "dibr_rgba", "resolve_impl", "soft_rgba"]

CHOICE = ImplChoice("rgba", load_extension)


def available_impls(device: torch.device | str = "cpu") -> dict[str, str | None]:
    """``{impl: None}`` for each RGBA implementation that can run on ``device``, else the reason
    (builds the kernels on first use)."""
    return CHOICE.available(device)


def resolve_impl(requested: str, device: torch.device) -> str:
    """The implementation that runs tensors on ``device`` for ``requested`` ("auto" or an impl).

    Raises:
        ValueError: unknown impl, or a kernel asked for tensors of another device.
    """
    return CHOICE.resolve(requested, device)


def soft_rgba(verts_ndc: torch.Tensor, faces: torch.Tensor, colours: torch.Tensor, settings: RasterSettings,
              impl: str = "auto") -> torch.Tensor:
    """SoftRas soft z-buffer of projected meshes (options from ``settings``).

    Args:
        verts_ndc: (B, V, 3) NDC x, y and camera depth z.
        faces: (F, 3) int64.
        colours: (B, V, C) per-vertex colours.
        settings: image size, sigma, cutoff, gamma, near, far, background_eps, background (C values).
        impl: "auto", "torch", "cpp" or "cuda".
    Returns:
        (B, C + 1, S, S) colour then alpha.
    """
    s = settings
    opts = dict(gamma=s.gamma, near=s.near, far=s.far, eps=s.background_eps, background=s.background)
    which = resolve_impl(impl, verts_ndc.device)
    if which == "torch":
        return soft_rgba_torch(verts_ndc, faces, colours, s.image_size, s.sigma, s.cutoff_sq, **opts)
    return soft_rgba_ext(verts_ndc, faces, colours, s.image_size, s.sigma, s.cutoff_sq, kind=which, **opts)


def dibr_rgba(verts_ndc: torch.Tensor, faces: torch.Tensor, colours: torch.Tensor, settings: RasterSettings,
              impl: str = "auto") -> torch.Tensor:
    """DIB-R-style render of projected meshes (image size, sigma, cutoff, background from ``settings``);
    arguments and result as :func:`soft_rgba`."""
    s = settings
    which = resolve_impl(impl, verts_ndc.device)
    if which == "torch":
        return dibr_rgba_torch(verts_ndc, faces, colours, s.image_size, s.sigma, s.cutoff_sq, s.background)
    return dibr_rgba_ext(verts_ndc, faces, colours, s.image_size, s.sigma, s.cutoff_sq, s.background, kind=which)
