"""The soft silhouette op: SoftRas aggregation ``1 - prod(1 - D)`` of projected meshes.

    soft_silhouette(verts_ndc, faces, settings, impl) -> (B, S, S)

One kernel family, declared once: the torch reference (:mod:`recon.ops.silhouette_torch`), the
fused C++/CUDA extension (:mod:`recon.ops.silhouette_ext`, sources in ``csrc/silhouette/`` +
``csrc/common/``) and the implementation choice ``CHOICE`` (:class:`recon.ops.impl.ImplChoice`):

    torch  pure PyTorch reference, any device, always available
    cpp    fused C++/OpenMP kernel, CPU tensors, needs a C++ compiler
    cuda   fused CUDA kernel, CUDA tensors, needs nvcc and a GPU
    auto   per call from the input's device, the torch reference when the kernel cannot be built

The dense oracle the reference is checked against is :mod:`recon.ops.silhouette_dense`.
"""

from __future__ import annotations

import torch

from recon.ops.impl import IMPLS, ImplChoice
from recon.ops.settings import RasterSettings
from recon.ops.silhouette_ext import load_extension, soft_silhouette_ext
from recon.ops.silhouette_torch import soft_silhouette_torch

__all__ = ["IMPLS", "CHOICE", "available_impls", "soft_silhouette"]

CHOICE = ImplChoice("softras", load_extension)


def available_impls(device: torch.device | str = "cpu") -> dict[str, str | None]:
    """``{impl: None}`` for each implementation that can run on ``device``, else the reason.

    Builds the kernels on first use (can take a minute), then answers from the process cache.
    """
    return CHOICE.available(device)


def soft_silhouette(verts_ndc: torch.Tensor, faces: torch.Tensor, settings: RasterSettings,
                    impl: str = "auto") -> torch.Tensor:
    """Soft silhouettes of projected meshes (image size, sigma and cutoff from ``settings``).

    Args:
        verts_ndc: (B, V, 3) float32/float64 NDC x, y and camera depth z.
        faces: (F, 3) int64 vertex indices.
        settings: the rasterization settings.
        impl: "auto", "torch", "cpp" or "cuda" (an already resolved impl is used as it is).
    Returns:
        (B, S, S) silhouettes in [0, 1], row 0 at the top.
    """
    which, s = CHOICE.resolve(impl, verts_ndc.device), settings
    if which == "torch":
        return soft_silhouette_torch(verts_ndc, faces, s.image_size, s.sigma, s.cutoff_sq)
    return soft_silhouette_ext(verts_ndc, faces, s.image_size, s.sigma, s.cutoff_sq, kind=which)
