"""Mesh utilities: template icosphere, topology for the Laplacian / flatten losses,
normalisation into the unit cube and Wavefront .obj I/O.

All functions work on plain tensors: ``verts (V, 3)`` / ``(B, V, 3)`` float, ``faces (F, 3)`` long.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from recon.io import atomic_write_bytes

__all__ = [
    "TEMPLATE_PATH",
    "icosphere",
    "load_template",
    "load_obj",
    "save_obj",
    "edges_with_opposite_vertices",
    "uniform_laplacian",
    "voxels_to_mesh",
]

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "assets" / "sphere_642.obj"


def icosphere(subdivisions: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit icosphere; ``subdivisions=3`` gives 642 vertices and 1280 faces.

    A fixed generic rotation is applied so that no vertex coordinate is exactly zero (the
    SoftRas decoder works on ``sign(v) * sigmoid(logit|v| + offset)``, which would pin a zero
    coordinate forever). Faces are oriented outwards (counter-clockwise seen from outside).

    Returns:
        verts: (V, 3) float32, faces: (F, 3) int64.
    """
    t = (1.0 + math.sqrt(5.0)) / 2.0
    verts = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t), (0, -1, -t), (0, 1, -t),
             (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]
    verts = [np.array(v, dtype=np.float64) / np.linalg.norm(v) for v in verts]
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
             (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5),
             (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    for _ in range(subdivisions):
        cache: dict[tuple[int, int], int] = {}

        def midpoint(i: int, j: int) -> int:
            key = (min(i, j), max(i, j))
            if key not in cache:
                m = verts[i] + verts[j]
                verts.append(m / np.linalg.norm(m))
                cache[key] = len(verts) - 1
            return cache[key]

        new_faces = []
        for a, b, c in faces:
            ab, bc, ca = midpoint(a, b), midpoint(b, c), midpoint(c, a)
            new_faces += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new_faces
    v = np.stack(verts)
    # Generic rotation (Rodrigues, axis (1, 2, 3), 0.3 rad) so no coordinate is exactly 0.
    axis = np.array([1.0, 2.0, 3.0]) / math.sqrt(14.0)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + math.sin(0.3) * k + (1 - math.cos(0.3)) * k @ k
    v = v @ rot.T
    return torch.tensor(v, dtype=torch.float32), torch.tensor(faces, dtype=torch.int64)


def load_obj(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Read vertices and (triangulated, fan) faces of a Wavefront .obj file.

    Returns:
        verts: (V, 3) float32, faces: (F, 3) int64 (0-based).
    Raises:
        ValueError: naming the file and line when the file is malformed.
    """
    verts, faces = [], []
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                if parts[0] == "v":
                    verts.append([float(x) for x in parts[1:4]])
                elif parts[0] == "f":
                    idx = [int(p.split("/")[0]) for p in parts[1:]]
                    idx = [i - 1 if i > 0 else len(verts) + i for i in idx]
                    for k in range(1, len(idx) - 1):
                        faces.append([idx[0], idx[k], idx[k + 1]])
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: cannot parse {parts[0]!r} line: {e}") from None
    if not verts or not faces:
        raise ValueError(f"{path}: expected vertices and faces, found {len(verts)} vertices, {len(faces)} faces")
    v = torch.tensor(verts, dtype=torch.float32)
    fc = torch.tensor(faces, dtype=torch.int64)
    if fc.min() < 0 or fc.max() >= len(v):
        raise ValueError(f"{path}: face index out of range [1, {len(v)}]")
    return v, fc


def save_obj(path: str | os.PathLike, verts: torch.Tensor, faces: torch.Tensor) -> None:
    """Write a triangle mesh as .obj atomically. ``verts: (V, 3)``, ``faces: (F, 3)`` 0-based."""
    v = verts.detach().cpu().double().numpy()
    fc = faces.detach().cpu().numpy() + 1
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in v] + [f"f {a} {b} {c}" for a, b, c in fc]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


def load_template(path: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The 642-vertex / 1280-face template sphere (``assets/sphere_642.obj``)."""
    return load_obj(path or TEMPLATE_PATH)


def edges_with_opposite_vertices(faces: torch.Tensor) -> torch.Tensor:
    """Interior edges of a closed manifold mesh with the two opposite vertices.

    Args:
        faces: (F, 3) int64.
    Returns:
        (E, 4) int64 rows ``(v0, v1, v2, v3)``: edge ``v0-v1`` shared by faces ``(v0, v1, v2)``
        and ``(v0, v1, v3)`` (up to orientation). Edges with one face are skipped.
    """
    f = faces.tolist()
    seen: dict[tuple[int, int], int] = {}
    rows = []
    for a, b, c in f:
        for u, v, w in ((a, b, c), (b, c, a), (c, a, b)):
            key = (min(u, v), max(u, v))
            if key in seen:
                rows.append([key[0], key[1], seen.pop(key), w])
            else:
                seen[key] = w
    return torch.tensor(rows, dtype=torch.int64).reshape(-1, 4)


def uniform_laplacian(num_verts: int, faces: torch.Tensor) -> torch.Tensor:
    """Row-normalised uniform Laplacian ``L = A / deg - I`` (SoftRas ``LaplacianLoss``).

    Returns:
        (V, V) float32 dense matrix; ``(L @ x)[i] = mean of neighbours - x[i]``.
    """
    adj = torch.zeros(num_verts, num_verts)
    for i, j in ((0, 1), (1, 2), (2, 0)):
        adj[faces[:, i], faces[:, j]] = 1.0
        adj[faces[:, j], faces[:, i]] = 1.0
    deg = adj.sum(1, keepdim=True).clamp_min(1.0)
    return adj / deg - torch.eye(num_verts)


def voxels_to_mesh(voxels: torch.Tensor, lo: float = -0.5, hi: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed surface of the occupied cells of a grid: one quad (two triangles) per face shared
    by an occupied and an empty cell, outward oriented. Uses the voxel axis order of the HDF5
    format: ``voxels[i, j, k]`` spans ``x in [lo + i h, lo + (i+1) h]`` etc., ``h = (hi-lo)/R``.

    Args:
        voxels: (R, R, R) bool.
    Returns:
        verts: (V, 3) float32, faces: (F, 3) int64 (empty tensors for an empty grid).
    """
    occ = np.pad(np.asarray(voxels.cpu() if isinstance(voxels, torch.Tensor) else voxels, dtype=bool), 1)
    res = occ.shape[0] - 2
    h = (hi - lo) / res
    quads = []
    # For each axis and direction, cells that are occupied while their neighbour is empty.
    unit = np.eye(3, dtype=np.int64)
    for axis in range(3):
        u, w = unit[(axis + 1) % 3], unit[(axis + 2) % 3]
        for d in (1, -1):
            nb = np.roll(occ, -d, axis=axis)
            idx = np.argwhere(occ & ~nb) - 1  # cell indices in the unpadded grid
            if len(idx) == 0:
                continue
            base = idx + (unit[axis] if d == 1 else 0)
            corners = np.stack([base, base + u, base + u + w, base + w], axis=1)  # (n, 4, 3)
            if d == -1:
                corners = corners[:, ::-1]
            quads.append(corners)
    if not quads:
        return torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.int64)
    q = np.concatenate(quads).reshape(-1, 3)
    uniq, inverse = np.unique(q, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1, 4)
    faces = np.concatenate([inverse[:, [0, 1, 2]], inverse[:, [0, 2, 3]]])
    verts = lo + uniq.astype(np.float32) * h
    return torch.tensor(verts, dtype=torch.float32), torch.tensor(faces, dtype=torch.int64)
