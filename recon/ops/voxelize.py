"""3D-IoU protocols: how a predicted mesh becomes the occupancy grid that is scored.

* ``"softras-iou"``: SoftRas/NMR's ``evaluate_iou`` voxelization, the protocol behind every published
  number on that data (:mod:`recon.ops.voxelize_softras`): its 31/32-scaled grid, surface
  cells marked by column sweeps along the three axes plus the corner cells, and the flood fill
  of the outside. Thin parts always keep their cells.
* ``"exact"``: exact ray parity at the cell centres of the ``[-0.5, 0.5]^3`` grid
  (:func:`recon.ops.voxelize_exact.voxelize`); a part that misses every centre gets no cell.

Both return ``[b, i, j, k]`` <-> world ``(x, y, z)``, the order of our ground-truth grids.

``softras-iou`` was called ``softras`` (the renderer backend's name) before; ``PROTOCOL_ALIASES`` maps
the old name, which flags, earlier eval records and the HDF5 files still use: dataset files keep
storing ``softras`` (``STORED_NAMES``: the file format is unchanged).
"""

from __future__ import annotations

import torch

from recon.choices import (DEFAULT_PROTOCOL, PROTOCOL_ALIASES, PROTOCOL_CHOICES, PROTOCOLS, SOFTRAS_IOU, STORED_NAMES,
                           check_protocol, stored_name)
from recon.ops.voxelize_exact import voxelize as voxelize_exact
from recon.ops.voxelize_softras import softras_grid_coords, voxelize_softras, voxelize_softras_reference

__all__ = [
    "PROTOCOLS",
    "DEFAULT_PROTOCOL",
    "SOFTRAS_IOU",
    "PROTOCOL_ALIASES",
    "PROTOCOL_CHOICES",
    "STORED_NAMES",
    "stored_name",
    "voxelize",
    "voxelize_softras",
    "voxelize_softras_reference",
    "softras_grid_coords",
    "check_protocol",
    "grid_bounds",
]


def grid_bounds(protocol: str, resolution: int = 32) -> tuple[float, float]:
    """World extent ``(lo, hi)`` (the same on every axis) of the grid a protocol voxelizes on.

    ``exact``: ``[-0.5, 0.5]``. ``softras-iou``: ``[-(R/2)/(R-1), (R/2)/(R-1)]`` (``[-16/31, 16/31]`` at
    R = 32), so cell ``i`` is centred at ``lo + (i + 0.5) (hi - lo) / R`` in both cases.
    """
    if check_protocol(protocol, "protocol") == "exact":
        return -0.5, 0.5
    half = (resolution / 2) / (resolution - 1)
    return -half, half


def voxelize(verts: torch.Tensor, faces: torch.Tensor, resolution: int = 32,
             protocol: str = DEFAULT_PROTOCOL) -> torch.Tensor:
    """Occupancy grids of meshes under a named protocol.

    Args:
        verts: (B, V, 3) float world coordinates.
        faces: (F, 3) integer vertex indices shared by the batch.
        resolution: R.
        protocol: ``"softras-iou"`` (fast implementation, :func:`voxelize_softras`) or ``"exact"``
            (:func:`recon.ops.voxelize_exact.voxelize` on ``[-0.5, 0.5]^3``).
    Returns:
        (B, R, R, R) bool on ``verts.device``, ``[b, i, j, k]`` <-> (x, y, z).
    Raises:
        ValueError: unknown protocol or bad inputs.
    """
    name = PROTOCOL_ALIASES.get(protocol, protocol)
    if name == SOFTRAS_IOU:
        return voxelize_softras(verts, faces, resolution)
    if name == "exact":
        return voxelize_exact(verts, faces, resolution)
    raise ValueError(f"unknown voxelization protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
