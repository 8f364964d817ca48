"""Windowed pixel-face pair enumeration shared by the torch references of the RGBA renders.

The same pair rule as the silhouette reference (:mod:`recon.render.softras_torch`): a face sees only
the pixel centres inside its *window* (its 2D bounding box grown by ``sqrt(cutoff_sq)``), and a pair
is kept iff the pixel centre is inside the face or ``d^2 < cutoff_sq``. Faces with a vertex at
``z <= 0`` or a non-finite x/y have an empty window. Nothing here carries gradient: the renders
recompute their differentiable terms on the kept pairs only, never on a dense
``B x pixels x faces`` tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recon.render.softras_torch import _CHUNK, _chunk_pairs, _face_table, face_windows

__all__ = ["WindowPairs", "window_pairs", "pixel_xy"]


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


def pixel_xy(pixel: torch.Tensor, image_size: int, dtype: torch.dtype) -> torch.Tensor:
    """NDC centres ``(P, 2)`` of flat pixel indices (``recon.cameras`` convention, row 0 on top)."""
    s = image_size
    px = (2 * (pixel % s) + 1 - s).to(dtype) / s
    py = (s - 1 - 2 * (torch.div(pixel, s, rounding_mode="floor") % s)).to(dtype) / s
    return torch.stack([px, py], dim=-1)


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
    this is the exact gradient (see :mod:`recon.render.softras_torch`).

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
