"""The ground truth a prediction is scored against under a 3D-IoU protocol.

A protocol compares a voxelized prediction with a grid of the same kind, so the ground-truth grid
must have been made under that protocol (a perfect prediction then scores 1):

* HDF5 format v2 (``recon.data.schema``) stores the grid of the default protocol as ``voxels``
  (the protocol is its ``protocol`` attribute) and may store others as ``voxels_<protocol>``
  (our converters add ``voxels_exact``, the v1 grid), plus each object's GT mesh.
* Format v1 has one grid and no attribute: files converted from SoftRas/NMR ``.npz`` (their
  category group has a ``voxel_transform`` attribute) hold NMR's grids, which SoftRas's
  ``evaluate_iou`` compares with its own grid as they are, so they count as ``softras``; every
  other v1 grid was sampled at the cell centres of ``[-0.5, 0.5]^3`` (``exact``).

When a file has no grid made under the requested protocol, the grid it has is used and
:meth:`GroundTruth.notes` says so (the score then mixes two grids: on the synthetic data a
perfect prediction scores about 0.61 under ``softras`` against the v1 grid).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np
import torch

from recon.data.schema import MESH_FACES, MESH_OFFSETS, MESH_VERTS, VOXELS_PROTOCOL_ATTR, DatasetFormatError
from recon.ops.voxelize import SOFTRAS_IOU, check_protocol, stored_name, voxelize
from recon.ops.voxelize_softras import fill_enclosed

__all__ = ["GridChoice", "stored_grid_protocol", "GroundTruth", "ground_truth_grid"]


@dataclass(frozen=True)
class GridChoice:
    """Which stored grid of a split is the ground truth under a protocol."""

    dataset: str   # name in /<category>/<split>: "voxels" or "voxels_<protocol>"
    protocol: str  # the protocol that grid was made under
    matches: bool  # it is the requested protocol's grid


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def stored_grid_protocol(category: h5py.Group, split: str) -> str:
    """Protocol of ``/<category>/<split>/voxels``: its ``protocol`` attribute (v2), else the v1 rule
    (``softras-iou`` for NMR grids converted from SoftRas npz, ``exact`` otherwise)."""
    ds = category[split]["voxels"]
    if VOXELS_PROTOCOL_ATTR in ds.attrs:
        return check_protocol(_text(ds.attrs[VOXELS_PROTOCOL_ATTR]), "protocol")
    return SOFTRAS_IOU if "voxel_transform" in category.attrs else "exact"


class GroundTruth:
    """Per-object ground truth of one dataset file under ``protocol``: the grid to compare with
    and the GT mesh when the file stores one. Use as a context manager (keeps the file open).

    Args:
        path: a format v1 or v2 HDF5 dataset (already validated by the caller).
        protocol: ``"softras-iou"`` (or its old name ``"softras"``) or ``"exact"``.
    """

    def __init__(self, path: str | os.PathLike, protocol: str):
        self.path = str(path)
        self.protocol = check_protocol(protocol, "protocol")
        self._f: h5py.File | None = None
        self._choices: dict[tuple[str, str], GridChoice] = {}
        self._offsets: dict[tuple[str, str], np.ndarray | None] = {}

    def __enter__(self) -> "GroundTruth":
        self._f = h5py.File(self.path, "r")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def _file(self) -> h5py.File:
        if self._f is None:
            self._f = h5py.File(self.path, "r")
        return self._f

    def grid(self, key: str, split: str) -> GridChoice:
        """The grid of ``/<key>/<split>`` that ``protocol`` scores against (see the module docstring)."""
        if (key, split) not in self._choices:
            cat = self._file()[key]
            stored = stored_grid_protocol(cat, split)
            extra = f"voxels_{stored_name(self.protocol)}"
            if stored == self.protocol:
                choice = GridChoice("voxels", stored, True)
            elif extra in cat[split]:
                choice = GridChoice(extra, self.protocol, True)
            else:
                choice = GridChoice("voxels", stored, False)
            self._choices[(key, split)] = choice
        return self._choices[(key, split)]

    def voxels(self, key: str, split: str, start: int, stop: int | None = None) -> torch.Tensor:
        """Grid(s) of objects ``start`` (``stop=None``: (R, R, R)) or ``start:stop`` ((n, R, R, R)), bool."""
        ds = self._file()[key][split][self.grid(key, split).dataset]
        if stop is None:
            return torch.from_numpy(np.asarray(ds[start]).astype(bool))
        return torch.from_numpy(np.asarray(ds[start:stop]).astype(bool))

    def _mesh_offsets(self, key: str, split: str) -> np.ndarray | None:
        if (key, split) not in self._offsets:
            grp = self._file()[key][split]
            self._offsets[(key, split)] = np.asarray(grp[MESH_OFFSETS]) if MESH_OFFSETS in grp else None
        return self._offsets[(key, split)]

    def has_meshes(self, key: str, split: str) -> bool:
        """Whether ``/<key>/<split>`` stores the objects' GT meshes (format v2)."""
        return self._mesh_offsets(key, split) is not None

    def mesh(self, key: str, split: str, index: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """GT mesh of object ``index``: verts (V, 3) float32 in the unit cube, faces (F, 3) int64; None
        when the file stores no meshes."""
        off = self._mesh_offsets(key, split)
        if off is None:
            return None
        grp = self._file()[key][split]
        (v0, f0), (v1, f1) = off[index], off[index + 1]
        verts = np.asarray(grp[MESH_VERTS][v0:v1], dtype=np.float32)
        faces = np.asarray(grp[MESH_FACES][f0:f1], dtype=np.int64)
        if faces.size and (faces.min() < 0 or faces.max() >= len(verts)) or not np.isfinite(verts).all():
            raise DatasetFormatError(f"{self.path}: /{key}/{split}/{MESH_FACES}: the mesh of object {index} has "
                                     f"non-finite vertices or face indices outside [0, {len(verts)})")
        return torch.from_numpy(verts), torch.from_numpy(faces)

    def notes(self) -> list[str]:
        """One line per category and split scored against a grid made under another protocol."""
        return [f"{self.path}: /{key}/{split} has no grid made under protocol {self.protocol!r}; scoring against "
                f"its {c.protocol!r} grid mixes two grids (a perfect prediction scores below 1); rebuild the file "
                f"with python -m pipelines.convert (format v2)"
                for (key, split), c in sorted(self._choices.items()) if not c.matches]

    def describe(self) -> dict[str, Any]:
        """``{"grids": {"<key>/<split>": "<dataset> (<protocol>)"}, "matches": bool}`` of the grids used so far."""
        return {"grids": {f"{k}/{s}": f"{c.dataset} ({c.protocol})" for (k, s), c in sorted(self._choices.items())},
                "matches": all(c.matches for c in self._choices.values())}


def ground_truth_grid(verts: torch.Tensor, faces: torch.Tensor, solid: torch.Tensor, protocol: str = SOFTRAS_IOU
                      ) -> torch.Tensor:
    """The ground-truth grid of a GT mesh under ``protocol``, as our converters store it.

    * ``exact``: ``solid`` itself (cells whose centre lies inside the object).
    * ``softras-iou``: SoftRas's voxelization of the mesh (surface cells + the cells they enclose),
      united with ``solid`` and with the cells the union encloses. For a closed mesh this is SoftRas's
      voxelization, so a perfect prediction scores 1; for a mesh with holes, which SoftRas's flood
      fill leaks through, the interior still counts (the oracle row then shows what the protocol
      loses on that mesh).

    Args:
        verts: (V, 3) float, faces: (F, 3) int: the normalised GT mesh.
        solid: (R, R, R) bool occupancy of the object at the cell centres of ``protocol``'s grid
            (``recon.ops.voxelize.grid_bounds``).
    Returns:
        (R, R, R) bool in our axis order.
    """

    protocol = check_protocol(protocol, "protocol")
    solid = torch.as_tensor(solid, dtype=torch.bool).cpu()
    if protocol == "exact":
        return solid
    surface = voxelize(torch.as_tensor(verts, dtype=torch.float32)[None], torch.as_tensor(faces).long(),
                       solid.shape[0], protocol)[0].cpu()
    return fill_enclosed((surface | solid)[None])[0]
