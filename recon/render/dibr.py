"""The ``dibr`` backend: our DIB-R-style renderer (:mod:`recon.render.dibr_torch`) on every device.

    silhouettes  DIB-R's soft alpha: 1 on covered pixels, 1 - prod(1 - exp(-d^2 / sigma)) elsewhere
    rgba         the nearest face's barycentric interpolation of the vertex colours, plus that alpha

``impl``: "auto" (default: the C++ kernel on CPU, the CUDA kernel on CUDA, the torch reference when
the kernel cannot be built), "torch", "cpp" or "cuda". Unlike the ``kaolin`` backend this needs no
Kaolin and runs on CPU.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from recon.render.base import BackendUnavailable, RasterSettings, Renderer
from recon.render.rgba import CHOICES, dibr_rgba, resolve_impl
from recon.render.rgba_ext import load_extension

__all__ = ["DibrRenderer", "make_renderer"]


class DibrRenderer(Renderer):
    """DIB-R-style silhouettes and RGBA renders.

    Attributes:
        requested_impl: what was asked for ("auto", "torch", "cpp" or "cuda").
        impl: the implementation used by the last call (before any call: the one ``auto`` picks for
            the ``device`` given at construction).
    """

    name = "dibr"

    def __init__(self, settings: RasterSettings | None = None, impl: str = "auto",
                 device: torch.device | str | None = None):
        super().__init__(settings)
        if impl not in CHOICES:
            raise ValueError(f"unknown dibr impl {impl!r}; valid impls: {', '.join(CHOICES)}")
        if impl == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable("dibr impl 'cuda' needs a CUDA device, but torch.cuda.is_available() is False "
                                     "(use impl='cpp', 'torch' or 'auto')")
        if impl in ("cpp", "cuda"):
            load_extension(impl)  # fail now, with the build error, rather than at the first call
        self.requested_impl = impl
        default = "cuda" if impl == "cuda" else "cpu"
        self.impl = resolve_impl(impl, torch.device(device if device is not None else default))

    def _render(self, verts_ndc: torch.Tensor, faces: torch.Tensor, colors: torch.Tensor,
                settings: RasterSettings) -> torch.Tensor:
        self.impl = resolve_impl(self.requested_impl, verts_ndc.device)
        return dibr_rgba(verts_ndc, faces, colors, settings, self.impl)

    def rasterize_ndc(self, verts_ndc: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) projected vertices, (F, 3) faces -> (B, S, S) DIB-R soft alpha."""
        no_colour = verts_ndc.new_zeros(verts_ndc.shape[0], verts_ndc.shape[1], 0)
        return self._render(verts_ndc, faces, no_colour, replace(self.settings, background=()))[:, 0]

    def rasterize_rgba_ndc(self, verts_ndc: torch.Tensor, faces: torch.Tensor, colors: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) projected vertices, (F, 3) faces, (B, V, 3) colours -> (B, 4, S, S) RGBA."""
        return self._render(verts_ndc, faces, colors, self.settings)

    def __repr__(self) -> str:
        return f"DibrRenderer(impl={self.impl!r}, requested={self.requested_impl!r}, {self.settings})"


def make_renderer(settings: RasterSettings, impl: str = "auto",
                  device: torch.device | str | None = None) -> DibrRenderer:
    """Registry factory for ``get_renderer("dibr", impl=..., device=...)``.

    Raises:
        ValueError: unknown ``impl`` (lists the valid ones).
        BackendUnavailable: a forced kernel ("cpp", "cuda") cannot be built or run here.
    """
    return DibrRenderer(settings, impl=impl, device=device)
