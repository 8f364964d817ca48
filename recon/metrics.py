"""Evaluation scores: 3D IoU, Chamfer distance and F-score of predicted meshes.

``mesh_metrics`` scores meshes against one object's ground truth under a 3D-IoU protocol; the
meshes are voxelized by :mod:`recon.ops.voxelize` (the fills themselves, ray parity and winding
numbers, are ops: :mod:`recon.ops.voxelize_exact`).

Grids follow ``recon.data.schema``: ``voxels[..., i, j, k]`` is the cell centred at world
``(lo + (i + 0.5) h, lo + (j + 0.5) h, lo + (k + 0.5) h) = (x, y, z)`` with ``h = (hi - lo) / R``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from recon.ops.voxelize import DEFAULT_PROTOCOL, grid_bounds, voxelize as voxelize_protocol

__all__ = [
    "iou_3d",
    "surface_points_from_voxels",
    "sample_mesh_surface",
    "chamfer_distance",
    "fscore",
    "mesh_metrics",
]


def iou_3d(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Volumetric IoU per object.

    Args:
        pred, gt: (B, R, R, R) bool (or 0/1).
    Returns:
        (B,) float32 ``|pred & gt| / |pred | gt|``; 1.0 where both are empty.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"iou_3d: pred {tuple(pred.shape)} and gt {tuple(gt.shape)} differ")
    p, g = pred.bool().flatten(1), gt.bool().flatten(1).to(pred.device)
    inter = (p & g).sum(1).float()
    union = (p | g).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def surface_points_from_voxels(voxels: torch.Tensor, lo: float = -0.5, hi: float = 0.5) -> torch.Tensor:
    """Centres of occupied voxels with an empty 6-neighbour (or on the grid boundary).

    These lie up to half a voxel inside the true surface, the usual approximation when the
    ground truth is only a grid.

    Args:
        voxels: (R, R, R) bool, ``[i, j, k]`` <-> (x, y, z).
    Returns:
        (P, 3) float32 world coordinates.
    """
    occ = voxels.bool().cpu()
    r = occ.shape[0]
    p = torch.nn.functional.pad(occ[None, None].float(), (1, 1, 1, 1, 1, 1))[0, 0] > 0  # (R+2,)*3
    c = slice(1, r + 1)
    inner = (occ & p[:-2, c, c] & p[2:, c, c] & p[c, :-2, c] & p[c, 2:, c] & p[c, c, :-2] & p[c, c, 2:])
    ijk = (occ & ~inner).nonzero().to(torch.float32)
    h = (hi - lo) / r
    return lo + (ijk + 0.5) * h


def sample_mesh_surface(verts: torch.Tensor, faces: torch.Tensor, n: int,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform (area-weighted) random points on a triangle mesh.

    Args:
        verts: (V, 3); faces: (F, 3) int64; n: number of samples;
        generator: CPU torch generator (pass one for determinism).
    Returns:
        (n, 3) points, dtype of ``verts``.
    Raises:
        ValueError: when the mesh has zero total area.
    """
    v = verts.detach().cpu()
    tri = v[faces.cpu().long()]  # (F, 3, 3)
    area = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=1).norm(dim=1)
    if not (area.sum() > 0):
        raise ValueError("sample_mesh_surface: mesh has zero surface area")
    idx = torch.multinomial(area.double(), n, replacement=True, generator=generator)
    u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    su = u[:, :1].sqrt()
    w = torch.cat([1 - su, su * (1 - u[:, 1:]), su * u[:, 1:]], dim=1).to(v.dtype)  # (n, 3)
    return (w[:, :, None] * tri[idx]).sum(1)


