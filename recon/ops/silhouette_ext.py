"""Fused soft rasterizer kernels (C++/OpenMP and CUDA): JIT build and autograd wrapper.

The sources live in ``csrc/silhouette/`` (+ the shared headers of ``csrc/common/``); :mod:`recon.ops.jit` compiles them on first use (build
folder, cache key, toolchain checks) and turns a missing toolchain or a failed build into
:class:`~recon.render.base.BackendUnavailable` with the reason (and the compiler's error tail).

Same math and pair rule as :mod:`recon.ops.silhouette_torch`, which the tests compare against
(at ``PARITY_FWD_ATOL`` / ``PARITY_GRAD_RTOL``; ``pipelines.gpucheck`` uses the same numbers).

The CUDA kernel bins faces into screen tiles by their cutoff windows (:func:`bin_faces`, the same
C++ code on both devices, so the CPU tests check the bins) and has two backward modes:
``deterministic=True`` (no float atomics, fixed reduction order: bitwise reproducible) and the
atomic one. The default follows ``torch.are_deterministic_algorithms_enabled()``. The CPU kernel is
always deterministic.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import ModuleType

import torch
from torch.autograd.function import once_differentiable

from recon.ops import jit
from recon.ops.checks import kernel_inputs
from recon.ops.unavailable import BackendUnavailable

__all__ = ["KINDS", "EMULATION", "PARITY_FWD_ATOL", "PARITY_GRAD_RTOL", "extension_name", "load_extension",
           "bin_faces", "soft_silhouette_ext"]

KINDS = ("cpp", "cuda")
# What every kernel must match the torch reference to: max |silhouette difference| per dtype, and
# |grad - grad_ref| / |grad_ref| (2-norms) of a random projection of the silhouettes.
PARITY_FWD_ATOL = {torch.float32: 1e-4, torch.float64: 1e-5}
PARITY_GRAD_RTOL = 1e-3
_CSRC = Path(__file__).resolve().parent / "csrc" / "silhouette"
_COMMON = Path(__file__).resolve().parent / "csrc" / "common"  # maths, SIMD and launch headers shared with rgba

# Test-only kind: the CUDA kernels compiled as C++ and run on CPU threads (csrc/common/cuda_emulation.h).
EMULATION = "cuda-emu"
_CPU_KINDS = ("cpp", EMULATION)
_NAMES = {"cpp": "recon_softras_cpu", "cuda": "recon_softras_cuda", EMULATION: "recon_softras_cuda_emu"}


def extension_name(kind: str) -> str:
    """Python module name of the compiled extension for ``kind`` ("cpp", "cuda", or the test-only
    ``EMULATION``)."""
    if kind not in _NAMES:
        raise ValueError(f"unknown kernel kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    return _NAMES[kind]


def _spec(kind: str) -> jit.JitSpec:
    name, label = extension_name(kind), f"softras {kind} kernel"
    if kind == EMULATION:
        # Needs C++20 (std::barrier, std::atomic_ref); the CUDA sources are #included as C++.
        return jit.JitSpec(name, label, (_CSRC / "softras_cuda_emu.cpp", _CSRC / "softras_bins.cpp"), (_CSRC, _COMMON),
                           cflags=("-O2", "-std=c++20", "-DRECON_WITH_CUDA", "-DRECON_CUDA_EMULATION"),
                           ldflags=("-pthread",))
    sources = (_CSRC / "bindings.cpp", _CSRC / "softras_cpu.cpp", _CSRC / "softras_bins.cpp")
    if kind == "cpp":
        return jit.JitSpec(name, label, sources, (_CSRC, _COMMON))
    return jit.JitSpec(name, label, sources + (_CSRC / "softras_cuda.cu",), (_CSRC, _COMMON),
                       cflags=jit.CPU_FLAGS + ("-DRECON_WITH_CUDA",), cuda_flags=("-O3", "-DRECON_WITH_CUDA"),
                       cuda=True)


def load_extension(kind: str = "cpp", verbose: bool = False) -> ModuleType:
    """Build (first call, can take a minute) or load the compiled kernels.

    Args:
        kind: "cpp" (CPU/OpenMP only) or "cuda" (CPU and CUDA); ``EMULATION`` ("cuda-emu", tests
            only) builds the CUDA kernels as C++ that runs them on CPU threads, for CPU tensors.
        verbose: print the compiler commands.
    Returns:
        The extension module with ``forward`` and ``backward``.
    Raises:
        BackendUnavailable: no compiler / ninja / nvcc / CUDA, or the build failed.
    """
    return jit.load(replace(_spec(kind), unavailable=BackendUnavailable), verbose)


class _SoftSilhouette(torch.autograd.Function):
    @staticmethod
    def forward(ctx, verts_ndc: torch.Tensor, faces: torch.Tensor, module: ModuleType, image_size: int,
                sigma: float, cutoff_sq: float, deterministic: bool) -> torch.Tensor:
        sil, log_sum, *bins = module.forward(verts_ndc, faces, image_size, sigma, cutoff_sq)
        ctx.save_for_backward(verts_ndc, faces, log_sum, *bins)  # bins: CUDA only (softras_tiles.h)
        ctx.module, ctx.image_size, ctx.sigma, ctx.cutoff_sq = module, image_size, sigma, cutoff_sq
        ctx.deterministic = deterministic
        return sil

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_sil: torch.Tensor):
        verts_ndc, faces, log_sum, *bins = ctx.saved_tensors
        grad = None
        if ctx.needs_input_grad[0]:
            grad = ctx.module.backward(grad_sil.contiguous(), verts_ndc, faces, log_sum, ctx.image_size, ctx.sigma,
                                       ctx.cutoff_sq, ctx.deterministic, bins)
        return grad, None, None, None, None, None, None


def bin_faces(verts_ndc: torch.Tensor, faces: torch.Tensor, image_size: int, cutoff_sq: float,
              tile: int | None = None, kind: str | None = None) -> dict[str, torch.Tensor]:
    """The screen-tile face bins the CUDA kernel works from (same C++ code on CPU and CUDA).

    Args:
        verts_ndc: (B, V, 3) NDC x, y and camera depth z.
        faces: (F, 3) vertex indices.
        image_size: S.
        cutoff_sq: squared cutoff distance (``RasterSettings.cutoff_sq``).
        tile: tile side in pixels (default: the CUDA kernel's, ``module.cuda_tile``).
        kind: extension to use, as in :func:`soft_silhouette_ext`.
    Returns:
        ``windows`` (B, F, 4) int32 ``c0, c1, r0, r1``; ``tile_offsets`` (B * T + 1) int64 with
        ``T = ceil(S / tile)^2`` row-major tiles per image; ``tile_faces`` (P,) int32 (each tile's
        faces ascending); ``face_pair_offsets`` (B * F + 1) int64 and ``pair_slot`` (P,) int64 (where
        face ``f`` of item ``b``'s tile entries sit in ``tile_faces``).
    """
    verts_ndc, faces, module = kernel_inputs(verts_ndc, faces, kind, load_extension, _CPU_KINDS)
    tile = int(tile if tile is not None else module.cuda_tile)
    out = module.bin_faces(verts_ndc.detach(), faces, int(image_size), float(cutoff_sq), tile)
    names = ("windows", "tile_offsets", "tile_faces", "face_pair_offsets", "pair_slot")
    return dict(zip(names, out))


def soft_silhouette_ext(verts_ndc: torch.Tensor, faces: torch.Tensor, image_size: int, sigma: float,
                        cutoff_sq: float, kind: str | None = None, deterministic: bool | None = None) -> torch.Tensor:
    """Soft silhouettes with the fused kernel (same result as ``soft_silhouette_torch``).

    Args:
        verts_ndc: (B, V, 3) float32/float64 NDC x, y and camera depth z (CPU, or CUDA for "cuda").
        faces: (F, 3) integer vertex indices (moved to int64 on the device of ``verts_ndc``).
        image_size: S.
        sigma: sharpness (> 0).
        cutoff_sq: outside pairs with ``d^2 >= cutoff_sq`` are dropped.
        kind: "cpp" or "cuda"; default: "cuda" for CUDA tensors, else "cpp".
        deterministic: CUDA backward without float atomics (bitwise reproducible, possibly slower);
            default ``torch.are_deterministic_algorithms_enabled()``. The CPU kernel always is.
    Returns:
        (B, S, S) silhouettes in [0, 1], dtype of ``verts_ndc``, row 0 at the top; differentiable
        w.r.t. ``verts_ndc`` (x and y; the z gradient is zero).
    Raises:
        BackendUnavailable: the kernel cannot be built here.
    """
    verts_ndc, faces, module = kernel_inputs(verts_ndc, faces, kind, load_extension, _CPU_KINDS)
    if deterministic is None:
        deterministic = torch.are_deterministic_algorithms_enabled()
    return _SoftSilhouette.apply(verts_ndc, faces, module, int(image_size), float(sigma),
                                 float(cutoff_sq), bool(deterministic))
