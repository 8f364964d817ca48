"""``mesh_vs_voxels_metrics``: the first scorer (protocol ``exact`` against grids only), kept as the
reference that ``recon.metrics.mesh_metrics`` must reproduce (tests only)."""

from __future__ import annotations

import torch

from recon.metrics import _point_scores, _voxel_reference, iou_3d
from recon.ops.voxelize_exact import voxelize


def mesh_vs_voxels_metrics(verts: torch.Tensor, faces: torch.Tensor, gt_voxels: torch.Tensor,
                           n_points: int = 2048, seed: int = 0, lo: float = -0.5, hi: float = 0.5,
                           fscore_threshold: float = 0.05) -> dict[str, torch.Tensor]:
    """Score predicted closed meshes against ground-truth occupancy grids (protocol ``exact``).

    IoU: ``voxelize`` the mesh on the grid of ``gt_voxels``. Chamfer / F-score: ``n_points``
    area-weighted samples on the mesh (generator seeded with ``seed + b`` for object ``b``) vs
    ``surface_points_from_voxels(gt)``; NaN for an empty ground truth or a zero-area mesh.
    :func:`mesh_metrics` does the same under any protocol, against GT mesh points when there are.

    Args:
        verts: (B, V, 3); faces: (F, 3) int64; gt_voxels: (B, R, R, R) bool.
    Returns:
        ``{"iou", "chamfer", "fscore"}``, each (B,) float32.
    """
    if gt_voxels.ndim != 4 or gt_voxels.shape[0] != verts.shape[0]:
        raise ValueError(f"mesh_vs_voxels_metrics: gt_voxels must be (B={verts.shape[0]}, R, R, R), "
                         f"got {tuple(gt_voxels.shape)}")
    gt = gt_voxels.bool().cpu()
    pred = voxelize(verts, faces, gt.shape[1], lo, hi).cpu()
    chamfer, fs = _point_scores(verts, faces, _voxel_reference(gt, lo, hi), n_points, seed, fscore_threshold)
    return {"iou": iou_3d(pred, gt), "chamfer": chamfer, "fscore": fs}
