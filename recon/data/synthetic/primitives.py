"""Convex primitives (boxes, tapered boxes, cylinders/frusta, ellipsoids) as closed, outward-oriented
meshes, and the exact occupancy of a union of them at the voxel centres."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from recon.data.schema import VOXEL_RES

__all__ = ["Part", "rotation", "box", "cyl", "ell", "segment", "ALONG_X", "ALONG_Z", "convex_occupancy"]


def rotation(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Rotation ``Ry(yaw) @ Rx(pitch) @ Rz(roll)`` (radians): local -> world."""
    cy, sy, cp, sp, cr, sr = (math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch),
                              math.cos(roll), math.sin(roll))
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return ry @ rx @ rz


# Axis rotations that turn a primitive's local y axis into world x / z.
ALONG_X = (0.0, 0.0, math.pi / 2)
ALONG_Z = (0.0, math.pi / 2, 0.0)


@dataclass
class Part:
    """One convex primitive in its local frame, placed by ``rot`` (local -> world) and ``pos``.

    kind: "box" (half-extents ``size``; the +y face scaled by ``taper`` = (tx, tz)),
    "cyl" (radii ``size[0], size[2]``, half-height ``size[1]`` along local y, top ring scaled by
    ``taper[0]``; ``segments`` sides), "ell" (ellipsoid with radii ``size``).
    """

    kind: str
    size: np.ndarray
    pos: np.ndarray
    rot: np.ndarray
    taper: tuple[float, float] = (1.0, 1.0)
    segments: int = 16

    def local_mesh(self) -> tuple[np.ndarray, np.ndarray]:
        sx, sy, sz = self.size
        if self.kind == "box":
            tx, tz = self.taper
            v = np.array([[x * sx * (tx if y > 0 else 1), y * sy, z * sz * (tz if y > 0 else 1)]
                          for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
            f = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                          [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
        elif self.kind == "cyl":
            n = self.segments
            t = 2 * math.pi * (np.arange(n) + 0.5) / n
            ring = np.stack([sx * np.cos(t), np.zeros(n), sz * np.sin(t)], 1)
            top = ring * [self.taper[0], 0, self.taper[0]] + [0, sy, 0]
            v = np.concatenate([ring - [0, sy, 0], top, [[0, -sy, 0], [0, sy, 0]]])
            i = np.arange(n)
            j = (i + 1) % n
            f = np.concatenate([np.stack([i, j, n + j], 1), np.stack([i, n + j, n + i], 1),
                                np.stack([np.full(n, 2 * n), j, i], 1),
                                np.stack([np.full(n, 2 * n + 1), n + i, n + j], 1)])
        elif self.kind == "ell":
            n_lat, n_lon = 8, 14
            lat = np.pi * (np.arange(1, n_lat) / n_lat) - np.pi / 2
            lon = 2 * np.pi * np.arange(n_lon) / n_lon
            la, lo = np.meshgrid(lat, lon, indexing="ij")
            ring = np.stack([np.cos(la) * np.cos(lo), np.sin(la), np.cos(la) * np.sin(lo)], -1).reshape(-1, 3)
            v = np.concatenate([ring, [[0, -1, 0], [0, 1, 0]]]) * self.size
            f = []
            for a in range(n_lat - 2):
                for b in range(n_lon):
                    p, q = a * n_lon + b, a * n_lon + (b + 1) % n_lon
                    f += [[p, q, q + n_lon], [p, q + n_lon, p + n_lon]]
            s, nn = len(ring), n_lon * (n_lat - 2)
            for b in range(n_lon):
                f += [[s, (b + 1) % n_lon, b], [s + 1, nn + b, nn + (b + 1) % n_lon]]
            f = np.array(f)
        else:
            raise ValueError(f"unknown primitive kind {self.kind!r}")
        # Orient every face outwards (the primitives are convex and contain their centroid).
        tri = v[f]
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        inward = (normal * (tri.mean(1) - v.mean(0))).sum(1) < 0
        f[inward] = f[inward][:, ::-1]
        return v, f.astype(np.int64)

    def thicken(self, minimum: float) -> None:
        """Grow half-extents below ``minimum / 2`` (world units) so the part stays visible in voxels."""
        self.size = np.maximum(self.size, minimum / 2)


def box(pos, half, yaw=0.0, pitch=0.0, roll=0.0, taper=(1.0, 1.0)) -> Part:
    return Part("box", np.array(half, float), np.array(pos, float), rotation(yaw, pitch, roll), tuple(taper))


def cyl(pos, radius, half_height, rot=(0.0, 0.0, 0.0), taper=1.0, segments=16, rz=None) -> Part:
    return Part("cyl", np.array([radius, half_height, radius if rz is None else rz], float), np.array(pos, float),
                rotation(*rot), (float(taper), 1.0), segments)


def ell(pos, radii, rot=(0.0, 0.0, 0.0)) -> Part:
    return Part("ell", np.array(radii, float), np.array(pos, float), rotation(*rot))


def segment(p0, p1, radius, segments=10, taper=1.0) -> Part:
    """A cylinder from point p0 to p1."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    length = float(np.linalg.norm(d))
    u = d / length
    # Rotation taking local y to u: yaw about y, then pitch about the rotated x.
    pitch = math.acos(max(-1.0, min(1.0, u[1])))
    yaw = math.atan2(u[0], u[2])
    return Part("cyl", np.array([radius, length / 2, radius]), (p0 + p1) / 2, rotation(yaw, pitch, 0.0), (taper, 1.0),
                segments)



def convex_occupancy(meshes: Sequence[tuple[np.ndarray, np.ndarray]], resolution: int = VOXEL_RES,
                     lo: float = -0.5, hi: float = 0.5) -> np.ndarray:
    """Union of convex closed meshes sampled at the cell centres ``lo + (i + 0.5) (hi - lo) / R`` of a
    grid over ``[lo, hi]^3`` (exact half-space tests)."""
    r = resolution
    h = (hi - lo) / r
    c = lo + (np.arange(r) + 0.5) * h
    occ = np.zeros((r, r, r), dtype=bool)
    for v, f in meshes:
        tri = v[f]
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        off = (n * tri[:, 0]).sum(1)
        first = np.clip(np.ceil((v.min(0) - lo) / h - 0.5), 0, r).astype(int)  # cells whose centre is in the box
        last = np.clip(np.floor((v.max(0) - lo) / h - 0.5), -1, r - 1).astype(int)
        if (last < first).any():
            continue
        box = tuple(slice(a, b + 1) for a, b in zip(first, last))
        gx, gy, gz = np.meshgrid(c[box[0]], c[box[1]], c[box[2]], indexing="ij")
        pts = np.stack([gx, gy, gz], -1)
        inside = (pts.reshape(-1, 3) @ n.T - off <= 1e-9).all(1).reshape(gx.shape)
        occ[box] |= inside
    return occ


