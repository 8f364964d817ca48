"""The embedded default dataset: procedural ShapeNet-like categories built from primitives.

Every object is a union of closed, convex primitive meshes (boxes and tapered boxes,
cylinders/frusta, ellipsoids) arranged with category-specific structure and random
proportions, part counts and part kinds:

* chair: seat + back (solid or slatted, tilted) + four legs / pedestal with star feet / side
  panels, sometimes arms;
* table: rectangular or round top + four legs / pedestal / trestle panels, sometimes a shelf;
* airplane: fuselage (cylinder + cones, or ellipsoid) + swept wings (low/mid/high, dihedral) +
  tailplane + fin, sometimes engines;
* car: body + cabin (sedan / van / pickup / sports) + four wheels, sometimes a spoiler;
* lamp: base + pole + shade (frustum / dome / sphere), or an arm lamp whose arm points in a
  random direction;
* bench: long seat + 4-6 legs / end panels, sometimes a slatted or solid back and arms;
* sofa, watercraft: optional extra categories (not in the default set).

Frame (ShapeNet-like, kept fixed up to a small random yaw of at most 8 degrees): up is +y,
objects face -z (the side seen from view 0), long axes of cars/airplanes/boats run along z.
Each object is normalised like ShapeNet: bounding box centred at the origin, longest side
``1 - MARGIN``; parts thinner than ``MIN_THICKNESS`` (1.5 voxels) after normalisation are
thickened so that every part is represented in the 32^3 grid.

Voxels are exact: a cell is occupied when its centre lies inside at least one primitive,
tested analytically as the intersection of the primitive mesh's face half-spaces (all
primitives are convex polytopes), so the grid is exactly the centre sampling of the rendered
geometry. Objects are deterministic per ``(seed, category, index)``; the index of split
``s`` object ``i`` is ``SPLIT_OFFSET[s] + i``, so changing the train size never changes the
val/test objects.
"""

from __future__ import annotations

import math
import os
import zlib
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from recon.data.schema import SPLITS, VOXEL_RES, DatasetInfo, DatasetWriter, validate

__all__ = [
    "CATEGORIES",
    "DEFAULT_CATEGORIES",
    "SPLIT_OFFSET",
    "MARGIN",
    "MIN_THICKNESS",
    "make_parts",
    "make_object",
    "render_object",
    "build_synthetic",
    "resolve_categories",
    "split_sizes",
]

CATEGORIES: dict[str, str] = {
    "03001627": "chair",
    "04379243": "table",
    "02691156": "airplane",
    "02958343": "car",
    "03636649": "lamp",
    "02828884": "bench",
    "04256520": "sofa",
    "04530566": "watercraft",
}
DEFAULT_CATEGORIES = ("03001627", "04379243", "02691156", "02958343", "03636649", "02828884")
SPLIT_OFFSET = {"train": 0, "val": 1_000_000, "test": 2_000_000}
MARGIN = 0.02
MIN_THICKNESS = 1.5 / VOXEL_RES


# ----------------------------------------------------------------------------------------------
# Primitives
# ----------------------------------------------------------------------------------------------

