"""The ``softras`` backend: SoftRas-style soft silhouettes with a choice of implementation.

    torch  pure PyTorch reference (``softras_torch``), any device, always available
    cpp    fused C++/OpenMP kernel (``softras_ext``), CPU tensors, needs a C++ compiler
    cuda   fused CUDA kernel (``softras_ext``), CUDA tensors, needs nvcc and a GPU

``impl="auto"`` picks per call from the input's device: the CUDA kernel for CUDA tensors, the C++
kernel for CPU tensors, and the torch reference when that kernel cannot be built (logged once,
with the reason; :mod:`recon.render.impls`).
"""

from __future__ import annotations

import torch

from recon.render.impls import IMPLS, ImplChoice, KernelRenderer
from recon.render.rgba import soft_rgba
from recon.render.softras_ext import load_extension, soft_silhouette_ext
from recon.render.softras_torch import soft_silhouette_torch

__all__ = ["IMPLS", "SoftRasRenderer", "available_impls", "make_renderer"]

_CHOICE = ImplChoice("softras", load_extension)


def available_impls(device: torch.device | str = "cpu") -> dict[str, str | None]:
    """``{impl: None}`` for each implementation that can run on ``device``, else the reason.

    Builds the kernels on first use (can take a minute), then answers from the process cache.
    """
    return _CHOICE.available(device)


class SoftRasRenderer(KernelRenderer):
    """Soft silhouettes (SoftRas aggregation ``1 - prod(1 - D)``) on projected vertices; ``impl``,
    ``requested_impl`` as :class:`~recon.render.impls.KernelRenderer`."""

    name = "softras"
    choice = _CHOICE

    def rasterize_ndc(self, verts_ndc: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """Soft silhouettes of projected meshes.

        Args:
            verts_ndc: (B, V, 3) float32/float64 NDC x, y and camera depth z.
            faces: (F, 3) int64 vertex indices.
        Returns:
            (B, S, S) silhouettes in [0, 1], row 0 at the top.
        """
        impl, s = self.resolve(verts_ndc.device), self.settings
        if impl == "torch":
            return soft_silhouette_torch(verts_ndc, faces, s.image_size, s.sigma, s.cutoff_sq)
        return soft_silhouette_ext(verts_ndc, faces, s.image_size, s.sigma, s.cutoff_sq, kind=impl)

    def rasterize_rgba_ndc(self, verts_ndc: torch.Tensor, faces: torch.Tensor, colors: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) projected vertices, (F, 3) faces, (B, V, 3) colours -> (B, 4, S, S): SoftRas' soft
        z-buffer colour and the silhouette as alpha (``recon.render.rgba.soft_rgba``, same ``impl`` choice)."""
        return soft_rgba(verts_ndc, faces, colors, self.settings, self.requested_impl)


# The registry's factory: make_renderer(settings, impl="auto", device=None) (``get_renderer("softras", ...)``).
make_renderer = SoftRasRenderer
