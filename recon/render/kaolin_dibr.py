"""The ``kaolin`` backend: Kaolin's DIB-R soft mask as the silhouette (CUDA only, lazy import).

What it computes (read in ``kaolin/csrc/render/mesh/dibr_soft_mask_cuda.cu``), per pixel centre:

* covered by a face (DIB-R's hard rasterization picks one): the mask is exactly **1**, and the
  backward pass gives such pixels **no gradient**;
* otherwise ``1 - prod_k (1 - exp(-sigmainv * d_k^2))`` over the first ``knum`` faces *in index
  order* whose bounding box grown by ``boxlen`` contains the pixel (not the nearest ones), with
  ``d_k`` the distance to face k's boundary.

With ``sigmainv = 1 / sigma`` that is SoftRas' outside term with ``exp(-x)`` in place of
``sigmoid(-x) = exp(-x) / (1 + exp(-x))``: at an edge DIB-R gives 1 where SoftRas gives 0.5, so its
silhouettes are slightly wider than softras' at the same sigma, and they are hard inside.

API used (``kaolin/render/mesh/dibr.py`` and the older ``kaolin/render/mesh/rasterization.py``,
same signature in both)::

    dibr_rasterization(height, width, face_vertices_z, face_vertices_image, face_features,
                       face_normals_z, sigmainv=7000, boxlen=0.02, knum=30, multiplier=...)
        -> (interpolated_features, soft_mask (B, H, W), face_idx)

with ``face_vertices_image`` (B, F, 3, 2) in [-1, 1], ``face_vertices_z`` (B, F, 3) camera-space
depth (the camera looks down -z, so nearer is larger: we pass ``-depth``), ``face_features``
(B, F, 3, C) and only faces with ``face_normals_z >= 0`` rasterized (we pass 1: both sides, like
softras). Faces with a vertex behind the camera or a non-finite x/y are culled as in softras (moved
off-screen). Kaolin's pixel centres are ``x = (2w + 1 - W) / W``, ``y = (H - 2h - 1) / H``: row 0
is the top, as in ours, so no flip.
"""

from __future__ import annotations

import math

import torch

from recon.render.base import BackendUnavailable, RasterSettings, Renderer

__all__ = ["KaolinDIBRRenderer", "install_hint", "make_renderer"]

# The one tested pair (environment.yml): kaolin 0.17.0 wheels for torch 2.5.1 + CUDA 12.4.
KAOLIN_VERSION = "0.17.0"
_OFF_SCREEN = 10.0


def install_hint() -> str:
    """The pip command for a Kaolin wheel: for this PyTorch / CUDA build when Kaolin publishes one,
    else for the pair ``environment.yml`` installs (torch 2.5.1 + CUDA 12.4)."""
    torch_ver = torch.__version__.split("+")[0]
    parts = tuple(int(p) for p in torch_ver.split(".")[:3] if p.isdigit())
    index = "https://nvidia-kaolin.s3.us-east-2.amazonaws.com/torch-{}_cu{}.html"
    if torch.version.cuda and (2, 0, 1) <= parts <= (2, 5, 1):
        cuda_ver = torch.version.cuda.replace(".", "")
        return (f"pip install kaolin=={KAOLIN_VERSION} -f {index.format(torch_ver, cuda_ver)} (if that index is "
                f"missing, Kaolin has no wheel for this torch/CUDA pair: use environment.yml)")
    return (f"pip install kaolin=={KAOLIN_VERSION} -f {index.format('2.5.1', '124')} in the environment.yml "
            f"env (kaolin {KAOLIN_VERSION} wheels exist for torch 2.0.1-2.5.1 with CUDA; this is torch "
            f"{torch.__version__})")


class KaolinDIBRRenderer(Renderer):
    """DIB-R soft silhouettes through ``kaolin.render.mesh.dibr_rasterization`` (see the module
    docstring: 1 with no gradient on covered pixels, ``exp(-d^2 / sigma)`` terms of the first
    ``knum`` faces in index order elsewhere)."""

    name = "kaolin"

    def __init__(self, settings: RasterSettings | None = None, knum: int = 60, multiplier: float = 1000.0):
        super().__init__(settings)
        from kaolin.render.mesh import dibr_rasterization  # availability checked by make_renderer

        self._dibr = dibr_rasterization
        self.knum = int(knum)
        self.multiplier = float(multiplier)

    def rasterize_ndc(self, verts_ndc: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) projected vertices (CUDA), (F, 3) faces -> (B, S, S) DIB-R soft masks."""
        if not verts_ndc.is_cuda:
            raise ValueError(f"the kaolin backend needs CUDA tensors, got {verts_ndc.device}")
        s = self.settings
        fv = verts_ndc.float()[:, faces.long()]  # (B, F, 3, 3)
        b, nf = fv.shape[:2]
        ones = torch.ones(b, nf, device=fv.device)
        drawn = ((fv[..., 2] > 0).all(-1) & torch.isfinite(fv[..., :2]).flatten(-2).all(-1)).detach()
        # Culled faces become a point far off-screen: no pixel's box test can reach them.
        xy = torch.where(drawn[..., None, None], fv[..., :2], torch.full_like(fv[..., :2], _OFF_SCREEN))
        _, soft_mask, _ = self._dibr(
            s.image_size, s.image_size,
            -fv[..., 2].contiguous(),          # face_vertices_z: nearer = larger
            xy.contiguous(),                   # face_vertices_image: NDC x, y
            ones[..., None, None].expand(b, nf, 3, 1).contiguous(),  # face_features: coverage
            ones,                              # face_normals_z >= 0: draw both sides, like softras
            sigmainv=1.0 / s.sigma,
            boxlen=math.sqrt(s.cutoff_sq),     # beyond it exp(-d^2 / sigma) < eps, as in softras
            knum=self.knum,
            multiplier=self.multiplier,
        )
        return soft_mask.to(verts_ndc.dtype)


def make_renderer(settings: RasterSettings, device: torch.device | str | None = None,
                  **opts) -> KaolinDIBRRenderer:
    """Registry factory; ``opts`` go to :class:`KaolinDIBRRenderer` (``knum``, ``multiplier``).

    Raises:
        BackendUnavailable: Kaolin is not installed or CUDA is not available (says which, and how
            to install Kaolin).
    """
    missing = []
    try:
        import kaolin.render.mesh  # noqa: F401
    except ImportError as e:
        missing.append(f"the kaolin package ({e})")
    if not torch.cuda.is_available():
        missing.append("CUDA (torch.cuda.is_available() is False; Kaolin's DIB-R runs on GPU only)")
    elif device is not None and torch.device(device).type != "cuda":
        missing.append(f"a CUDA device (got device={device!r}; Kaolin's DIB-R runs on GPU only)")
    if missing:
        raise BackendUnavailable(f"kaolin backend unavailable: missing {' and '.join(missing)}. "
                                 f"Install Kaolin with: {install_hint()}")
    return KaolinDIBRRenderer(settings, **opts)
