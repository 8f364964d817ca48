"""The ``nvdiffrast`` backend: hard coverage + ``antialias`` for silhouette gradients (CUDA only).

What it computes: the exact (hard) coverage of each pixel centre, with ``antialias`` blending the
pixels along silhouette edges by the edge's position, which is where the only gradients come from.
``sigma`` (and ``eps``) are ignored: no blur, no gradient from inside or far outside the mesh.
Faces with a vertex behind the camera (depth <= 0) or a non-finite x/y are culled, as in softras.

API used (read in NVlabs/nvdiffrast ``nvdiffrast/torch/ops.py``)::

    ctx = dr.RasterizeCudaContext(device=None)
    rast, rast_db = dr.rasterize(ctx, pos (B, V, 4) float32 clip space, tri (F, 3) int32, resolution=(H, W))
        # rast[..., 3] = triangle_id + 1, 0 where empty
    out = dr.antialias(color (B, H, W, C), rast, pos, tri)   # gradients reach pos at silhouette edges

nvdiffrast up to 0.3.x compiles its CUDA plugin the first time a context is created (a failure
there is a RuntimeError from ``torch.utils.cpp_extension``); 0.4.0 builds it at install time and
``import nvdiffrast.torch`` fails without it. Both become :class:`BackendUnavailable` here, with
the reason, when the renderer is made, never in the middle of a run.

nvdiffrast follows OpenGL conventions (its docs, "Coordinate systems"): clip-space z / w grows away
from the viewer and image memory is bottom-up, i.e. row 0 is y = -1. Kaolin's wrapper negates y
for the same reason (``_legacy_to_opengl`` in ``kaolin/render/mesh/rasterization.py``). We keep
our y and flip the rows instead so that row 0 is the top.
"""

from __future__ import annotations

import subprocess

import torch

from recon.render.base import BackendUnavailable, RasterSettings, Renderer

__all__ = ["NvdiffrastRenderer", "INSTALL_HINT", "drawable_faces", "make_renderer"]

NVDIFFRAST_TAG = "v0.4.0"
INSTALL_HINT = (f"pip install --no-build-isolation git+https://github.com/NVlabs/nvdiffrast.git@{NVDIFFRAST_TAG} "
                "(or `make gpu-extras`; needs torch installed first and a CUDA toolkit with nvcc matching your "
                "PyTorch build)")
_ERROR_TAIL = 2000
_PLUGIN_ERRORS = (RuntimeError, OSError, ImportError, subprocess.SubprocessError)


def drawable_faces(verts_ndc: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Which faces softras rasterizes: all three vertices in front of the camera (depth > 0) and
    finite NDC x, y.

    Args:
        verts_ndc: (B, V, 3) NDC x, y and camera depth z.
        faces: (F, 3) int64 vertex indices.
    Returns:
        (B, F) bool.
    """
    fv = verts_ndc.detach()[:, faces]  # (B, F, 3, 3)
    return (fv[..., 2] > 0).all(-1) & torch.isfinite(fv[..., :2]).flatten(-2).all(-1)


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

    @staticmethod
    def _clip_positions(verts_ndc: torch.Tensor) -> torch.Tensor:
        """(B, V, 4) clip-space positions: NDC x, y; depth mapped into [-0.9, 0.9] per mesh over the
        vertices in front of the camera (so nothing hits the near/far planes and the order is kept;
        the others only belong to culled faces); w = 1."""
        xy = torch.nan_to_num(verts_ndc[..., :2].float(), nan=0.0, posinf=0.0, neginf=0.0)
        depth = verts_ndc[..., 2].float()
        with torch.no_grad():
            front = (depth > 0) & torch.isfinite(depth) & torch.isfinite(verts_ndc[..., :2]).all(-1)
            inf = torch.full_like(depth, float("inf"))
            lo = torch.where(front, depth, inf).min(dim=1, keepdim=True).values
            hi = torch.where(front, depth, -inf).max(dim=1, keepdim=True).values
            lo = torch.where(torch.isfinite(lo), lo, torch.zeros_like(lo))
            hi = torch.where(torch.isfinite(hi), hi, lo)
            scale = 1.8 / (hi - lo).clamp(min=1e-6)
        z = torch.nan_to_num((depth - lo) * scale - 0.9).clamp(-0.95, 0.95)
        return torch.cat([xy, z[..., None], torch.ones_like(z)[..., None]], dim=-1).contiguous()

    def _coverage(self, pos: torch.Tensor, tri: torch.Tensor, size: int) -> torch.Tensor:
        dr = self._dr
        rast, _ = dr.rasterize(self._context(pos.device), pos, tri, resolution=(size, size))
        coverage = (rast[..., 3:] > 0).float()
        return dr.antialias(coverage, rast, pos, tri)[..., 0]  # (B, S, S), row 0 = bottom

    def rasterize_ndc(self, verts_ndc: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) projected vertices (CUDA), (F, 3) faces -> (B, S, S) antialiased coverage."""
        if not verts_ndc.is_cuda:
            raise ValueError(f"the nvdiffrast backend needs CUDA tensors, got {verts_ndc.device}")
        s = self.settings.image_size
        faces = faces.to(device=verts_ndc.device, dtype=torch.long)
        keep = drawable_faces(verts_ndc, faces)
        pos = self._clip_positions(verts_ndc)
        tri = faces.to(torch.int32).contiguous()
        if bool(keep.all()):
            sil = self._coverage(pos, tri, s)
        else:  # the triangle list is shared by the batch: rasterize items with culled faces one by one
            sil = torch.cat([self._coverage(pos[b:b + 1], tri[keep[b]].contiguous(), s)
                             if bool(keep[b].any()) else pos.new_zeros(1, s, s) for b in range(pos.shape[0])])
        return sil.flip(1).to(verts_ndc.dtype)


def _probe_plugin(dr, device: torch.device | None) -> None:
    """Create a rasterizer context (None: the current CUDA device): nvdiffrast <= 0.3.x JIT-builds
    its CUDA plugin here."""
    dr.RasterizeCudaContext(device=device)


def make_renderer(settings: RasterSettings, device: torch.device | str | None = None) -> NvdiffrastRenderer:
    """Registry factory.

    Raises:
        BackendUnavailable: nvdiffrast is not installed, cannot build or load its CUDA plugin, or
            CUDA is not available (says which and why, and how to install nvdiffrast).
    """
    missing = []
    dr = None
    try:
        import nvdiffrast.torch as dr
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
    try:
        _probe_plugin(dr, torch.device(device) if device is not None else None)
    except _PLUGIN_ERRORS as e:
        raise BackendUnavailable(f"nvdiffrast backend unavailable: its CUDA plugin failed to build or load "
                                 f"({type(e).__name__}: {str(e)[-_ERROR_TAIL:]}). Reinstall with: "
                                 f"{INSTALL_HINT}") from e
    return NvdiffrastRenderer(settings, device=device)
