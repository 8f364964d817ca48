"""One synthetic object: its parts normalised like ShapeNet, its mesh and exact voxels, its colour
and its 24 stored views, and its ground-truth grids under both 3D-IoU protocols. Deterministic per
``(seed, category, index)``."""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch

from recon.data.normalize import unit_cube_transform
from recon.data.raster import render_views
from recon.data.schema import VOXEL_RES
from recon.data.synthetic.primitives import convex_occupancy, rotation
from recon.data.synthetic.shapes import BUILDERS, CATEGORIES
from recon.ops.voxelize import PROTOCOLS, grid_bounds
from recon.data.ground_truth import ground_truth_grid

__all__ = ["MARGIN", "MIN_THICKNESS", "make_parts", "make_object", "render_object", "object_record"]

MARGIN = 0.02
MIN_THICKNESS = 1.5 / VOXEL_RES


def _rng(category_key: str, index: int, seed: int) -> np.random.Generator:
    key = int(category_key) if category_key.isdigit() else zlib.crc32(category_key.encode())
    return np.random.default_rng([int(seed), key, int(index)])


def make_parts(category_key: str, index: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """The object's primitives as separate closed convex meshes, already normalised.

    Returns:
        list of (verts (V_p, 3) float64, faces (F_p, 3) int64), outward oriented.
    """
    if category_key not in BUILDERS:
        raise ValueError(f"unknown synthetic category {category_key!r}; "
                         f"known: {', '.join(f'{k} ({v})' for k, v in CATEGORIES.items())}")
    rng = _rng(category_key, index, seed)
    parts = BUILDERS[category_key](rng)
    yaw = rotation(rng.uniform(-1.0, 1.0) * math.radians(8.0))

    def world() -> list[np.ndarray]:
        return [(p.local_mesh()[0] @ p.rot.T + p.pos) @ yaw.T for p in parts]

    for _ in range(2):  # thickening changes the extent slightly: normalise twice
        _, scale = unit_cube_transform(np.concatenate(world()), MARGIN)
        for p in parts:
            p.thicken(MIN_THICKNESS / scale)
    verts = world()
    centre, scale = unit_cube_transform(np.concatenate(verts), MARGIN)
    return [((v - centre) * scale, p.local_mesh()[1]) for p, v in zip(parts, verts)]


def make_object(category_key: str, index: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic object.

    Args:
        category_key: a key of ``CATEGORIES`` (ShapeNet synset id).
        index: object index (``SPLIT_OFFSET[split] + i`` in built datasets).
        seed: dataset seed.
    Returns:
        verts (V, 3) float32 in ``[-0.5, 0.5]^3``, faces (F, 3) int64 (a union of closed,
        outward-oriented convex parts), voxels (32, 32, 32) bool in our axis order (exact
        centre sampling of the union).
    """
    meshes = make_parts(category_key, index, seed)
    return (*_merge_parts(meshes), convex_occupancy(meshes))


def _merge_parts(meshes: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """One mesh from parts: verts (V, 3) float32, faces (F, 3) int64 re-indexed."""
    verts, faces, base = [], [], 0
    for v, f in meshes:
        verts.append(v)
        faces.append(f + base)
        base += len(v)
    return np.concatenate(verts).astype(np.float32), np.concatenate(faces).astype(np.int64)


def _object_colour(category_key: str, index: int, seed: int) -> tuple[float, float, float]:
    rng = np.random.default_rng([int(seed), 7, zlib.crc32(category_key.encode()), int(index)])
    h, s, v = rng.random(), rng.uniform(0.2, 0.7), rng.uniform(0.6, 0.95)
    k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
    return tuple(float(x) for x in v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1))


def render_object(category_key: str, index: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images and voxels of one object as stored: ``(24, 4, 64, 64) uint8``, ``(32, 32, 32) bool``."""
    verts, faces, voxels = make_object(category_key, index, seed)
    images = render_views(verts, faces, colour=_object_colour(category_key, index, seed), cull_backfaces=True)
    return images, voxels


def object_record(category_key: str, index: int, seed: int = 0
                  ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Everything a format-v2 file stores of one object.

    Returns:
        images (24, 4, 64, 64) uint8; grids ``{protocol: (32, 32, 32) bool}`` for every protocol of
        ``recon.ops.voxelize.PROTOCOLS`` (``recon.data.ground_truth.ground_truth_grid`` of the mesh,
        the solid being the union of the convex parts sampled at that protocol's cell centres; the
        ``exact`` grid is the v1 grid, ``make_object``'s voxels); verts (V, 3) float32, faces (F, 3) int64.
    """
    meshes = make_parts(category_key, index, seed)
    verts_a, faces_a = _merge_parts(meshes)
    grids = {}
    for protocol in PROTOCOLS:
        solid = convex_occupancy(meshes, VOXEL_RES, *grid_bounds(protocol, VOXEL_RES))
        grids[protocol] = ground_truth_grid(torch.from_numpy(verts_a), torch.from_numpy(faces_a),
                                            torch.from_numpy(solid), protocol).numpy()
    images = render_views(verts_a, faces_a, colour=_object_colour(category_key, index, seed), cull_backfaces=True)
    return images, grids, verts_a, faces_a
