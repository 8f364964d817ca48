"""The ``softras`` backend: SoftRas-style soft silhouettes with a choice of implementation.

Silhouettes come from :func:`recon.ops.silhouette.soft_silhouette`, colour renders from
:func:`recon.ops.rgba.soft_rgba` (SoftRas' soft z-buffer); each op family has its own
implementation choice (``impl`` for silhouettes, ``rgba_impl`` for colour), both following the
``impl`` requested here:

    torch  pure PyTorch reference, any device, always available
    cpp    fused C++/OpenMP kernel, CPU tensors, needs a C++ compiler
    cuda   fused CUDA kernel, CUDA tensors, needs nvcc and a GPU

``impl="auto"`` picks per call from the input's device: the CUDA kernel for CUDA tensors, the C++
kernel for CPU tensors, and the torch reference when that kernel cannot be built (logged once,
with the reason; :mod:`recon.ops.impl`).
"""

from __future__ import annotations

import torch

from recon.ops import rgba, silhouette
from recon.ops.impl import IMPLS
from recon.render.kernel import KernelRenderer

__all__ = ["IMPLS", "SoftRasRenderer", "available_impls", "make_renderer"]

available_impls = silhouette.available_impls


class SoftRasRenderer(KernelRenderer):
    """Soft silhouettes (SoftRas aggregation ``1 - prod(1 - D)``) on projected vertices; ``impl``,
    ``requested_impl``, ``rgba_impl`` as :class:`~recon.render.kernel.KernelRenderer`."""

    name = "softras"
    choice = silhouette.CHOICE
    rgba_choice = rgba.CHOICE

    def rasterize_ndc(self, verts_ndc: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) float32/float64 projected vertices, (F, 3) int64 faces -> (B, S, S) silhouettes
        in [0, 1], row 0 at the top."""
        return silhouette.soft_silhouette(verts_ndc, faces, self.settings, self.resolve(verts_ndc.device))

    def rasterize_rgba_ndc(self, verts_ndc: torch.Tensor, faces: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) projected vertices, (F, 3) faces, (B, V, 3) colours -> (B, 4, S, S): SoftRas' soft
        z-buffer colour and the silhouette as alpha (``recon.ops.rgba.soft_rgba``)."""
        return rgba.soft_rgba(verts_ndc, faces, colours, self.settings, self.resolve_rgba(verts_ndc.device))


# The registry's factory: make_renderer(settings, impl="auto", device=None) (``get_renderer("softras", ...)``).
make_renderer = SoftRasRenderer
