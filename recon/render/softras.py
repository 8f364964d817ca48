"""The ``softras`` backend: SoftRas-style soft silhouettes with a choice of implementation.

    torch  pure PyTorch reference (``softras_torch``), any device, always available
    cpp    fused C++/OpenMP kernel (``softras_ext``), CPU tensors, needs a C++ compiler
    cuda   fused CUDA kernel (``softras_ext``), CUDA tensors, needs nvcc and a GPU

``impl="auto"`` picks per call from the input's device: the CUDA kernel for CUDA tensors, the C++
kernel for CPU tensors, and the torch reference when that kernel cannot be built (logged once,
with the reason).
"""

from __future__ import annotations

import logging

import torch

from recon.render.base import BackendUnavailable, RasterSettings, Renderer
from recon.render.rgba import soft_rgba
from recon.render.softras_ext import load_extension, soft_silhouette_ext
from recon.render.softras_torch import soft_silhouette_torch

__all__ = ["IMPLS", "SoftRasRenderer", "available_impls", "make_renderer"]

IMPLS = ("torch", "cpp", "cuda")
_CHOICES = ("auto",) + IMPLS
_KERNEL_DEVICE = {"cpp": "cpu", "cuda": "cuda"}

_log = logging.getLogger(__name__)
_warned: set[str] = set()  # reasons already logged in this process


def _unavailable_reason(impl: str, device: torch.device) -> str | None:
    """None when ``impl`` can rasterize tensors on ``device``, else why not."""
    if impl == "torch":
        return None
    if device.type != _KERNEL_DEVICE[impl]:
        return f"the {impl} kernel runs on {_KERNEL_DEVICE[impl]} tensors, not {device.type}"
    try:
        load_extension(impl)
    except BackendUnavailable as e:
        return str(e)
    return None


def available_impls(device: torch.device | str = "cpu") -> dict[str, str | None]:
    """``{impl: None}`` for each implementation that can run on ``device``, else the reason.

    Builds the kernels on first use (can take a minute), then answers from the process cache.
    """
    dev = torch.device(device)
    return {impl: _unavailable_reason(impl, dev) for impl in IMPLS}


class SoftRasRenderer(Renderer):
    """Soft silhouettes (SoftRas aggregation ``1 - prod(1 - D)``) on projected vertices.

    Attributes:
        requested_impl: what was asked for ("auto", "torch", "cpp" or "cuda").
        impl: the implementation used by the last call (before any call: the one ``auto`` picks
            for the ``device`` given at construction).
    """

    name = "softras"

    def __init__(self, settings: RasterSettings | None = None, impl: str = "auto",
                 device: torch.device | str | None = None):
        super().__init__(settings)
        if impl not in _CHOICES:
            raise ValueError(f"unknown softras impl {impl!r}; valid impls: {', '.join(_CHOICES)}")
        self.requested_impl = impl
        if impl == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable("softras impl 'cuda' needs a CUDA device, but torch.cuda.is_available() is "
                                     "False (use impl='cpp', 'torch' or 'auto')")
        if impl in _KERNEL_DEVICE:
            load_extension(impl)  # fail now, with the build error, rather than at the first call
        default = "cuda" if impl == "cuda" else "cpu"
        self.impl = self._resolve(torch.device(device if device is not None else default))

    def _resolve(self, device: torch.device) -> str:
        if self.requested_impl != "auto":
            return self.requested_impl
        kernel = "cuda" if device.type == "cuda" else "cpp"
        reason = _unavailable_reason(kernel, device)
        if reason is None:
            return kernel
        if reason not in _warned:
            _warned.add(reason)
            _log.warning("softras: using the (slower) torch reference on %s: %s", device.type, reason)
        return "torch"

    def rasterize_ndc(self, verts_ndc: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """Soft silhouettes of projected meshes.

        Args:
            verts_ndc: (B, V, 3) float32/float64 NDC x, y and camera depth z.
            faces: (F, 3) int64 vertex indices.
        Returns:
            (B, S, S) silhouettes in [0, 1], row 0 at the top.
        """
        impl = self._resolve(verts_ndc.device)
        self.impl = impl
        s = self.settings
        if impl == "torch":
            return soft_silhouette_torch(verts_ndc, faces, s.image_size, s.sigma, s.cutoff_sq)
        if verts_ndc.device.type != _KERNEL_DEVICE[impl]:
            raise ValueError(f"softras impl {impl!r} runs on {_KERNEL_DEVICE[impl]} tensors, got "
                             f"{verts_ndc.device.type} tensors (use impl='auto' to follow the input)")
        return soft_silhouette_ext(verts_ndc, faces, s.image_size, s.sigma, s.cutoff_sq, kind=impl)

    def rasterize_rgba_ndc(self, verts_ndc: torch.Tensor, faces: torch.Tensor, colors: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) projected vertices, (F, 3) faces, (B, V, 3) colours -> (B, 4, S, S): SoftRas' soft
        z-buffer colour and the silhouette as alpha (``recon.render.rgba.soft_rgba``, same ``impl`` choice)."""
        return soft_rgba(verts_ndc, faces, colors, self.settings, self.requested_impl)

    def __repr__(self) -> str:
        return f"SoftRasRenderer(impl={self.impl!r}, requested={self.requested_impl!r}, {self.settings})"


def make_renderer(settings: RasterSettings, impl: str = "auto",
                  device: torch.device | str | None = None) -> SoftRasRenderer:
    """Registry factory for ``get_renderer("softras", impl=..., device=...)``.

    Raises:
        ValueError: unknown ``impl`` (lists the valid ones).
        BackendUnavailable: a forced kernel ("cpp", "cuda") cannot be built or run here.
    """
    return SoftRasRenderer(settings, impl=impl, device=device)
