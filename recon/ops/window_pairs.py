"""Windowed pixel-face pair enumeration shared by the torch references of every render (the
silhouette :mod:`recon.ops.silhouette_torch` and the colour ones).

The pair rule of the kernels: a face sees only the pixel centres inside its *window* (its 2D
bounding box grown by ``sqrt(cutoff_sq)``, :func:`face_windows`), and a pair is kept iff the pixel
centre is inside the face or ``d^2 < cutoff_sq``. Faces with a vertex at ``z <= 0`` or a non-finite
x/y have an empty window. The enumeration carries no gradient: the renders recompute their
differentiable terms on the kept pairs only (:func:`pair_distance_sq`, :func:`barycentric`), never
on a dense ``B x pixels x faces`` tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["WindowPairs", "window_pairs", "face_windows", "pixel_xy", "pair_distance_sq", "edge_functions",
           "barycentric"]


@dataclass
class WindowPairs:
    """The kept pixel-face pairs of a batch, in face-major order (each face's window row-major).

    Attributes (all (P,)):
        batch: batch index.
        face: face index in ``faces``.
        pixel: flat pixel index over the batch, ``batch * S * S + row * S + col``.
        edge: closest edge of the face (edge k runs from vertex k to vertex k + 1).
        t: closest point ``a + t (b - a)`` on that edge, in [0, 1] (dtype of the vertices).
        inside: pixel centre inside the (non-degenerate) face.
    """

    batch: torch.Tensor
    face: torch.Tensor
    pixel: torch.Tensor
    edge: torch.Tensor
    t: torch.Tensor
    inside: torch.Tensor

    def select(self, index: torch.Tensor) -> "WindowPairs":
        """The pairs at ``index`` ((K,) int64 or (P,) bool)."""
        return WindowPairs(self.batch[index], self.face[index], self.pixel[index], self.edge[index], self.t[index],
                           self.inside[index])

    def vertex_rows(self, faces: torch.Tensor, num_verts: int) -> torch.Tensor:
        """(P, 3) rows of each pair's face vertices in the batch's flat ``(B * V, ...)`` vertex table."""
        return faces[self.face] + self.batch[:, None] * num_verts


def pixel_xy(pixel: torch.Tensor, image_size: int, dtype: torch.dtype) -> torch.Tensor:
    """NDC centres ``(P, 2)`` of flat pixel indices (``recon.cameras`` convention, row 0 on top)."""
    s = image_size
    px = (2 * (pixel % s) + 1 - s).to(dtype) / s
    py = (s - 1 - 2 * (torch.div(pixel, s, rounding_mode="floor") % s)).to(dtype) / s
    return torch.stack([px, py], dim=-1)


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


@torch.no_grad()
def window_pairs(verts_ndc: torch.Tensor, faces: torch.Tensor, image_size: int, cutoff_sq: float) -> WindowPairs:
    """Every kept pixel-face pair of a batch of projected meshes.

    Args:
        verts_ndc: (B, V, 3) float NDC x, y and camera depth z.
        faces: (F, 3) int64 vertex indices shared by the batch.
        image_size: S.
        cutoff_sq: outside pairs with ``d^2 >= cutoff_sq`` are dropped.
    Returns:
        The kept pairs (see :class:`WindowPairs`).
    """
    b, nf = verts_ndc.shape[0], faces.shape[0]
    s, dtype, device = int(image_size), verts_ndc.dtype, verts_ndc.device
    fv = verts_ndc.detach()[:, faces].reshape(b * nf, 3, 3)
    fxy = fv[..., :2]
    valid = (fv[..., 2] > 0).all(-1) & torch.isfinite(fxy).flatten(-2).all(-1)
    c0, c1, r0, r1 = face_windows(fxy, valid, s, cutoff_sq)
    width = (c1 - c0 + 1).clamp(min=0)
    counts = width * (r1 - r0 + 1).clamp(min=0)
    ids = counts.nonzero()[:, 0]
    counts, width, c0, r0 = counts[ids], width[ids], c0[ids], r0[ids]
    table = _face_table(torch.nan_to_num(fxy), valid)
    # Groups of about _CHUNK pairs keep the intermediates small.
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
    bi = torch.div(face_id, nf, rounding_mode="floor")
    return WindowPairs(batch=bi, face=face_id % nf, pixel=pix + bi * (s * s), edge=edge, t=t, inside=inside)


def pair_distance_sq(verts_xy: torch.Tensor, face_verts: torch.Tensor, pairs: WindowPairs,
                     p: torch.Tensor) -> torch.Tensor:
    """Differentiable squared distance from each pair's pixel centre to its closest edge.

    The closest edge and ``t`` are held fixed (they were found without gradient): where the closest
    point is interior to the edge ``d d^2 / d t = 0``, and a clamped ``t`` is locally constant, so
    this is the exact gradient (see :mod:`recon.ops.silhouette_torch`).

    Args:
        verts_xy: (B * V, 2) NDC x, y of all vertices of the batch.
        face_verts: (P, 3) int64 rows of ``verts_xy`` of each pair's face vertices.
        pairs: the pairs.
        p: (P, 2) pixel centres.
    Returns:
        (P,) ``d^2``.
    """
    ia = face_verts.gather(1, pairs.edge[:, None])[:, 0]
    ib = face_verts.gather(1, ((pairs.edge + 1) % 3)[:, None])[:, 0]
    va, vb = verts_xy[ia], verts_xy[ib]
    dq = p - torch.addcmul(va, pairs.t[:, None], vb - va)
    return (dq * dq).sum(-1)


def edge_functions(fxy: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge functions and twice the signed area of triangles (the kernels' expressions).

    ``cross_k = e_k x (p - a_k)`` for edge ``k`` from vertex ``k`` to ``k + 1``;
    ``area2 = (x1 - x0)(y2 - y0) - (y1 - y0)(x2 - x0)``. The barycentric weight of vertex ``k + 2``
    is ``cross_k / area2``.

    Args:
        fxy: (P, 3, 2) projected face vertices.
        p: (P, 2) points.
    Returns:
        ``cross`` (P, 3) and ``area2`` (P,).
    """
    e = fxy.roll(-1, dims=1) - fxy
    ap = p[:, None, :] - fxy
    cross = e[..., 0] * ap[..., 1] - e[..., 1] * ap[..., 0]
    x0, y0 = fxy[:, 0, 0], fxy[:, 0, 1]
    area2 = (fxy[:, 1, 0] - x0) * (fxy[:, 2, 1] - y0) - (fxy[:, 1, 1] - y0) * (fxy[:, 2, 0] - x0)
    return cross, area2


def barycentric(fxy: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Screen-space barycentric weights (P, 3) of points ``p`` (P, 2) in triangles ``fxy`` (P, 3, 2)
    with non-zero area (differentiable; weights sum to 1 and may lie outside [0, 1])."""
    cross, area2 = edge_functions(fxy, p)
    return cross.roll(-1, dims=1) / area2[:, None]  # w_{k+2} = cross_k / area2