def _rot(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Rotation ``Ry(yaw) @ Rx(pitch) @ Rz(roll)`` (radians): local -> world."""
    cy, sy, cp, sp, cr, sr = (math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch),
                              math.cos(roll), math.sin(roll))
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return ry @ rx @ rz


# Axis rotations that turn a primitive's local y axis into world x / z.
_ALONG_X = (0.0, 0.0, math.pi / 2)
_ALONG_Z = (0.0, math.pi / 2, 0.0)


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


def _box(pos, half, yaw=0.0, pitch=0.0, roll=0.0, taper=(1.0, 1.0)) -> Part:
    return Part("box", np.array(half, float), np.array(pos, float), _rot(yaw, pitch, roll), tuple(taper))


def _cyl(pos, radius, half_height, rot=(0.0, 0.0, 0.0), taper=1.0, segments=16, rz=None) -> Part:
    return Part("cyl", np.array([radius, half_height, radius if rz is None else rz], float), np.array(pos, float),
                _rot(*rot), (float(taper), 1.0), segments)


def _ell(pos, radii, rot=(0.0, 0.0, 0.0)) -> Part:
    return Part("ell", np.array(radii, float), np.array(pos, float), _rot(*rot))


def _segment(p0, p1, radius, segments=10, taper=1.0) -> Part:
    """A cylinder from point p0 to p1."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    length = float(np.linalg.norm(d))
    u = d / length
    # Rotation taking local y to u: yaw about y, then pitch about the rotated x.
    pitch = math.acos(max(-1.0, min(1.0, u[1])))
    yaw = math.atan2(u[0], u[2])
    return Part("cyl", np.array([radius, length / 2, radius]), (p0 + p1) / 2, _rot(yaw, pitch, 0.0), (taper, 1.0),
                segments)


# ----------------------------------------------------------------------------------------------
# Categories (each returns parts in arbitrary units; objects face -z, up +y)
# ----------------------------------------------------------------------------------------------

def _legs(rng, w, d, h, thick, round_legs, inset, splay=0.0, n=4) -> list[Part]:
    """n legs (4 or 6) from y=0 up to y=h under a w x d rectangle, optionally splayed outwards."""
    xs = [-w / 2 + inset, w / 2 - inset] if n == 4 else [-w / 2 + inset, 0.0, w / 2 - inset]
    parts = []
    for x in xs:
        for z in (-d / 2 + inset, d / 2 - inset):
            top = np.array([x, h, z])
            bottom = np.array([x * (1 + splay), 0.0, z * (1 + splay)])
            if round_legs:
                parts.append(_segment(bottom, top, thick / 2, 10, taper=rng.uniform(0.8, 1.2)))
            elif splay == 0:
                parts.append(_box((top + bottom) / 2, (thick / 2, h / 2, thick / 2)))
            else:
                parts.append(_segment(bottom, top, thick / 2, 4))
    return parts


def _chair(rng: np.random.Generator) -> list[Part]:
    w, d = rng.uniform(0.4, 0.6), rng.uniform(0.38, 0.58)
    t = rng.uniform(0.035, 0.09)
    h = rng.uniform(0.33, 0.5)
    parts = [_box((0, h + t / 2, 0), (w / 2, t / 2, d / 2))]
    style = rng.choice(["legs", "legs", "legs", "pedestal", "panels"])
    if style == "legs":
        parts += _legs(rng, w, d, h, rng.uniform(0.03, 0.065), rng.random() < 0.4, rng.uniform(0.0, 0.05),
                       splay=rng.choice([0.0, rng.uniform(0.05, 0.2)]))
        if rng.random() < 0.35:  # stretchers between the legs
            y = rng.uniform(0.1, 0.25) * h
            parts += [_box((x, y, 0), (0.015, 0.015, d / 2 - 0.02)) for x in (-w / 2 + 0.03, w / 2 - 0.03)]
    elif style == "pedestal":
        r = rng.uniform(0.025, 0.05)
        parts.append(_cyl((0, h / 2 + 0.03, 0), r, h / 2 - 0.02, segments=12))
        feet = int(rng.integers(4, 6))
        reach = rng.uniform(0.22, 0.32)
        for k in range(feet):
            a = 2 * math.pi * k / feet + math.pi / feet
            parts.append(_box((math.sin(a) * reach / 2, 0.03, math.cos(a) * reach / 2), (0.02, 0.03, reach / 2),
                              yaw=a))
    else:
        pt = rng.uniform(0.03, 0.06)
        parts += [_box((x, h / 2, 0), (pt / 2, h / 2, d / 2 * rng.uniform(0.8, 1.0)))
                  for x in (-w / 2 + pt / 2, w / 2 - pt / 2)]
    # Back, tilted backwards (towards +z) about its bottom edge.
    bh = rng.uniform(0.3, 0.6)
    bt = rng.uniform(0.03, 0.08)
    tilt = rng.uniform(0.0, 0.3)
    bw = w * rng.uniform(0.8, 1.0)
    base = np.array([0, h + t, d / 2 - bt / 2])
    up = np.array([0, math.cos(tilt), math.sin(tilt)])
    if rng.random() < 0.3:  # slats + top rail
        n = int(rng.integers(2, 5))
        rail = rng.uniform(0.05, 0.12)
        for k in range(n):
            x = -bw / 2 + (k + 0.5) * bw / n
            parts.append(_box(base + up * (bh - rail) / 2 + [x, 0, 0], (bw / n * 0.3, (bh - rail) / 2, bt / 2),
                              pitch=tilt))
        parts.append(_box(base + up * (bh - rail / 2), (bw / 2, rail / 2, bt / 2), pitch=tilt))
    else:
        taper = rng.uniform(0.75, 1.1)
        parts.append(_box(base + up * bh / 2, (bw / 2, bh / 2, bt / 2), pitch=tilt, taper=(taper, 1.0)))
    if rng.random() < 0.3:  # arms
        ah = rng.uniform(0.15, 0.25)
        for x in (-w / 2, w / 2):
            parts.append(_box((x, h + t + ah, 0), (0.03, 0.02, d / 2 * 0.9)))
            parts.append(_box((x, h + t + ah / 2, -d / 2 + 0.05), (0.02, ah / 2, 0.02)))
    return parts


def _table(rng: np.random.Generator) -> list[Part]:
    low = rng.random() < 0.2
    h = rng.uniform(0.3, 0.45) if low else rng.uniform(0.55, 0.8)
    t = rng.uniform(0.03, 0.08)
    parts = []
    if rng.random() < 0.3:  # round
        r = rng.uniform(0.35, 0.6)
        parts.append(_cyl((0, h - t / 2, 0), r, t / 2, segments=24))
        w = d = r * math.sqrt(2)
        style = rng.choice(["pedestal", "pedestal", "legs"])
    else:
        w, d = rng.uniform(0.8, 1.6), rng.uniform(0.45, 0.9)
        parts.append(_box((0, h - t / 2, 0), (w / 2, t / 2, d / 2)))
        style = rng.choice(["legs", "legs", "legs", "trestle", "pedestal"])
    if style == "legs":
        inset = rng.uniform(0.02, 0.1) * min(w, d)
        parts += _legs(rng, w, d, h - t, rng.uniform(0.04, 0.08), rng.random() < 0.4, inset)
        if rng.random() < 0.3:  # shelf
            parts.append(_box((0, rng.uniform(0.1, 0.3) * h, 0), (w / 2 - inset, 0.015, d / 2 - inset)))
        elif rng.random() < 0.4:  # apron
            parts.append(_box((0, h - t - 0.04, 0), (w / 2 - inset, 0.04, d / 2 - inset)))
    elif style == "trestle":
        pt = rng.uniform(0.04, 0.08)
        for x in (-w / 2 + 0.1 * w, w / 2 - 0.1 * w):
            parts.append(_box((x, (h - t) / 2, 0), (pt / 2, (h - t) / 2, d / 2 * rng.uniform(0.6, 0.95))))
        if rng.random() < 0.6:
            parts.append(_box((0, rng.uniform(0.15, 0.4) * h, 0), (0.4 * w, 0.03, 0.03)))
    else:
        r = rng.uniform(0.04, 0.1)
        parts.append(_cyl((0, (h - t) / 2, 0), r, (h - t) / 2, segments=14, taper=rng.uniform(0.6, 1.0)))
        if rng.random() < 0.5:
            parts.append(_cyl((0, 0.02, 0), rng.uniform(0.2, 0.35) * max(w, d), 0.02, segments=20))
        else:
            reach = rng.uniform(0.5, 0.8) * max(w, d)
            for a in (math.pi / 4, 3 * math.pi / 4):
                parts.append(_box((0, 0.025, 0), (0.03, 0.025, reach / 2), yaw=a))
    return parts


def _airplane(rng: np.random.Generator) -> list[Part]:
    length = 1.0
    r = rng.uniform(0.045, 0.09)
    parts = []
    if rng.random() < 0.3:
        parts.append(_ell((0, 0, 0), (r * 1.1, r * 1.1, length / 2)))
    else:
        body = length * rng.uniform(0.55, 0.7)
        nose = length * rng.uniform(0.08, 0.15)
        tail = length - body - nose
        z0 = -length / 2
        parts.append(_cyl((0, 0, z0 + nose / 2), r, nose / 2, rot=(0, -math.pi / 2, 0),
                          taper=rng.uniform(0.15, 0.4), segments=14))
        parts.append(_cyl((0, 0, z0 + nose + body / 2), r, body / 2, rot=_ALONG_Z, segments=14))
        parts.append(_cyl((0, r * 0.3, z0 + nose + body + tail / 2), r, tail / 2, rot=_ALONG_Z,
                          taper=rng.uniform(0.2, 0.5), segments=14))
    span = rng.uniform(0.7, 1.25)
    chord = rng.uniform(0.12, 0.28)
    sweep = rng.uniform(0.0, 0.6)
    dihedral = rng.uniform(-0.05, 0.12)
    wy = rng.choice([-0.6, 0.0, 0.7]) * r
    wz = rng.uniform(-0.12, 0.08)
    tip = rng.uniform(0.3, 1.0)
    tz = length / 2 - rng.uniform(0.05, 0.1)
    tspan = rng.uniform(0.25, 0.45)
    tchord = rng.uniform(0.08, 0.14)
    for root, half_span, half_chord, taper in (((0, wy, wz), span / 4, chord / 2, tip),
                                                ((0, r * 0.4, tz), tspan / 4, tchord / 2, 0.6)):
        for s in (-1, 1):
            # Local y is the span (root -> tip), local x the thickness, local z the chord.
            wing = _box((0, 0, 0), (0.01, half_span, half_chord), yaw=-s * sweep, roll=s * (-math.pi / 2 + dihedral),
                        taper=(1.0, taper))
            wing.pos = np.asarray(root, float) + wing.rot @ np.array([0.0, half_span, 0.0])
            parts.append(wing)
    fh = rng.uniform(0.1, 0.22)
    parts.append(_box((0, r * 0.5 + fh / 2, tz - 0.02), (0.01, fh / 2, rng.uniform(0.05, 0.09)), pitch=0.35,
                      taper=(1.0, rng.uniform(0.4, 0.9))))
    if rng.random() < 0.55:
        n = 1 if rng.random() < 0.7 else 2
        er = rng.uniform(0.025, 0.045)
        for k in range(n):
            ex = (0.3 + 0.4 * k / max(n, 1)) * span / 2 * rng.uniform(0.8, 1.0)
            for s in (-1, 1):
                parts.append(_cyl((s * ex, wy - er * 1.6, wz + ex * math.tan(sweep) - chord * 0.4), er,
                                  rng.uniform(0.06, 0.1), rot=_ALONG_Z, segments=12))
    return parts


def _car(rng: np.random.Generator) -> list[Part]:
    kind = rng.choice(["sedan", "sedan", "van", "pickup", "sports"])
    length = 1.0
    w = rng.uniform(0.4, 0.5)
    wr = rng.uniform(0.07, 0.11)
    clear = wr * rng.uniform(0.5, 0.9)
    bh = {"sports": rng.uniform(0.08, 0.12), "van": rng.uniform(0.16, 0.22)}.get(kind, rng.uniform(0.12, 0.18))
    parts = [_box((0, clear + bh / 2, 0), (w / 2, bh / 2, length / 2), taper=(rng.uniform(0.85, 1.0), 1.0))]
    ch = {"sports": rng.uniform(0.07, 0.1), "van": rng.uniform(0.18, 0.26)}.get(kind, rng.uniform(0.1, 0.16))
    if kind == "van":
        cl, cz = length * rng.uniform(0.7, 0.85), rng.uniform(0.0, 0.08)
    elif kind == "pickup":
        cl, cz = length * rng.uniform(0.25, 0.35), -rng.uniform(0.1, 0.2)
    else:
        cl, cz = length * rng.uniform(0.4, 0.55), rng.uniform(-0.05, 0.1)
    parts.append(_box((0, clear + bh + ch / 2, cz), (w / 2 * rng.uniform(0.85, 0.95), ch / 2, cl / 2),
                      taper=(rng.uniform(0.8, 0.95), rng.uniform(0.55, 0.9))))
    ww = rng.uniform(0.05, 0.08)
    wz = length / 2 * rng.uniform(0.6, 0.75)
    for z in (-wz, wz):
        for s in (-1, 1):
            parts.append(_cyl((s * (w / 2 - ww / 2 + 0.01), wr, z), wr, ww / 2, rot=_ALONG_X, segments=14))
    if kind == "sports" and rng.random() < 0.5 or rng.random() < 0.1:
        sz = length / 2 - 0.05
        parts.append(_box((0, clear + bh + 0.06, sz), (w / 2 * 0.9, 0.01, 0.04)))
        parts += [_box((x, clear + bh + 0.03, sz), (0.012, 0.03, 0.015)) for x in (-w / 3, w / 3)]
    return parts


def _lamp(rng: np.random.Generator) -> list[Part]:
    kind = rng.choice(["desk", "floor", "arm", "arm"])
    height = rng.uniform(1.0, 1.6) if kind == "floor" else rng.uniform(0.35, 0.7)
    base_r = rng.uniform(0.08, 0.18) * (1.5 if kind == "floor" else 1.0)
    bt = rng.uniform(0.02, 0.05)
    if rng.random() < 0.7:
        parts = [_cyl((0, bt / 2, 0), base_r, bt / 2, segments=20, taper=rng.uniform(0.7, 1.0))]
    else:
        parts = [_box((0, bt / 2, 0), (base_r, bt / 2, base_r * rng.uniform(0.6, 1.0)))]
    pr = rng.uniform(0.012, 0.025) * max(height, 0.6)
    shade_r = rng.uniform(0.1, 0.22) * (1.3 if kind == "floor" else 1.0)
    shade_h = shade_r * rng.uniform(0.6, 1.4)
    if kind in ("desk", "floor"):
        parts.append(_cyl((0, bt + height / 2, 0), pr, height / 2, segments=10))
        top = bt + height
        shape = rng.choice(["frustum", "frustum", "dome", "sphere"])
        if shape == "frustum":
            parts.append(_cyl((0, top - shade_h * 0.2, 0), shade_r, shade_h / 2, taper=rng.uniform(0.4, 0.85),
                              segments=20))
        elif shape == "dome":
            parts.append(_cyl((0, top, 0), shade_r, shade_h / 3, taper=rng.uniform(0.1, 0.3), segments=20))
        else:
            parts.append(_ell((0, top, 0), (shade_r * 0.8,) * 3))
    else:
        # Arm lamp: a pole, then an arm in a random horizontal direction, shade at its end.
        a = rng.uniform(0, 2 * math.pi)
        direction = np.array([math.sin(a), 0.0, math.cos(a)])
        p0 = np.array([0.0, bt, 0.0])
        p1 = p0 + [0.0, height * rng.uniform(0.5, 0.8), 0.0]
        p1 = p1 - direction * rng.uniform(0.0, 0.15)
        reach = rng.uniform(0.25, 0.5)
        p2 = p1 + direction * reach + [0.0, rng.uniform(-0.05, 0.2), 0.0]
        parts += [_segment(p0, p1, pr, 10), _segment(p1, p2, pr, 10), _ell(p1, (pr * 1.5,) * 3)]
        tip = p2 + direction * shade_h * 0.3
        shade = _segment(tip + [0, shade_h * 0.6, 0] - direction * shade_h * 0.2, tip - [0, shade_h * 0.3, 0],
                         shade_r * 0.35, 16, taper=2.2)
        parts.append(shade)
    return parts


def _bench(rng: np.random.Generator) -> list[Part]:
    w, d = rng.uniform(1.0, 1.8), rng.uniform(0.3, 0.5)
    h, t = rng.uniform(0.35, 0.5), rng.uniform(0.03, 0.08)
    parts = []
    if rng.random() < 0.3:  # slatted seat
        n = int(rng.integers(3, 6))
        for k in range(n):
            z = -d / 2 + (k + 0.5) * d / n
            parts.append(_box((0, h + t / 2, z), (w / 2, t / 2, d / n * 0.38)))
    else:
        parts.append(_box((0, h + t / 2, 0), (w / 2, t / 2, d / 2)))
    style = rng.choice(["legs", "legs", "panels"])
    if style == "legs":
        parts += _legs(rng, w, d, h, rng.uniform(0.04, 0.07), rng.random() < 0.3, rng.uniform(0.02, 0.12),
                       n=6 if w > 1.5 and rng.random() < 0.6 else 4)
    else:
        pt = rng.uniform(0.04, 0.08)
        for x in (-w / 2 + pt / 2 + rng.uniform(0, 0.1), w / 2 - pt / 2 - rng.uniform(0, 0.1)):
            parts.append(_box((x, h / 2, 0), (pt / 2, h / 2, d / 2)))
    if rng.random() < 0.5:  # back
        bh = rng.uniform(0.25, 0.45)
        tilt = rng.uniform(0.0, 0.3)
        base = np.array([0, h + t, d / 2 - 0.03])
        up = np.array([0, math.cos(tilt), math.sin(tilt)])
        if rng.random() < 0.5:
            parts.append(_box(base + up * bh / 2, (w / 2, bh / 2, 0.025), pitch=tilt))
        else:
            n = int(rng.integers(2, 4))
            for k in range(n):
                parts.append(_box(base + up * bh * (k + 0.7) / n, (w / 2, bh / n * 0.25, 0.02), pitch=tilt))
            parts += [_box(base + up * bh / 2 + [x, 0, 0], (0.025, bh / 2, 0.025), pitch=tilt)
                      for x in (-w / 2 + 0.05, w / 2 - 0.05)]
        if rng.random() < 0.5:  # arms
            for x in (-w / 2 + 0.02, w / 2 - 0.02):
                parts.append(_box((x, h + t + 0.18, 0), (0.025, 0.02, d / 2)))
                parts.append(_box((x, h + t + 0.09, -d / 2 + 0.04), (0.02, 0.09, 0.02)))
    return parts


def _sofa(rng: np.random.Generator) -> list[Part]:
    w, d = rng.uniform(1.2, 2.0), rng.uniform(0.6, 0.9)
    sh = rng.uniform(0.15, 0.25)
    leg = rng.choice([0.0, rng.uniform(0.04, 0.1)])
    parts = [_box((0, leg + sh / 2, 0), (w / 2, sh / 2, d / 2))]
    if leg > 0:
        parts += _legs(rng, w, d, leg, 0.04, rng.random() < 0.5, 0.05)
    bt = rng.uniform(0.12, 0.22)
    bh = rng.uniform(0.3, 0.5)
    parts.append(_box((0, leg + sh + bh / 2 - 0.02, d / 2 - bt / 2), (w / 2, bh / 2, bt / 2),
                      pitch=rng.uniform(0, 0.2)))
    n = int(rng.integers(1, 4))
    cw = (w - 0.3) / n
    for k in range(n):
        parts.append(_box((-w / 2 + 0.15 + (k + 0.5) * cw, leg + sh + 0.04, -bt / 2),
                          (cw / 2 * 0.95, 0.045, (d - bt) / 2 * 0.95)))
    arms = rng.random()
    if arms < 0.8:
        ah = rng.uniform(0.1, 0.28)
        aw = rng.uniform(0.08, 0.2)
        for s in (-1, 1):
            if rng.random() < 0.5:
                parts.append(_box((s * (w / 2 - aw / 2), leg + sh + ah / 2, 0), (aw / 2, ah / 2, d / 2)))
            else:
                parts.append(_cyl((s * (w / 2 - aw / 2), leg + sh + ah / 2, 0), aw / 2 + 0.02, d / 2, rot=_ALONG_Z,
                                  segments=14, rz=ah / 2 + 0.05))
    if rng.random() < 0.2:  # chaise: an L extension towards the front on one side
        s = rng.choice([-1, 1])
        ext = rng.uniform(0.4, 0.7)
        parts.append(_box((s * (w / 2 - 0.3), leg + sh / 2, -d / 2 - ext / 2), (0.3, sh / 2, ext / 2)))
    return parts


def _watercraft(rng: np.random.Generator) -> list[Part]:
    length = 1.0
    w = rng.uniform(0.18, 0.32)
    hh = rng.uniform(0.08, 0.15)
    body = length * rng.uniform(0.65, 0.8)
    bow = length - body
    parts = [_box((0, hh / 2, length / 2 - body / 2), (w / 2 * 0.75, hh / 2, body / 2), taper=(1.33, 1.0)),
             Part("box", np.array([w / 2 * 0.75, bow / 2, hh / 2]), np.array([0, hh / 2, -length / 2 + bow / 2]),
                  _rot(0, -math.pi / 2, 0), (0.08, 1.0))]
    if rng.random() < 0.4:  # sailboat
        mh = rng.uniform(0.5, 0.9)
        mz = rng.uniform(-0.2, 0.0)
        parts.append(_cyl((0, hh + mh / 2, mz), 0.012, mh / 2, segments=8))
        parts.append(_box((0, hh + mh * 0.55, mz + 0.15), (0.008, mh * 0.42, 0.15), taper=(1.0, 0.1)))
    else:
        n = int(rng.integers(1, 4))
        y, cl, cw = hh, body * rng.uniform(0.35, 0.6), w * rng.uniform(0.6, 0.85)
        z = rng.uniform(-0.05, 0.15)
        for _ in range(n):
            ch = rng.uniform(0.05, 0.1)
            parts.append(_box((0, y + ch / 2, z), (cw / 2, ch / 2, cl / 2)))
            y, cl, cw = y + ch, cl * rng.uniform(0.5, 0.8), cw * rng.uniform(0.7, 0.95)
        if rng.random() < 0.6:
            parts.append(_cyl((0, y + 0.06, z + cl * 0.3), 0.03, 0.07, segments=12))
    return parts


_BUILDERS: dict[str, Callable[[np.random.Generator], list[Part]]] = {
    "03001627": _chair,
    "04379243": _table,
    "02691156": _airplane,
    "02958343": _car,
    "03636649": _lamp,
    "02828884": _bench,
    "04256520": _sofa,
    "04530566": _watercraft,
}


# ----------------------------------------------------------------------------------------------
# Objects
# ----------------------------------------------------------------------------------------------

def _rng(category_key: str, index: int, seed: int) -> np.random.Generator:
    key = int(category_key) if category_key.isdigit() else zlib.crc32(category_key.encode())
    return np.random.default_rng([int(seed), key, int(index)])


def make_parts(category_key: str, index: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """The object's primitives as separate closed convex meshes, already normalised.

    Returns:
        list of (verts (V_p, 3) float64, faces (F_p, 3) int64), outward oriented.
    """
    if category_key not in _BUILDERS:
        raise ValueError(f"unknown synthetic category {category_key!r}; "
                         f"known: {', '.join(f'{k} ({v})' for k, v in CATEGORIES.items())}")
    rng = _rng(category_key, index, seed)
    parts = _BUILDERS[category_key](rng)
    yaw = _rot(rng.uniform(-1.0, 1.0) * math.radians(8.0))
    meshes: list[tuple[np.ndarray, np.ndarray]] = []
    for _ in range(2):  # thickening changes the extent slightly: normalise twice
        world = [((p.local_mesh()[0] @ p.rot.T + p.pos) @ yaw.T) for p in parts]
        pts = np.concatenate(world)
        lo, hi = pts.min(0), pts.max(0)
        scale = (1.0 - MARGIN) / (hi - lo).max()
        for p in parts:
            p.thicken(MIN_THICKNESS / scale)
    world = [((p.local_mesh()[0] @ p.rot.T + p.pos) @ yaw.T) for p in parts]
    pts = np.concatenate(world)
    lo, hi = pts.min(0), pts.max(0)
    scale = (1.0 - MARGIN) / (hi - lo).max()
    centre = (lo + hi) / 2
    for p, v in zip(parts, world):
        meshes.append(((v - centre) * scale, p.local_mesh()[1]))
    return meshes


def _convex_occupancy(meshes: Sequence[tuple[np.ndarray, np.ndarray]], resolution: int = VOXEL_RES) -> np.ndarray:
    """Union of convex closed meshes sampled at the voxel centres (exact half-space tests)."""
    r = resolution
    c = -0.5 + (np.arange(r) + 0.5) / r
    occ = np.zeros((r, r, r), dtype=bool)
    for v, f in meshes:
        tri = v[f]
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        off = (n * tri[:, 0]).sum(1)
        lo = np.clip(np.ceil((v.min(0) + 0.5) * r - 0.5), 0, r).astype(int)
        hi = np.clip(np.floor((v.max(0) + 0.5) * r - 0.5), -1, r - 1).astype(int)
        if (hi < lo).any():
            continue
        gx, gy, gz = np.meshgrid(c[lo[0]:hi[0] + 1], c[lo[1]:hi[1] + 1], c[lo[2]:hi[2] + 1], indexing="ij")
        pts = np.stack([gx, gy, gz], -1)
        inside = (pts.reshape(-1, 3) @ n.T - off <= 1e-9).all(1).reshape(gx.shape)
        occ[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1] |= inside
    return occ


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
    verts, faces, base = [], [], 0
    for v, f in meshes:
        verts.append(v)
        faces.append(f + base)
        base += len(v)
    return (np.concatenate(verts).astype(np.float32), np.concatenate(faces).astype(np.int64),
            _convex_occupancy(meshes))


def _object_color(category_key: str, index: int, seed: int) -> tuple[float, float, float]:
    rng = np.random.default_rng([int(seed), 7, zlib.crc32(category_key.encode()), int(index)])
    h, s, v = rng.random(), rng.uniform(0.2, 0.7), rng.uniform(0.6, 0.95)
    k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
    return tuple(float(x) for x in v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1))


def render_object(category_key: str, index: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images and voxels of one object as stored: ``(24, 4, 64, 64) uint8``, ``(32, 32, 32) bool``."""
    from recon.data.raster import render_views

    verts, faces, voxels = make_object(category_key, index, seed)
    images = render_views(verts, faces, color=_object_color(category_key, index, seed), cull_backfaces=True)
    return images, voxels


def _work(task: tuple[str, int, int]) -> tuple[np.ndarray, np.ndarray]:
    images, voxels = render_object(*task)
    return images, np.packbits(voxels)


def _init_worker() -> None:
    import signal

    import torch

    torch.set_num_threads(1)
    # The parent handles Ctrl-C / SIGTERM (and terminates the pool); workers just stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


# ----------------------------------------------------------------------------------------------
# Dataset builder
# ----------------------------------------------------------------------------------------------

def split_sizes(per_category: int | Sequence[int] | Mapping[str, int]) -> dict[str, int]:
    """Normalise a size spec to ``{"train": n, "val": n, "test": n}``.

    An int ``n`` is the train size; val and test then get ``max(1, int(n / 7.5))``
    (300 -> 40, the default 300/40/40).
    """
    if isinstance(per_category, Mapping):
        unknown = set(per_category) - set(SPLITS)
        if unknown:
            raise ValueError(f"unknown splits {sorted(unknown)} in per_category, expected {SPLITS}")
        sizes = {s: int(per_category.get(s, 0)) for s in SPLITS}
    elif isinstance(per_category, (int, np.integer)):
        n = int(per_category)
        sizes = {"train": n, "val": max(1, int(n / 7.5)), "test": max(1, int(n / 7.5))}
    else:
        values = list(per_category)
        if len(values) != 3:
            raise ValueError(f"per_category must be an int, a (train, val, test) triple or a dict, "
                             f"got {per_category!r}")
        sizes = dict(zip(SPLITS, (int(x) for x in values)))
    if any(v < 0 for v in sizes.values()) or sum(sizes.values()) == 0:
        raise ValueError(f"per_category sizes must be >= 0 and not all zero, got {sizes}")
    return sizes


def resolve_categories(categories: Sequence[str] | None) -> list[str]:
    """Category keys from keys or names (``None``: the default six)."""
    if not categories:
        return list(DEFAULT_CATEGORIES)
    by_name = {v: k for k, v in CATEGORIES.items()}
    keys = []
    for c in categories:
        key = c if c in CATEGORIES else by_name.get(c)
        if key is None:
            raise ValueError(f"unknown synthetic category {c!r}; known: "
                             f"{', '.join(f'{k} ({v})' for k, v in CATEGORIES.items())}")
        if key not in keys:
            keys.append(key)
    return keys


def build_synthetic(
    out_path: str | os.PathLike,
    per_category: int | Sequence[int] | Mapping[str, int] = (300, 40, 40),
    categories: Sequence[str] | None = None,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> DatasetInfo:
    """Generate, render and voxelize the synthetic dataset into a format-v1 HDF5 file.

    Objects are produced in parallel (``workers`` processes, default ``os.cpu_count()``;
    ``workers <= 1`` runs in this process) and written by this process in a fixed order, so
    the file content does not depend on ``workers``. The file appears atomically at
    ``out_path`` only when complete.

    Args:
        out_path: output ``.h5`` path.
        per_category: train size (int), ``(train, val, test)`` or ``{split: n}``.
        categories: keys or names (default ``DEFAULT_CATEGORIES``).
        seed: dataset seed.
        workers: process count.
        progress: show a rich progress bar.
    Returns:
        the written file's ``DatasetInfo``.
    """
    sizes = split_sizes(per_category)
    keys = resolve_categories(categories)
    tasks = [(key, split, SPLIT_OFFSET[split] + i) for key in keys for split in SPLITS for i in range(sizes[split])]
    workers = os.cpu_count() or 1 if workers is None else int(workers)
    from rich.progress import Progress

    bar = Progress(disable=not progress, transient=False)
    with DatasetWriter(out_path) as writer:
        for key in keys:
            writer.add_category(key, CATEGORIES[key], source=f"synthetic(seed={seed})",
                                rgb_convention="Lambert shaded, premultiplied over black (background 0)")
            for split in SPLITS:  # every split exists (possibly empty) so readers can require it
                writer.create_split(key, split, capacity=sizes[split])
        jobs = [(key, index, seed) for key, _, index in tasks]
        with bar:
            task_id = bar.add_task("synthetic", total=len(tasks))
            pool = None
            try:
                if workers > 1:
                    import multiprocessing as mp

                    pool = mp.get_context("fork" if os.name == "posix" else "spawn").Pool(
                        min(workers, max(1, len(jobs))), initializer=_init_worker)
                    results = pool.imap(_work, jobs, chunksize=4)
                else:
                    results = map(_work, jobs)
                for (key, split, index), (images, packed) in zip(tasks, results):
                    voxels = np.unpackbits(packed)[:VOXEL_RES ** 3].reshape((VOXEL_RES,) * 3)
                    oid = f"{CATEGORIES[key]}-{split}-{index - SPLIT_OFFSET[split]:05d}"
                    writer.append(key, split, images, voxels, oid)
                    bar.advance(task_id)
            finally:
                if pool is not None:
                    pool.terminate()
                    pool.join()
    return validate(out_path)