def _nn_dists(a: torch.Tensor, b: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """(N,) Euclidean distance from each point of ``a (N, 3)`` to its nearest point in ``b (M, 3)``."""
    # The matmul form of cdist cancels badly far from the origin: centre both sets on b's mean
    # (metrics run on objects inside the unit cube) so it stays exact to ~1e-6 and fast.
    centre = b.mean(0, keepdim=True)
    a, b = a - centre, b - centre
    return torch.cat([torch.cdist(a[s:s + chunk], b).amin(1) for s in range(0, a.shape[0], chunk)])


def _chamfer_and_fscore(a: torch.Tensor, b: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Chamfer distance and F-score from one pair of nearest-neighbour sweeps."""
    d_ab, d_ba = _nn_dists(a, b), _nn_dists(b, a)
    chamfer = 0.5 * (d_ab.mean() + d_ba.mean())
    precision = (d_ab < threshold).float().mean()
    recall = (d_ba < threshold).float().mean()
    total = precision + recall
    f = torch.where(total > 0, 2 * precision * recall / total.clamp_min(1e-12), torch.zeros(()))
    return chamfer, f


def chamfer_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Symmetric Chamfer distance with non-squared L2 distances.

    ``0.5 * (mean_{x in a} min_{y in b} |x - y| + mean_{y in b} min_{x in a} |x - y|)``.

    Args:
        a: (N, 3); b: (M, 3), both non-empty.
    Returns:
        () scalar, in world units.
    """
    a, b = a.detach().cpu().float(), b.detach().cpu().float()
    if a.shape[0] == 0 or b.shape[0] == 0:
        raise ValueError(f"chamfer_distance: empty point set ({a.shape[0]} and {b.shape[0]} points)")
    return _chamfer_and_fscore(a, b, 0.0)[0]


def fscore(a: torch.Tensor, b: torch.Tensor, threshold: float = 0.05) -> torch.Tensor:
    """F-score at a distance threshold: harmonic mean of precision (fraction of ``a`` within
    ``threshold`` of ``b``) and recall (fraction of ``b`` within ``threshold`` of ``a``).

    Args:
        a: (N, 3) predicted points; b: (M, 3) reference points, both non-empty.
    Returns:
        () scalar in [0, 1] (0 when precision + recall is 0).
    """
    a, b = a.detach().cpu().float(), b.detach().cpu().float()
    if a.shape[0] == 0 or b.shape[0] == 0:
        raise ValueError(f"fscore: empty point set ({a.shape[0]} and {b.shape[0]} points)")
    return _chamfer_and_fscore(a, b, threshold)[1]


def _point_scores(verts: torch.Tensor, faces: torch.Tensor, reference: Callable[[int], torch.Tensor],
                  n_points: int, seed: int, fscore_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Chamfer and F-score of each mesh ``verts[b]`` (``n_points`` samples, generator seeded with
    ``seed + b``) against ``reference(b)`` (P, 3); NaN for an empty reference or a zero-area mesh."""
    chamfer = torch.full((verts.shape[0],), float("nan"))
    fs = torch.full((verts.shape[0],), float("nan"))
    for b in range(verts.shape[0]):
        ref = reference(b)
        if ref.shape[0] == 0:
            continue
        try:
            pts = sample_mesh_surface(verts[b].float(), faces, n_points, torch.Generator().manual_seed(seed + b))
        except ValueError:
            continue
        chamfer[b], fs[b] = _chamfer_and_fscore(pts.detach().cpu().float(), ref.detach().cpu().float(),
                                                fscore_threshold)
    return chamfer, fs


def _voxel_reference(gt: torch.Tensor, lo: float, hi: float) -> Callable[[int], torch.Tensor]:
    """``reference(b)``: surface cell centres of ``gt[b]``, computed once per distinct grid (eval
    scores many views of one object against the same grid)."""
    cache: dict[str, Any] = {"of": None, "points": None}

    def reference(b: int) -> torch.Tensor:
        if cache["of"] is None or not torch.equal(gt[b], gt[cache["of"]]):
            cache["of"], cache["points"] = b, surface_points_from_voxels(gt[b], lo, hi)
        return cache["points"]

    return reference


def mesh_metrics(verts: torch.Tensor, faces: torch.Tensor, gt_voxels: torch.Tensor, protocol: str = DEFAULT_PROTOCOL,
                 ref_points: torch.Tensor | None = None, grid_protocol: str | None = None, full: bool = True,
                 n_points: int = 2048, seed: int = 0, fscore_threshold: float = 0.05) -> dict[str, torch.Tensor]:
    """Score meshes against one object's ground truth under a 3D-IoU protocol.

    IoU: the meshes voxelized under ``protocol`` (``recon.ops.voxelize.voxelize``) against
    ``gt_voxels``, the grid that protocol compares with. Chamfer / F-score (``full``): ``n_points``
    area-weighted samples on each mesh (generator seeded with ``seed + b``) against ``ref_points``,
    points sampled on the ground-truth mesh, when given (the usual practice); else against the
    surface cell centres of ``gt_voxels`` placed on the grid of ``grid_protocol`` (default:
    ``protocol``; see ``recon.ops.voxelize.grid_bounds``). NaN where a mesh has no area or the
    reference no point.

    Args:
        verts: (B, V, 3); faces: (F, 3) int64; gt_voxels: (B, R, R, R) bool.
        ref_points: (P, 3) or None, shared by the batch (the views of one object).
    Returns:
        ``{"iou"}`` and, when ``full``, ``"chamfer", "fscore"``; each (B,) float32.
    """
    if gt_voxels.ndim != 4 or gt_voxels.shape[0] != verts.shape[0]:
        raise ValueError(f"mesh_metrics: gt_voxels must be (B={verts.shape[0]}, R, R, R), "
                         f"got {tuple(gt_voxels.shape)}")
    gt = gt_voxels.bool().cpu()
    out = {"iou": iou_3d(voxelize_protocol(verts, faces, gt.shape[1], protocol).cpu(), gt)}
    if full:
        if ref_points is not None:
            ref = ref_points.detach().cpu().float()
            reference = lambda b: ref  # noqa: E731
        else:
            reference = _voxel_reference(gt, *grid_bounds(grid_protocol or protocol, gt.shape[1]))
        out["chamfer"], out["fscore"] = _point_scores(verts, faces, reference, n_points, seed, fscore_threshold)
    return out
