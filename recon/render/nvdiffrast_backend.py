"""The ``nvdiffrast`` backend: hard coverage + ``antialias`` for silhouette gradients (CUDA only).

API used (read in NVlabs/nvdiffrast ``nvdiffrast/torch/ops.py``)::

    ctx = dr.RasterizeCudaContext(device=None)
    rast, rast_db = dr.rasterize(ctx, pos (B, V, 4) float32 clip space, tri (F, 3) int32, resolution=(H, W))
        # rast[..., 3] = triangle_id + 1, 0 where empty
    out = dr.antialias(color (B, H, W, C), rast, pos, tri)   # gradients reach pos at silhouette edges

nvdiffrast follows OpenGL conventions (its docs, "Coordinate systems"): clip-space z / w grows away
from the viewer and image memory is bottom-up, i.e. row 0 is y = -1. Kaolin's wrapper negates y
for the same reason (``_legacy_to_opengl`` in ``kaolin/render/mesh/rasterization.py``). We keep
our y and flip the rows instead so that row 0 is the top.
"""

from __future__ import annotations

import torch

from recon.render.base import BackendUnavailable, RasterSettings, Renderer

__all__ = ["NvdiffrastRenderer", "INSTALL_HINT", "make_renderer"]

INSTALL_HINT = ("pip install git+https://github.com/NVlabs/nvdiffrast --no-build-isolation "
                "(needs a CUDA toolkit with nvcc matching your PyTorch build)")


class NvdiffrastRenderer(Renderer):
    """Antialiased hard silhouettes via nvdiffrast's CUDA rasterizer (``sigma`` is not used)."""

    name = "nvdiffrast"

    def __init__(self, settings: RasterSettings | None = None, device: torch.device | str | None = None):
        super().__init__(settings)
        import nvdiffrast.torch as dr  # availability checked by make_renderer

        self._dr = dr
        self._device = torch.device(device) if device is not None else None
        self._contexts: dict[torch.device, object] = {}

    def _context(self, device: torch.device):
        if device not in self._contexts:
            self._contexts[device] = self._dr.RasterizeCudaContext(device=device)
        return self._contexts[device]

    def rasterize_ndc(self, verts_ndc: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) projected vertices (CUDA), (F, 3) faces -> (B, S, S) antialiased coverage."""
        if not verts_ndc.is_cuda:
            raise ValueError(f"the nvdiffrast backend needs CUDA tensors, got {verts_ndc.device}")
        dr, s = self._dr, self.settings.image_size
        xy, depth = verts_ndc[..., :2].float(), verts_ndc[..., 2].float()
        with torch.no_grad():
            # Map each mesh's depth range into [-0.9, 0.9] so nothing hits the near/far clip planes;
            # the order (and so the visible surface) is unchanged.
            lo = depth.min(dim=1, keepdim=True).values
            hi = depth.max(dim=1, keepdim=True).values
            scale = 1.8 / (hi - lo).clamp(min=1e-6)
        z = (depth - lo) * scale - 0.9
        pos = torch.cat([xy, z[..., None], torch.ones_like(z)[..., None]], dim=-1).contiguous()
        tri = faces.to(device=verts_ndc.device, dtype=torch.int32).contiguous()
        rast, _ = dr.rasterize(self._context(verts_ndc.device), pos, tri, resolution=(s, s))
        coverage = (rast[..., 3:] > 0).float()
        sil = dr.antialias(coverage, rast, pos, tri)  # (B, S, S, 1), row 0 = bottom
        return sil[..., 0].flip(1).to(verts_ndc.dtype)


def make_renderer(settings: RasterSettings, device: torch.device | str | None = None) -> NvdiffrastRenderer:
    """Registry factory.

    Raises:
        BackendUnavailable: nvdiffrast is not installed or CUDA is not available (says which, and
            how to install nvdiffrast).
    """
    missing = []
    try:
        import nvdiffrast.torch  # noqa: F401
    except ImportError as e:
        missing.append(f"the nvdiffrast package ({e})")
    if not torch.cuda.is_available():
        missing.append("CUDA (torch.cuda.is_available() is False; the nvdiffrast backend uses "
                       "RasterizeCudaContext)")
    elif device is not None and torch.device(device).type != "cuda":
        missing.append(f"a CUDA device (got device={device!r})")
    if missing:
        raise BackendUnavailable(f"nvdiffrast backend unavailable: missing {' and '.join(missing)}. "
                                 f"Install nvdiffrast with: {INSTALL_HINT}")
    return NvdiffrastRenderer(settings, device=device)
