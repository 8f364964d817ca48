"""Pure-PyTorch soft rasterizer (the reference the fused kernels are tested against).

Same math as :func:`recon.ops.silhouette_dense.soft_silhouette_dense`, restricted to the pixel-face
pairs that matter. Each face only sees the pixel centres inside its *window*: its 2D bounding box
grown by ``sqrt(cutoff_sq)``, clipped to the image. A pair contributes iff the pixel centre is
inside the triangle or ``d^2 < cutoff_sq``; outside that, ``D < eps`` and the pair is dropped.

The windows are enumerated exactly (variable sizes, no dense ``B x pixels x faces`` tensor), in two
stages:

1. without gradient (:func:`recon.ops.window_pairs.window_pairs`, shared with the colour
   references): windows, pairs, the closest edge of every pair and its closest-point parameter
   ``t``, the inside test and the cutoff test;
2. with gradient, only on the kept pairs: ``d^2 = |p - (a + t (b - a))|^2`` for the closest edge
   ``(a, b)``, ``log(1 - D)``, scattered into a per-pixel log buffer.

Stage 2 holds ``t`` and the edge choice fixed. That gives the exact gradient: where the closest
point is interior to the edge, ``d d^2 / d t = 0`` (it is the minimiser), and where ``t`` is
clamped to 0 or 1 it is locally constant; the argmin edge is locally constant almost everywhere
and the distance is continuous across switches. The fused kernels use the same closed form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recon.ops.checks import check_face_indices, check_mesh_shapes
from recon.ops.window_pairs import pair_distance_sq, pixel_xy, window_pairs

__all__ = ["soft_silhouette_torch"]


def soft_silhouette_torch(verts_ndc: torch.Tensor, faces: torch.Tensor, image_size: int, sigma: float,
                          cutoff_sq: float) -> torch.Tensor:
    """Windowed soft silhouettes in plain PyTorch (differentiable w.r.t. ``verts_ndc`` x, y).

    Faces with a vertex at depth ``z <= 0`` (behind the camera) or a non-finite coordinate are
    skipped.

    Args:
        verts_ndc: (B, V, 3) float32/float64 NDC x, y and camera depth z.
        faces: (F, 3) int64 vertex indices shared by the batch.
        image_size: S.
        sigma: sharpness (> 0).
        cutoff_sq: outside pairs with ``d^2 >= cutoff_sq`` are dropped
            (``RasterSettings.cutoff_sq``).
    Returns:
        (B, S, S) silhouettes in [0, 1], dtype of ``verts_ndc``, row 0 at the top.
    Raises:
        ValueError: misshapen inputs, or a face index outside ``[0, V)``.
    """
    check_mesh_shapes(verts_ndc, faces)
    b, v = verts_ndc.shape[:2]
    check_face_indices(faces, v)
    s, dtype, device = int(image_size), verts_ndc.dtype, verts_ndc.device
    faces = faces.to(device=device, dtype=torch.long)

    pairs = window_pairs(verts_ndc, faces, s, cutoff_sq)
    with torch.no_grad():
        face_verts = pairs.vertex_rows(faces, v)
        p = pixel_xy(pairs.pixel, s, dtype)
        # logsigmoid argument is -sign * d^2 / sigma with sign = +1 inside, -1 outside.
        inv_sigma = torch.tensor(1.0 / sigma, dtype=dtype, device=device)
        coef = torch.where(pairs.inside, -inv_sigma, inv_sigma)

    d2 = pair_distance_sq(verts_ndc[..., :2].reshape(b * v, 2), face_verts, pairs, p)
    log_sum = torch.zeros(b * s * s, dtype=dtype, device=device).index_add(0, pairs.pixel, F.logsigmoid(coef * d2))
    return -torch.expm1(log_sum).reshape(b, s, s)
