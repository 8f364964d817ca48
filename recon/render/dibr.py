"""The ``dibr`` backend: our DIB-R-style renderer (:func:`recon.ops.rgba.dibr_rgba`) on every device.

    silhouettes  DIB-R's soft alpha: 1 on covered pixels, 1 - prod(1 - exp(-d^2 / sigma)) elsewhere
    rgba         the nearest face's barycentric interpolation of the vertex colours, plus that alpha

``impl``: "auto" (default: the C++ kernel on CPU, the CUDA kernel on CUDA, the torch reference when
the kernel cannot be built), "torch", "cpp" or "cuda" (the RGBA family's choice, ``recon.ops.rgba.CHOICE``).
Unlike the ``kaolin`` backend this needs no Kaolin and runs on CPU.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from recon.ops import rgba
from recon.render.kernel import KernelRenderer

__all__ = ["DibrRenderer", "make_renderer"]


class DibrRenderer(KernelRenderer):
    """DIB-R-style silhouettes and RGBA renders; ``impl``, ``requested_impl`` as
    :class:`~recon.render.kernel.KernelRenderer` (silhouettes and colour share one choice)."""

    name = "dibr"
    choice = rgba.CHOICE
    rgba_choice = rgba.CHOICE

    def rasterize_ndc(self, verts_ndc: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) projected vertices, (F, 3) faces -> (B, S, S) DIB-R soft alpha."""
        no_colour = verts_ndc.new_zeros(verts_ndc.shape[0], verts_ndc.shape[1], 0)
        settings = replace(self.settings, background=())
        return rgba.dibr_rgba(verts_ndc, faces, no_colour, settings, self.resolve(verts_ndc.device))[:, 0]

    def rasterize_rgba_ndc(self, verts_ndc: torch.Tensor, faces: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) projected vertices, (F, 3) faces, (B, V, 3) colours -> (B, 4, S, S) RGBA."""
        return rgba.dibr_rgba(verts_ndc, faces, colours, self.settings, self.resolve_rgba(verts_ndc.device))


# The registry's factory: make_renderer(settings, impl="auto", device=None) (``get_renderer("dibr", ...)``).
make_renderer = DibrRenderer
