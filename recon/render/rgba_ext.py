"""Fused RGBA render kernels (C++/OpenMP, and CUDA): JIT build and autograd wrappers.

Sources: ``csrc/rgba/`` (they include ``csrc/softras/softras_math.h`` for the per-pair silhouette
maths). Built on first use into ``$RECON_EXT_DIR/<name>/<key>`` like the silhouette kernels
(:mod:`recon.render.softras_ext`), as the modules ``recon_rgba_cpu`` / ``recon_rgba_cuda``; ``<key>``
hashes both source folders, the flags and the torch version. A missing toolchain or a failed build
raises :class:`~recon.render.base.BackendUnavailable` with the reason.

Same maths and pair rule as :mod:`recon.render.softras_rgb_torch` and :mod:`recon.render.dibr_torch`,
which the tests compare against. The kernels keep ``1 - alpha`` as a product (the references sum
logs), multiply by reciprocals where the references divide, and skip soft z-buffer pairs whose depth
factor is below ``exp(-40)`` next to their pixel's heaviest (``rgba_math.h``): equal to rounding.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import torch
from torch.autograd.function import once_differentiable

from recon.render.base import BackendUnavailable
from recon.render.softras_ext import _missing_toolchain, build_dir
from recon.render.softras_rgb_torch import check_rgba_inputs

__all__ = ["KINDS", "extension_name", "load_extension", "soft_rgba_ext", "dibr_rgba_ext"]

KINDS = ("cpp", "cuda")
_CSRC = Path(__file__).resolve().parent / "csrc" / "rgba"
_SHARED = Path(__file__).resolve().parent / "csrc" / "softras"  # softras_math.h
_ERROR_TAIL = 3000
_CACHE: dict[str, ModuleType | BackendUnavailable] = {}


def extension_name(kind: str) -> str:
    """Python module name of the compiled RGBA extension for ``kind`` ("cpp" or "cuda")."""
    if kind not in KINDS:
        raise ValueError(f"unknown kernel kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    return "recon_rgba_cpu" if kind == "cpp" else "recon_rgba_cuda"


def _build_key(kind: str, flags: list[str]) -> str:
    h = hashlib.sha256()
    for part in (torch.__version__, sys.version, os.environ.get("CXX", ""), str(_CSRC), kind, *flags):
        h.update(part.encode() + b"\0")
    for f in sorted(_CSRC.iterdir()) + [_SHARED / "softras_math.h"]:
        if f.is_file():
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def _build(kind: str, verbose: bool) -> ModuleType:
    from torch.utils import cpp_extension

    name = extension_name(kind)
    sources = [_CSRC / "bindings.cpp", _CSRC / "rgba_cpu.cpp"]
    # No -march and no -ffast-math (parity with the reference); no FMA contraction either.
    cflags = ["-O3", "-fopenmp", "-ffp-contract=off"]
    cuda_flags: list[str] = []
    if kind == "cuda":
        sources.append(_CSRC / "rgba_cuda.cu")
        cflags.append("-DRECON_WITH_CUDA")
        cuda_flags = ["-O3", "-DRECON_WITH_CUDA", "--fmad=false"]
    return cpp_extension.load(
        name=name,
        sources=[str(s) for s in sources],
        extra_cflags=cflags,
        extra_cuda_cflags=cuda_flags,
        extra_ldflags=["-fopenmp"],
        extra_include_paths=[str(_CSRC), str(_SHARED)],
        build_directory=str(build_dir(name, _build_key(kind, cflags + cuda_flags))),
        with_cuda=kind == "cuda",
        verbose=verbose,
    )


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
    name = extension_name(kind)
    cached = _CACHE.get(kind)
    if isinstance(cached, BackendUnavailable):
        raise cached
    if cached is not None:
        return cached
    reason = _missing_toolchain(kind)
    if reason is not None:
        err = BackendUnavailable(f"rgba {kind} kernel unavailable: {reason}")
    else:
        try:
            _CACHE[kind] = _build(kind, verbose)
            return _CACHE[kind]
        except (RuntimeError, OSError, ImportError, subprocess.SubprocessError) as e:  # build or load failure
            tail = str(e)[-_ERROR_TAIL:]
            err = BackendUnavailable(f"rgba {kind} kernel unavailable: building {name} failed "
                                     f"(build dir from $RECON_EXT_DIR or ~/.cache/recon/torch_extensions):\n{tail}")
    _CACHE[kind] = err
    raise err


class _SoftRGBA(torch.autograd.Function):
    @staticmethod
    def forward(ctx, verts_ndc, faces, colors, module, image_size, sigma, cutoff_sq, gamma, near, far, eps,
                background):
        image, not_alpha, zmax, den = module.soft_forward(verts_ndc, faces, colors, image_size, sigma, cutoff_sq, gamma,
                                                        near, far, eps, background)
        ctx.save_for_backward(verts_ndc, faces, colors, image, not_alpha, zmax, den)
        ctx.module = module
        ctx.opts = (image_size, sigma, cutoff_sq, gamma, near, far, eps)
        return image

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_image):
        verts_ndc, faces, colors, image, not_alpha, zmax, den = ctx.saved_tensors
        grad_v = grad_c = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[2]:
            grad_v, grad_c = ctx.module.soft_backward(grad_image.contiguous(), image, verts_ndc, faces, colors,
                                                      not_alpha, zmax, den, *ctx.opts)
        return (grad_v if ctx.needs_input_grad[0] else None, None, grad_c if ctx.needs_input_grad[2] else None,
                *([None] * 9))


class _DibrRGBA(torch.autograd.Function):
    @staticmethod
    def forward(ctx, verts_ndc, faces, colors, module, image_size, sigma, cutoff_sq, background):
        image, not_alpha, nearest = module.dibr_forward(verts_ndc, faces, colors, image_size, sigma, cutoff_sq,
                                                      background)
        ctx.save_for_backward(verts_ndc, faces, colors, not_alpha, nearest)
        ctx.module = module
        ctx.opts = (image_size, sigma, cutoff_sq)
        ctx.mark_non_differentiable(nearest)
        return image

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_image):
        verts_ndc, faces, colors, not_alpha, nearest = ctx.saved_tensors
        grad_v = grad_c = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[2]:
            grad_v, grad_c = ctx.module.dibr_backward(grad_image.contiguous(), verts_ndc, faces, colors, not_alpha,
                                                      nearest, *ctx.opts)
        return (grad_v if ctx.needs_input_grad[0] else None, None, grad_c if ctx.needs_input_grad[2] else None,
                *([None] * 5))


def _prepare(verts_ndc: torch.Tensor, faces: torch.Tensor, colors: torch.Tensor, kind: str | None,
             background) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, ModuleType, list[float]]:
    check_rgba_inputs(verts_ndc, faces, colors)
    if verts_ndc.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"verts_ndc must be float32 or float64, got {verts_ndc.dtype}")
    kind = kind or ("cuda" if verts_ndc.is_cuda else "cpp")
    if kind == "cpp" and verts_ndc.is_cuda:
        raise ValueError("the cpp kernel runs on CPU tensors; use kind='cuda' for CUDA tensors")
    module = load_extension(kind)
    bg = [float(x) for x in torch.as_tensor(background, dtype=torch.float64).reshape(-1).tolist()]
    if len(bg) != colors.shape[-1]:
        raise ValueError(f"background must have {colors.shape[-1]} values (one per colour channel), got {len(bg)}")
    faces = faces.to(device=verts_ndc.device, dtype=torch.long).contiguous()
    colors = colors.to(dtype=verts_ndc.dtype).contiguous()
    return verts_ndc.contiguous(), faces, colors, module, bg


def soft_rgba_ext(verts_ndc: torch.Tensor, faces: torch.Tensor, colors: torch.Tensor, image_size: int, sigma: float,
                  cutoff_sq: float, gamma: float = 1e-4, near: float = 1.0, far: float = 100.0, eps: float = 1e-3,
                  background=(0.0, 0.0, 0.0), kind: str | None = None) -> torch.Tensor:
    """SoftRas soft z-buffer with the fused kernel (same arguments and result as ``soft_rgba_torch``).

    Args:
        kind: "cpp" or "cuda"; default: "cuda" for CUDA tensors, else "cpp".
    Returns:
        (B, C + 1, S, S), differentiable w.r.t. ``verts_ndc`` and ``colors``.
    Raises:
        BackendUnavailable: the kernel cannot be built here.
    """
    verts_ndc, faces, colors, module, bg = _prepare(verts_ndc, faces, colors, kind, background)
    return _SoftRGBA.apply(verts_ndc, faces, colors, module, int(image_size), float(sigma), float(cutoff_sq),
                           float(gamma), float(near), float(far), float(eps), bg)


def dibr_rgba_ext(verts_ndc: torch.Tensor, faces: torch.Tensor, colors: torch.Tensor, image_size: int, sigma: float,
                  cutoff_sq: float, background=(0.0, 0.0, 0.0), kind: str | None = None) -> torch.Tensor:
    """DIB-R-style render with the fused kernel (same arguments and result as ``dibr_rgba_torch``).

    Args:
        kind: "cpp" or "cuda"; default: "cuda" for CUDA tensors, else "cpp".
    Returns:
        (B, C + 1, S, S), differentiable w.r.t. ``verts_ndc`` (x, y) and ``colors``.
    Raises:
        BackendUnavailable: the kernel cannot be built here.
    """
    verts_ndc, faces, colors, module, bg = _prepare(verts_ndc, faces, colors, kind, background)
    return _DibrRGBA.apply(verts_ndc, faces, colors, module, int(image_size), float(sigma), float(cutoff_sq), bg)
