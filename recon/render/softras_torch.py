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


# Pairs are processed in chunks of about this many so that the no-grad intermediates stay in cache.
_CHUNK = 1 << 15


def _face_table(fxy: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-face constants the pair loop gathers: (16, N) rows ax[3], ay[3], ex[3], ey[3], inv_len2[3],
    non-degenerate flag, for (N, 3, 2) face vertices. Edge k runs from vertex k to vertex k + 1."""
    a = fxy
    e = a.roll(-1, dims=1) - a
    len2 = (e * e).sum(-1)
    # A zero-length edge's closest point is its start: inv_len2 = 0 makes t = 0.
    inv_len2 = torch.where(len2 > 0, 1.0 / torch.where(len2 > 0, len2, torch.ones_like(len2)), torch.zeros_like(len2))
    x0, y0 = a[:, 0, 0], a[:, 0, 1]
    area2 = (a[:, 1, 0] - x0) * (a[:, 2, 1] - y0) - (a[:, 1, 1] - y0) * (a[:, 2, 0] - x0)
    nondegenerate = ((area2 != 0) & valid).to(a.dtype)
    return torch.cat([a[..., 0].T, a[..., 1].T, e[..., 0].T, e[..., 1].T, inv_len2.T, nondegenerate[None]]).contiguous()


def _chunk_pairs(table: torch.Tensor, faces_ids: torch.Tensor, counts: torch.Tensor, width: torch.Tensor,
                 c0: torch.Tensor, r0: torch.Tensor, image_size: int, cutoff_sq: float
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Evaluate every pixel in the windows of a group of faces; return only the kept pairs.

    Args:
        table: (16, N) per-face constants (``_face_table``).
        faces_ids: (K,) indices into N of the faces in this group; counts/width/c0/r0: (K,) int64.
    Returns:
        ``(face_id, pixel (row * S + col), edge, t, inside)`` of the kept pairs, each (P,).
    """
    s = image_size
    dev = counts.device
    local_face = torch.repeat_interleave(torch.arange(counts.numel(), device=dev), counts)
    starts = torch.cumsum(counts, 0) - counts
    local = torch.arange(local_face.numel(), device=dev) - starts[local_face]
    w = width[local_face]
    row = r0[local_face] + torch.div(local, w, rounding_mode="floor")
    col = c0[local_face] + local % w
    face_id = faces_ids[local_face]

    g = table.index_select(1, face_id)  # (16, P)
    ax, ay, ex, ey, inv_len2, nondeg = g[0:3], g[3:6], g[6:9], g[9:12], g[12:15], g[15]
    px = ((2 * col + 1 - s).to(g.dtype) / s)[None]
    py = ((s - 1 - 2 * row).to(g.dtype) / s)[None]
    apx, apy = px - ax, py - ay  # (3, P)
    cross = ex * apy - ey * apx
    t = (apx * ex + apy * ey).mul_(inv_len2).clamp_(0.0, 1.0)
    dx = torch.addcmul(apx, t, ex, value=-1.0)
    dy = torch.addcmul(apy, t, ey, value=-1.0)
    d2, edge = (dx * dx).addcmul_(dy, dy).min(0)
    inside = ((cross >= 0).all(0) | (cross <= 0).all(0)) & (nondeg > 0)
    keep = inside | (d2 < cutoff_sq)
    t_sel = t.gather(0, edge[None])[0]
    return face_id[keep], (row * s + col)[keep], edge[keep], t_sel[keep], inside[keep]


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
        fv = verts_ndc.detach()[:, faces].reshape(b * nf, 3, 3)
        fxy = fv[..., :2]
        valid = (fv[..., 2] > 0).all(-1) & torch.isfinite(fxy).flatten(-2).all(-1)
        c0, c1, r0, r1 = face_windows(fxy, valid, s, cutoff_sq)
        width = (c1 - c0 + 1).clamp(min=0)
        counts = width * (r1 - r0 + 1).clamp(min=0)
        ids = counts.nonzero()[:, 0]
        counts, width, c0, r0 = counts[ids], width[ids], c0[ids], r0[ids]
        table = _face_table(torch.nan_to_num(fxy), valid)
        # Split the faces into groups of about _CHUNK pairs each.
        cum = torch.cumsum(counts, 0)
        total = int(cum[-1]) if cum.numel() else 0
        marks = torch.arange(_CHUNK, max(total, _CHUNK), _CHUNK, device=device)
        cuts = torch.searchsorted(cum, marks, right=True).tolist()
        bounds = sorted(set([0] + cuts + [ids.numel()]))
        parts = [_chunk_pairs(table, ids[i:j], counts[i:j], width[i:j], c0[i:j], r0[i:j], s, cutoff_sq)
                 for i, j in zip(bounds[:-1], bounds[1:])]
        if parts:
            face_id, pix, edge, t, inside = (torch.cat(x) for x in zip(*parts))
        else:
            face_id = pix = edge = torch.zeros(0, dtype=torch.long, device=device)
            t = torch.zeros(0, dtype=dtype, device=device)
            inside = torch.zeros(0, dtype=torch.bool, device=device)
        bi, fi = torch.div(face_id, nf, rounding_mode="floor"), face_id % nf
        pix = pix + bi * (s * s)
        ia = faces[fi, edge] + bi * v
        ib = faces[fi, (edge + 1) % 3] + bi * v
        # logsigmoid argument is -sign * d^2 / sigma with sign = +1 inside, -1 outside.
        inv_sigma = torch.tensor(1.0 / sigma, dtype=dtype, device=device)
        coef = torch.where(inside, -inv_sigma, inv_sigma)
        px = (2 * (pix % s) + 1 - s).to(dtype) / s
        py = (s - 1 - 2 * (torch.div(pix, s, rounding_mode="floor") % s)).to(dtype) / s
        p = torch.stack([px, py], dim=-1)

    vxy = verts_ndc[..., :2].reshape(b * v, 2)
    va, vb = vxy[ia], vxy[ib]
    dq = p - torch.addcmul(va, t[:, None], vb - va)
    log_not = F.logsigmoid(coef * (dq * dq).sum(-1))
    log_sum = torch.zeros(b * s * s, dtype=dtype, device=device).index_add(0, pix, log_not)
    return -torch.expm1(log_sum).reshape(b, s, s)
