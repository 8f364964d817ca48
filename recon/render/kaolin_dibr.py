"""The ``kaolin`` backend: Kaolin's DIB-R soft mask as the silhouette (CUDA only, lazy import).

API used (read in NVIDIAGameWorks/kaolin, ``kaolin/render/mesh/dibr.py`` and the older
``kaolin/render/mesh/rasterization.py``, same signature in both)::

    dibr_rasterization(height, width, face_vertices_z, face_vertices_image, face_features,
                       face_normals_z, sigmainv=7000, boxlen=0.02, knum=30, multiplier=...)
        -> (interpolated_features, soft_mask (B, H, W), face_idx)

with ``face_vertices_image`` (B, F, 3, 2) in [-1, 1], ``face_vertices_z`` (B, F, 3) camera-space
depth (the camera looks down -z, so nearer is larger: we pass ``-depth``), ``face_features``
(B, F, 3, C) and only faces with ``face_normals_z >= 0`` rasterized. The soft mask is
``1 - prod(1 - exp(-sigmainv * d^2))`` over the ``knum`` nearest faces within ``boxlen`` of a pixel.
Its pixel centres are ``x = (2w + 1 - W) / W``, ``y = (H - 2h - 1) / H``
(``kaolin/csrc/render/mesh/dibr_soft_mask_cuda.cu``): row 0 is the top, as in ours, so no flip.
"""

from __future__ import annotations

import math

import torch

from recon.render.base import BackendUnavailable, RasterSettings, Renderer

__all__ = ["KaolinDIBRRenderer", "install_hint", "make_renderer"]

KAOLIN_VERSION = "0.17.0"


def install_hint() -> str:
    """The pip command for a Kaolin wheel matching this PyTorch / CUDA build."""
    torch_ver = torch.__version__.split("+")[0]
    cuda_ver = torch.version.cuda.replace(".", "") if torch.version.cuda else "<cuda_ver>"
    return (f"pip install kaolin=={KAOLIN_VERSION} -f https://nvidia-kaolin.s3.us-east-2.amazonaws.com/"
            f"torch-{torch_ver}_cu{cuda_ver}.html (wheels exist only for some torch/CUDA pairs: see "
            f"https://kaolin.readthedocs.io/en/latest/notes/installation.html)")


class KaolinDIBRRenderer(Renderer):
    """DIB-R soft silhouettes through ``kaolin.render.mesh.dibr_rasterization``."""

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
        _, soft_mask, _ = self._dibr(
            s.image_size, s.image_size,
            -fv[..., 2].contiguous(),          # face_vertices_z: nearer = larger
            fv[..., :2].contiguous(),          # face_vertices_image: NDC x, y
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
