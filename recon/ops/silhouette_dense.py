"""Dense soft-silhouette oracle: every pixel against every face, no culling, plain autograd.

This is the obviously-correct definition the faster implementations are tested against::

    d^2   = squared NDC distance from the pixel centre to the projected triangle's boundary
    sign  = +1 if the pixel centre is inside the triangle, else -1 (degenerate faces: never inside)
    D     = sigmoid(sign * d^2 / sigma)
    sil   = 1 - prod_f (1 - D_f),   with log(1 - D) = logsigmoid(-sign * d^2 / sigma)

It allocates ``B x S*S x F`` tensors: use it only for small tests and benchmarks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recon import cameras

__all__ = ["soft_silhouette_dense"]


def soft_silhouette_dense(verts_ndc: torch.Tensor, faces: torch.Tensor, image_size: int,
                          sigma: float) -> torch.Tensor:
    """Soft silhouettes by brute force over all pixel-face pairs.

    Faces with a vertex at depth ``z <= 0`` (behind the camera) are skipped, as in the
    other implementations.

    Args:
        verts_ndc: (B, V, 3) float NDC x, y and camera depth z (z only decides visibility).
        faces: (F, 3) int64 vertex indices.
        image_size: S, output is (S, S).
        sigma: sharpness (> 0).
    Returns:
        (B, S, S) silhouettes in [0, 1], dtype of ``verts_ndc``, row 0 at the top.
    """
    b, s = verts_ndc.shape[0], image_size
    fv = verts_ndc[:, faces.long()]  # (B, F, 3, 3)
    a = fv[..., :2]  # (B, F, 3, 2) edge start points
    e = a.roll(-1, dims=2) - a  # (B, F, 3, 2) edge k goes from vertex k to vertex k+1
    valid = (fv[..., 2] > 0).all(-1)  # (B, F)

    p = cameras.pixel_centers(s, dtype=verts_ndc.dtype, device=verts_ndc.device).reshape(1, -1, 1, 1, 2)
    ap = p - a[:, None]  # (B, P, F, 3, 2)
    ee = e[:, None]
    len2 = (ee * ee).sum(-1)  # (B, 1, F, 3)
    nonzero = len2 > 0
    # Safe denominator: a zero-length edge's closest point is its start (t = 0), and the
    # unselected branch of torch.where must not produce inf/nan gradients.
    t = torch.where(nonzero, (ap * ee).sum(-1) / torch.where(nonzero, len2, torch.ones_like(len2)),
                    torch.zeros_like(len2)).clamp(0.0, 1.0)
    diff = ap - t[..., None] * ee
    d2 = (diff * diff).sum(-1).min(-1).values  # (B, P, F)

    with torch.no_grad():
        cross = ee[..., 0] * ap[..., 1] - ee[..., 1] * ap[..., 0]  # (B, P, F, 3)
        x0, y0 = a[..., 0, 0], a[..., 0, 1]
        area2 = (a[..., 1, 0] - x0) * (a[..., 2, 1] - y0) - (a[..., 1, 1] - y0) * (a[..., 2, 0] - x0)
        inside = ((cross >= 0).all(-1) | (cross <= 0).all(-1)) & (area2 != 0)[:, None]
        sign = torch.where(inside, 1.0, -1.0).to(verts_ndc.dtype)

    log_not = F.logsigmoid(-sign * d2 / sigma)
    log_not = torch.where(valid[:, None], log_not, torch.zeros_like(log_not))
    return -torch.expm1(log_not.sum(-1)).reshape(b, s, s)
