"""DIB-R-style rendering (Chen et al. 2019) in plain PyTorch: the reference for the kernels.

Ours, after Kaolin's ``dibr_rasterization`` (``kaolin/render/mesh/dibr.py``,
``kaolin/csrc/render/mesh/{rasterization,dibr_soft_mask}_cuda.cu``), on any device::

    covered pixel   (its centre is inside some face): the nearest such face j (smallest
                    perspective-correct depth 1 / sum_k (w_k / z_k); ties: the first face)
                    rgb   = sum_k w_k c_k      (screen-space barycentrics w of the pixel centre)
                    alpha = 1
    other pixels    rgb   = background
                    alpha = 1 - prod_j (1 - exp(-d_j^2 / sigma))   over the faces with d_j^2 < cutoff_sq

Gradients reach the colours and, through the barycentrics, the x, y of the nearest face's
vertices at covered pixels, and the x, y of every face near an uncovered pixel through the soft
alpha. Depth only decides visibility (zero z gradient).

Kaolin's soft mask takes the first ``knum`` faces whose box (grown by ``boxlen``) holds the pixel and
measures ``d^2`` to the closest edge line or vertex (the same as the closest point of the boundary);
ours takes every face within the silhouette's cutoff (``exp(-d^2 / sigma) < eps`` beyond it), with no
``knum`` limit. Kaolin interpolates depth linearly in screen space and draws only faces with
``normal_z >= 0``; ours uses the exact depth and draws both sides, like the ``softras`` backend.
"""

from __future__ import annotations

import torch

from recon.ops.rgba_soft_torch import rgba_image, rgba_pairs
from recon.ops.window_pairs import barycentric, pair_distance_sq

__all__ = ["MIN_EXPONENT", "dibr_rgba_torch", "log_one_minus_exp_neg"]

# log(1 - exp(-x)) is evaluated at x >= MIN_EXPONENT (float32-safe), so a pair at distance 0 from an
# uncovered pixel (only a zero-area face) keeps finite values and gradients. Its alpha is then 1 to
# within 1e-30, and its true gradient is 0 (d d^2 / d vertex = 0 at d = 0).
MIN_EXPONENT = 1e-30


def log_one_minus_exp_neg(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(-x))`` for ``x >= 0``, accurate for small ``x`` (clamped at ``MIN_EXPONENT``)."""
    return torch.log(-torch.expm1(-x.clamp(min=MIN_EXPONENT)))


def dibr_rgba_torch(verts_ndc: torch.Tensor, faces: torch.Tensor, colours: torch.Tensor, image_size: int,
                    sigma: float, cutoff_sq: float, background: tuple[float, ...] | torch.Tensor = (0.0, 0.0, 0.0)
                    ) -> torch.Tensor:
    """Hard-rasterized interpolated colours plus DIB-R's soft alpha, windowed, differentiable.

    Args:
        verts_ndc, faces, colours, image_size: as :func:`recon.ops.rgba_soft_torch.soft_rgba_torch`
            (``colours`` may be any C per-vertex attributes).
        sigma: soft-alpha sharpness (> 0): ``exp(-d^2 / sigma)``.
        cutoff_sq: faces farther than ``sqrt(cutoff_sq)`` from an uncovered pixel are ignored.
        background: C values for uncovered pixels.
    Returns:
        (B, C + 1, S, S): attributes then alpha, row 0 at the top; differentiable w.r.t.
        ``verts_ndc`` (x, y) and ``colours``.
    """
    r = rgba_pairs(verts_ndc, faces, colours, image_size, cutoff_sq, background)
    pairs, face_verts, p = r.pairs, r.face_verts, r.centres
    b, v, nc = *verts_ndc.shape[:2], colours.shape[-1]
    s, dtype, device = int(image_size), verts_ndc.dtype, verts_ndc.device
    npix = b * s * s
    flat = verts_ndc.reshape(b * v, 3)
    xy = flat[:, :2]
    with torch.no_grad():
        # Hard rasterization: the nearest inside pair of each pixel (first face on ties).
        ins = pairs.inside.nonzero()[:, 0]
        w_in = barycentric(xy[face_verts[ins]], p[ins])
        depth = 1.0 / (w_in / flat[:, 2][face_verts[ins]]).sum(-1)
        best = torch.full((npix,), float("inf"), dtype=dtype, device=device)
        best = best.scatter_reduce(0, pairs.pixel[ins], depth, reduce="amin", include_self=True)
        at_best = depth == best[pairs.pixel[ins]]
        first = torch.full((npix,), pairs.face.numel(), dtype=torch.long, device=device)
        first = first.scatter_reduce(0, pairs.pixel[ins][at_best], pairs.face[ins][at_best], reduce="amin",
                                     include_self=True)
        win = ins[at_best & (pairs.face[ins] == first[pairs.pixel[ins]])]  # one pair per covered pixel
        covered = torch.zeros(npix, dtype=torch.bool, device=device)
        covered[pairs.pixel[win]] = True
        # Soft alpha: the outside pairs of uncovered pixels.
        soft = (~pairs.inside & ~covered[pairs.pixel]).nonzero()[:, 0]

    w = barycentric(xy[face_verts[win]], p[win])
    rgb_win = (w[..., None] * colours.reshape(b * v, nc)[face_verts[win]]).sum(1)
    rgb = r.background.repeat(npix, 1).index_put((pairs.pixel[win],), rgb_win)

    soft_pairs = pairs.select(soft)
    d2 = pair_distance_sq(xy, face_verts[soft], soft_pairs, p[soft])
    log_sum = torch.zeros(npix, dtype=dtype, device=device).index_add(0, soft_pairs.pixel,
                                                                      log_one_minus_exp_neg(d2 / sigma))
    alpha = torch.where(covered, torch.ones_like(log_sum), -torch.expm1(log_sum))
    return rgba_image(rgb, alpha, b, s)
