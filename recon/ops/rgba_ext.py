"""Fused RGBA render kernels (C++/OpenMP, and CUDA): JIT build and autograd wrappers.

Sources: ``csrc/rgba/`` (they include the shared headers of ``csrc/common/``: the per-pair silhouette maths,
the SIMD helpers, the row bands and the CUDA launch helpers). Built by :mod:`recon.ops.jit` as
the modules ``recon_rgba_cpu`` / ``recon_rgba_cuda``; a missing toolchain or a failed build raises
:class:`~recon.render.base.BackendUnavailable` with the reason.

Same maths and pair rule as :mod:`recon.ops.rgba_soft_torch` and :mod:`recon.ops.rgba_dibr_torch`,
which the tests compare against. The kernels keep ``1 - alpha`` as a product (the references sum
logs), multiply by reciprocals where the references divide, and skip soft z-buffer pairs whose depth
factor is below ``exp(-40)`` next to their pixel's heaviest (``rgba_math.h``): equal to rounding.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import ModuleType

import torch
from torch.autograd.function import once_differentiable

from recon.ops import jit
from recon.ops.checks import kernel_inputs
from recon.ops.rgba_soft_torch import check_rgba_inputs
from recon.ops.unavailable import BackendUnavailable

__all__ = ["KINDS", "extension_name", "load_extension", "soft_rgba_ext", "dibr_rgba_ext"]

KINDS = ("cpp", "cuda")
_CSRC = Path(__file__).resolve().parent / "csrc" / "rgba"
_SHARED = Path(__file__).resolve().parent / "csrc" / "common"  # the headers the RGBA kernels build on


def extension_name(kind: str) -> str:
    """Python module name of the compiled RGBA extension for ``kind`` ("cpp" or "cuda")."""
    if kind not in KINDS:
        raise ValueError(f"unknown kernel kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    return "recon_rgba_cpu" if kind == "cpp" else "recon_rgba_cuda"


def _spec(kind: str) -> jit.JitSpec:
    name, label = extension_name(kind), f"rgba {kind} kernel"
    sources = (_CSRC / "bindings.cpp", _CSRC / "rgba_cpu.cpp")
    if kind == "cpp":
        return jit.JitSpec(name, label, sources, (_CSRC, _SHARED))
    # --fmad=false: no FMA contraction on the GPU either (parity with the reference)
    return jit.JitSpec(name, label, sources + (_CSRC / "rgba_cuda.cu",), (_CSRC, _SHARED),
                       cflags=jit.CPU_FLAGS + ("-DRECON_WITH_CUDA",),
                       cuda_flags=("-O3", "-DRECON_WITH_CUDA", "--fmad=false"), cuda=True)


def load_extension(kind: str = "cpp", verbose: bool = False) -> ModuleType:
    """Build (first call, a minute or two) or load the compiled RGBA kernels.

    Args:
        kind: "cpp" (CPU only) or "cuda" (CPU and CUDA).
        verbose: print the compiler commands.
    Returns:
        The extension module (``soft_forward``/``soft_backward``, ``dibr_forward``/``dibr_backward``).
    Raises:
        BackendUnavailable: no compiler / ninja / nvcc / CUDA, or the build failed.
    """
    return jit.load(replace(_spec(kind), unavailable=BackendUnavailable), verbose)


class _SoftRGBA(torch.autograd.Function):
    @staticmethod
    def forward(ctx, verts_ndc, faces, colours, module, image_size, sigma, cutoff_sq, gamma, near, far, eps,
                background):
        image, not_alpha, zmax, den = module.soft_forward(verts_ndc, faces, colours, image_size, sigma, cutoff_sq, gamma,
                                                        near, far, eps, background)
        ctx.save_for_backward(verts_ndc, faces, colours, image, not_alpha, zmax, den)
        ctx.module = module
        ctx.opts = (image_size, sigma, cutoff_sq, gamma, near, far, eps)
        return image

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_image):
        verts_ndc, faces, colours, image, not_alpha, zmax, den = ctx.saved_tensors
        grad_v = grad_c = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[2]:
            grad_v, grad_c = ctx.module.soft_backward(grad_image.contiguous(), image, verts_ndc, faces, colours,
                                                      not_alpha, zmax, den, *ctx.opts)
        return (grad_v if ctx.needs_input_grad[0] else None, None, grad_c if ctx.needs_input_grad[2] else None,
                *([None] * 9))


class _DibrRGBA(torch.autograd.Function):
    @staticmethod
    def forward(ctx, verts_ndc, faces, colours, module, image_size, sigma, cutoff_sq, background):
        image, not_alpha, nearest = module.dibr_forward(verts_ndc, faces, colours, image_size, sigma, cutoff_sq,
                                                      background)
        ctx.save_for_backward(verts_ndc, faces, colours, not_alpha, nearest)
        ctx.module = module
        ctx.opts = (image_size, sigma, cutoff_sq)
        ctx.mark_non_differentiable(nearest)
        return image

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_image):
        verts_ndc, faces, colours, not_alpha, nearest = ctx.saved_tensors
        grad_v = grad_c = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[2]:
            grad_v, grad_c = ctx.module.dibr_backward(grad_image.contiguous(), verts_ndc, faces, colours, not_alpha,
                                                      nearest, *ctx.opts)
        return (grad_v if ctx.needs_input_grad[0] else None, None, grad_c if ctx.needs_input_grad[2] else None,
                *([None] * 5))


def _prepare(verts_ndc: torch.Tensor, faces: torch.Tensor, colours: torch.Tensor, kind: str | None,
             background) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, ModuleType, list[float]]:
    check_rgba_inputs(verts_ndc, faces, colours)
    verts_ndc, faces, module = kernel_inputs(verts_ndc, faces, kind, load_extension)
    bg = [float(x) for x in torch.as_tensor(background, dtype=torch.float64).reshape(-1).tolist()]
    if len(bg) != colours.shape[-1]:
        raise ValueError(f"background must have {colours.shape[-1]} values (one per colour channel), got {len(bg)}")
    colours = colours.to(dtype=verts_ndc.dtype).contiguous()
    return verts_ndc, faces, colours, module, bg


def soft_rgba_ext(verts_ndc: torch.Tensor, faces: torch.Tensor, colours: torch.Tensor, image_size: int, sigma: float,
                  cutoff_sq: float, gamma: float = 1e-4, near: float = 1.0, far: float = 100.0, eps: float = 1e-3,
                  background=(0.0, 0.0, 0.0), kind: str | None = None) -> torch.Tensor:
    """SoftRas soft z-buffer with the fused kernel (same arguments and result as ``soft_rgba_torch``).

    Args:
        kind: "cpp" or "cuda"; default: "cuda" for CUDA tensors, else "cpp".
    Returns:
        (B, C + 1, S, S), differentiable w.r.t. ``verts_ndc`` and ``colours``.
    Raises:
        BackendUnavailable: the kernel cannot be built here.
    """
    verts_ndc, faces, colours, module, bg = _prepare(verts_ndc, faces, colours, kind, background)
    return _SoftRGBA.apply(verts_ndc, faces, colours, module, int(image_size), float(sigma), float(cutoff_sq),
                           float(gamma), float(near), float(far), float(eps), bg)


def dibr_rgba_ext(verts_ndc: torch.Tensor, faces: torch.Tensor, colours: torch.Tensor, image_size: int, sigma: float,
                  cutoff_sq: float, background=(0.0, 0.0, 0.0), kind: str | None = None) -> torch.Tensor:
    """DIB-R-style render with the fused kernel (same arguments and result as ``dibr_rgba_torch``).

    Args:
        kind: "cpp" or "cuda"; default: "cuda" for CUDA tensors, else "cpp".
    Returns:
        (B, C + 1, S, S), differentiable w.r.t. ``verts_ndc`` (x, y) and ``colours``.
    Raises:
        BackendUnavailable: the kernel cannot be built here.
    """
    verts_ndc, faces, colours, module, bg = _prepare(verts_ndc, faces, colours, kind, background)
    return _DibrRGBA.apply(verts_ndc, faces, colours, module, int(image_size), float(sigma), float(cutoff_sq), bg)
