"""Pure-PyTorch soft rasterizer (the reference the fused kernels are tested against).

Same math as :func:`recon.render.softras_dense.soft_silhouette_dense`, restricted to the pixel-face
pairs that matter. Each face only sees the pixel centres inside its *window*: its 2D bounding box
grown by ``sqrt(cutoff_sq)``, clipped to the image. A pair contributes iff the pixel centre is
inside the triangle or ``d^2 < cutoff_sq``; outside that, ``D < eps`` and the pair is dropped.

The windows are enumerated exactly (variable sizes, no dense ``B x pixels x faces`` tensor), in two
stages:

1. without gradient: windows, pairs, the closest edge of every pair and its closest-point
   parameter ``t``, the inside test and the cutoff test;
2. with gradient, only on the kept pairs: ``d^2 = |p - (a + t (b - a))|^2`` for the closest edge
   ``(a, b)``, ``log(1 - D)``, scattered into a per-pixel log buffer.

Stage 2 holds ``t`` and the edge choice fixed. That gives the exact gradient: where the closest
point is interior to the edge, ``d d^2 / d t = 0`` (it is the minimiser), and where ``t`` is
clamped to 0 or 1 it is locally constant; the argmin edge is locally constant almost everywhere
and the distance is continuous across switches. The fused kernels use the same closed form.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["soft_silhouette_torch", "face_windows"]


def face_windows(face_xy: torch.Tensor, valid: torch.Tensor, image_size: int,
                 cutoff_sq: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inclusive pixel ranges each face can influence (computed in float64, like the kernels).

    Pixel column ``c`` has centre ``x = (2c + 1 - S) / S`` and row ``r`` has ``y = (S - 1 - 2r) / S``;
    the window holds the centres inside the face's bounding box grown by ``sqrt(cutoff_sq)``.

    Args:
        face_xy: (..., 3, 2) projected face vertices (NDC x, y).
        valid: (...) bool, faces to rasterize at all (others get an empty window).
        image_size: S.
        cutoff_sq: squared NDC cutoff distance.
    Returns:
        ``(c0, c1, r0, r1)``, each (...) int64; the window is empty when ``c1 < c0`` or ``r1 < r0``.
    """
    s = float(image_size)
    rad = math.sqrt(cutoff_sq)
    xy = face_xy.detach().to(torch.float64)
    lo, hi = xy.min(dim=-2).values, xy.max(dim=-2).values  # (..., 2)
    c0 = torch.ceil((s * (lo[..., 0] - rad) + s - 1.0) / 2.0)
    c1 = torch.floor((s * (hi[..., 0] + rad) + s - 1.0) / 2.0)
    r0 = torch.ceil((s - 1.0 - s * (hi[..., 1] + rad)) / 2.0)
    r1 = torch.floor((s - 1.0 - s * (lo[..., 1] - rad)) / 2.0)
    # Clamp in float64 before the cast so far-away vertices cannot overflow int64.
    zero, empty_hi = torch.zeros_like(c0), torch.full_like(c0, -1.0)
    c0 = torch.where(valid, c0.clamp(0.0, s), zero)
    r0 = torch.where(valid, r0.clamp(0.0, s), zero)
    c1 = torch.where(valid, c1.clamp(-1.0, s - 1.0), empty_hi)
    r1 = torch.where(valid, r1.clamp(-1.0, s - 1.0), empty_hi)
    return c0.long(), c1.long(), r0.long(), r1.long()


def _enumerate_pairs(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(K,) non-negative counts -> (owner (P,), local index within its owner (P,)), P = sum."""
    owner = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)
    starts = torch.cumsum(counts, 0) - counts
    local = torch.arange(owner.numel(), device=counts.device) - starts[owner]
    return owner, local


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
    """
    if verts_ndc.dim() != 3 or verts_ndc.shape[-1] != 3:
        raise ValueError(f"verts_ndc must be (B, V, 3), got {tuple(verts_ndc.shape)}")
    if faces.dim() != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be (F, 3), got {tuple(faces.shape)}")
    b, v = verts_ndc.shape[:2]
    s, nf = int(image_size), faces.shape[0]
    dtype, device = verts_ndc.dtype, verts_ndc.device
    faces = faces.to(device=device, dtype=torch.long)

    with torch.no_grad():
        fv = verts_ndc.detach()[:, faces]  # (B, F, 3, 3)
        fxy = fv[..., :2]
        valid = (fv[..., 2] > 0).all(-1) & torch.isfinite(fxy).flatten(-2).all(-1)
        c0, c1, r0, r1 = face_windows(fxy, valid, s, cutoff_sq)
        width = (c1 - c0 + 1).clamp(min=0).reshape(-1)
        counts = width * (r1 - r0 + 1).clamp(min=0).reshape(-1)
        owner, local = _enumerate_pairs(counts)  # owner indexes B*F
        w = width[owner]
        row = r0.reshape(-1)[owner] + torch.div(local, w, rounding_mode="floor")
        col = c0.reshape(-1)[owner] + local % w
        p = torch.stack([(2 * col + 1 - s).to(dtype) / s, (s - 1 - 2 * row).to(dtype) / s], dim=-1)  # (P, 2)

        a = fxy.reshape(b * nf, 3, 2)[owner]  # (P, 3, 2); edge k runs from vertex k to k+1
        e = a.roll(-1, dims=1) - a
        ap = p[:, None, :] - a
        len2 = (e * e).sum(-1)
        nonzero = len2 > 0
        t = torch.where(nonzero, (ap * e).sum(-1) / torch.where(nonzero, len2, torch.ones_like(len2)),
                        torch.zeros_like(len2)).clamp(0.0, 1.0)
        diff = ap - t[..., None] * e
        d2, edge = (diff * diff).sum(-1).min(-1)
        cross = e[..., 0] * ap[..., 1] - e[..., 1] * ap[..., 0]
        x0, y0 = fxy[..., 0, 0], fxy[..., 0, 1]
        area2 = (fxy[..., 1, 0] - x0) * (fxy[..., 2, 1] - y0) - (fxy[..., 1, 1] - y0) * (fxy[..., 2, 0] - x0)
        inside = ((cross >= 0).all(-1) | (cross <= 0).all(-1)) & (area2.reshape(-1) != 0)[owner]
        keep = inside | (d2 < cutoff_sq)

        owner, edge, p, inside = owner[keep], edge[keep], p[keep], inside[keep]
        t = t[keep].gather(1, edge[:, None]).squeeze(1)
        bi, fi = torch.div(owner, nf, rounding_mode="floor"), owner % nf
        pix = (bi * s + row[keep]) * s + col[keep]
        ia = faces[fi, edge] + bi * v
        ib = faces[fi, (edge + 1) % 3] + bi * v
        sign = torch.where(inside, -1.0, 1.0).to(dtype)  # -sign(inside), the logsigmoid argument's sign

    vxy = verts_ndc[..., :2].reshape(b * v, 2)
    va, vb = vxy[ia], vxy[ib]
    q = va + t[:, None] * (vb - va)
    dq = p - q
    log_not = F.logsigmoid(sign * (dq * dq).sum(-1) / sigma)
    log_sum = torch.zeros(b * s * s, dtype=dtype, device=device).index_add(0, pix, log_not)
    return -torch.expm1(log_sum).reshape(b, s, s)
