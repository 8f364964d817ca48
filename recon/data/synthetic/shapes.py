"""The synthetic categories: each builder turns a random generator into parts (arbitrary units;
objects face -z, up +y), with category-specific structure and random proportions and part kinds."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from recon.data.categories import category_name
from recon.data.synthetic.primitives import ALONG_X, ALONG_Z, Part, box, cyl, ell, rotation, segment

__all__ = ["BUILDERS", "CATEGORIES", "DEFAULT_CATEGORIES"]


def _legs(rng, w, d, h, thick, round_legs, inset, splay=0.0, n=4) -> list[Part]:
    """n legs (4 or 6) from y=0 up to y=h under a w x d rectangle, optionally splayed outwards."""
    xs = [-w / 2 + inset, w / 2 - inset] if n == 4 else [-w / 2 + inset, 0.0, w / 2 - inset]
    parts = []
    for x in xs:
        for z in (-d / 2 + inset, d / 2 - inset):
            top = np.array([x, h, z])
            bottom = np.array([x * (1 + splay), 0.0, z * (1 + splay)])
            if round_legs:
                parts.append(segment(bottom, top, thick / 2, 10, taper=rng.uniform(0.8, 1.2)))
            elif splay == 0:
                parts.append(box((top + bottom) / 2, (thick / 2, h / 2, thick / 2)))
            else:
                parts.append(segment(bottom, top, thick / 2, 4))
    return parts


def _chair(rng: np.random.Generator) -> list[Part]:
    w, d = rng.uniform(0.4, 0.6), rng.uniform(0.38, 0.58)
    t = rng.uniform(0.035, 0.09)
    h = rng.uniform(0.33, 0.5)
    parts = [box((0, h + t / 2, 0), (w / 2, t / 2, d / 2))]
    style = rng.choice(["legs", "legs", "legs", "pedestal", "panels"])
    if style == "legs":
        parts += _legs(rng, w, d, h, rng.uniform(0.03, 0.065), rng.random() < 0.4, rng.uniform(0.0, 0.05),
                       splay=rng.choice([0.0, rng.uniform(0.05, 0.2)]))
        if rng.random() < 0.35:  # stretchers between the legs
            y = rng.uniform(0.1, 0.25) * h
            parts += [box((x, y, 0), (0.015, 0.015, d / 2 - 0.02)) for x in (-w / 2 + 0.03, w / 2 - 0.03)]
    elif style == "pedestal":
        r = rng.uniform(0.025, 0.05)
        parts.append(cyl((0, h / 2 + 0.03, 0), r, h / 2 - 0.02, segments=12))
        feet = int(rng.integers(4, 6))
        reach = rng.uniform(0.22, 0.32)
        for k in range(feet):
            a = 2 * math.pi * k / feet + math.pi / feet
            parts.append(box((math.sin(a) * reach / 2, 0.03, math.cos(a) * reach / 2), (0.02, 0.03, reach / 2),
                              yaw=a))
    else:
        pt = rng.uniform(0.03, 0.06)
        parts += [box((x, h / 2, 0), (pt / 2, h / 2, d / 2 * rng.uniform(0.8, 1.0)))
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
            parts.append(box(base + up * (bh - rail) / 2 + [x, 0, 0], (bw / n * 0.3, (bh - rail) / 2, bt / 2),
                              pitch=tilt))
        parts.append(box(base + up * (bh - rail / 2), (bw / 2, rail / 2, bt / 2), pitch=tilt))
    else:
        taper = rng.uniform(0.75, 1.1)
        parts.append(box(base + up * bh / 2, (bw / 2, bh / 2, bt / 2), pitch=tilt, taper=(taper, 1.0)))
    if rng.random() < 0.3:  # arms
        ah = rng.uniform(0.15, 0.25)
        for x in (-w / 2, w / 2):
            parts.append(box((x, h + t + ah, 0), (0.03, 0.02, d / 2 * 0.9)))
            parts.append(box((x, h + t + ah / 2, -d / 2 + 0.05), (0.02, ah / 2, 0.02)))
    return parts


def _table(rng: np.random.Generator) -> list[Part]:
    low = rng.random() < 0.2
    h = rng.uniform(0.3, 0.45) if low else rng.uniform(0.55, 0.8)
    t = rng.uniform(0.03, 0.08)
    parts = []
    if rng.random() < 0.3:  # round
        r = rng.uniform(0.35, 0.6)
        parts.append(cyl((0, h - t / 2, 0), r, t / 2, segments=24))
        w = d = r * math.sqrt(2)
        style = rng.choice(["pedestal", "pedestal", "legs"])
    else:
        w, d = rng.uniform(0.8, 1.6), rng.uniform(0.45, 0.9)
        parts.append(box((0, h - t / 2, 0), (w / 2, t / 2, d / 2)))
        style = rng.choice(["legs", "legs", "legs", "trestle", "pedestal"])
    if style == "legs":
        inset = rng.uniform(0.02, 0.1) * min(w, d)
        parts += _legs(rng, w, d, h - t, rng.uniform(0.04, 0.08), rng.random() < 0.4, inset)
        if rng.random() < 0.3:  # shelf
            parts.append(box((0, rng.uniform(0.1, 0.3) * h, 0), (w / 2 - inset, 0.015, d / 2 - inset)))
        elif rng.random() < 0.4:  # apron
            parts.append(box((0, h - t - 0.04, 0), (w / 2 - inset, 0.04, d / 2 - inset)))
    elif style == "trestle":
        pt = rng.uniform(0.04, 0.08)
        for x in (-w / 2 + 0.1 * w, w / 2 - 0.1 * w):
            parts.append(box((x, (h - t) / 2, 0), (pt / 2, (h - t) / 2, d / 2 * rng.uniform(0.6, 0.95))))
        if rng.random() < 0.6:
            parts.append(box((0, rng.uniform(0.15, 0.4) * h, 0), (0.4 * w, 0.03, 0.03)))
    else:
        r = rng.uniform(0.04, 0.1)
        parts.append(cyl((0, (h - t) / 2, 0), r, (h - t) / 2, segments=14, taper=rng.uniform(0.6, 1.0)))
        if rng.random() < 0.5:
            parts.append(cyl((0, 0.02, 0), rng.uniform(0.2, 0.35) * max(w, d), 0.02, segments=20))
        else:
            reach = rng.uniform(0.5, 0.8) * max(w, d)
            for a in (math.pi / 4, 3 * math.pi / 4):
                parts.append(box((0, 0.025, 0), (0.03, 0.025, reach / 2), yaw=a))
    return parts


def _airplane(rng: np.random.Generator) -> list[Part]:
    length = 1.0
    r = rng.uniform(0.045, 0.09)
    parts = []
    if rng.random() < 0.3:
        parts.append(ell((0, 0, 0), (r * 1.1, r * 1.1, length / 2)))
    else:
        body = length * rng.uniform(0.55, 0.7)
        nose = length * rng.uniform(0.08, 0.15)
        tail = length - body - nose
        z0 = -length / 2
        parts.append(cyl((0, 0, z0 + nose / 2), r, nose / 2, rot=(0, -math.pi / 2, 0),
                          taper=rng.uniform(0.15, 0.4), segments=14))
        parts.append(cyl((0, 0, z0 + nose + body / 2), r, body / 2, rot=ALONG_Z, segments=14))
        parts.append(cyl((0, r * 0.3, z0 + nose + body + tail / 2), r, tail / 2, rot=ALONG_Z,
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
            wing = box((0, 0, 0), (0.01, half_span, half_chord), yaw=-s * sweep, roll=s * (-math.pi / 2 + dihedral),
                        taper=(1.0, taper))
            wing.pos = np.asarray(root, float) + wing.rot @ np.array([0.0, half_span, 0.0])
            parts.append(wing)
    fh = rng.uniform(0.1, 0.22)
    parts.append(box((0, r * 0.5 + fh / 2, tz - 0.02), (0.01, fh / 2, rng.uniform(0.05, 0.09)), pitch=0.35,
                      taper=(1.0, rng.uniform(0.4, 0.9))))
    if rng.random() < 0.55:
        n = 1 if rng.random() < 0.7 else 2
        er = rng.uniform(0.025, 0.045)
        for k in range(n):
            ex = (0.3 + 0.4 * k / max(n, 1)) * span / 2 * rng.uniform(0.8, 1.0)
            for s in (-1, 1):
                parts.append(cyl((s * ex, wy - er * 1.6, wz + ex * math.tan(sweep) - chord * 0.4), er,
                                  rng.uniform(0.06, 0.1), rot=ALONG_Z, segments=12))
    return parts


def _car(rng: np.random.Generator) -> list[Part]:
    kind = rng.choice(["sedan", "sedan", "van", "pickup", "sports"])
    length = 1.0
    w = rng.uniform(0.4, 0.5)
    wr = rng.uniform(0.07, 0.11)
    clear = wr * rng.uniform(0.5, 0.9)
    bh = {"sports": rng.uniform(0.08, 0.12), "van": rng.uniform(0.16, 0.22)}.get(kind, rng.uniform(0.12, 0.18))
    parts = [box((0, clear + bh / 2, 0), (w / 2, bh / 2, length / 2), taper=(rng.uniform(0.85, 1.0), 1.0))]
    ch = {"sports": rng.uniform(0.07, 0.1), "van": rng.uniform(0.18, 0.26)}.get(kind, rng.uniform(0.1, 0.16))
    if kind == "van":
        cl, cz = length * rng.uniform(0.7, 0.85), rng.uniform(0.0, 0.08)
    elif kind == "pickup":
        cl, cz = length * rng.uniform(0.25, 0.35), -rng.uniform(0.1, 0.2)
    else:
        cl, cz = length * rng.uniform(0.4, 0.55), rng.uniform(-0.05, 0.1)
    parts.append(box((0, clear + bh + ch / 2, cz), (w / 2 * rng.uniform(0.85, 0.95), ch / 2, cl / 2),
                      taper=(rng.uniform(0.8, 0.95), rng.uniform(0.55, 0.9))))
    ww = rng.uniform(0.05, 0.08)
    wz = length / 2 * rng.uniform(0.6, 0.75)
    for z in (-wz, wz):
        for s in (-1, 1):
            parts.append(cyl((s * (w / 2 - ww / 2 + 0.01), wr, z), wr, ww / 2, rot=ALONG_X, segments=14))
    if kind == "sports" and rng.random() < 0.5 or rng.random() < 0.1:
        sz = length / 2 - 0.05
        parts.append(box((0, clear + bh + 0.06, sz), (w / 2 * 0.9, 0.01, 0.04)))
        parts += [box((x, clear + bh + 0.03, sz), (0.012, 0.03, 0.015)) for x in (-w / 3, w / 3)]
    return parts


def _lamp(rng: np.random.Generator) -> list[Part]:
    kind = rng.choice(["desk", "floor", "arm", "arm"])
    height = rng.uniform(1.0, 1.6) if kind == "floor" else rng.uniform(0.35, 0.7)
    base_r = rng.uniform(0.08, 0.18) * (1.5 if kind == "floor" else 1.0)
    bt = rng.uniform(0.02, 0.05)
    if rng.random() < 0.7:
        parts = [cyl((0, bt / 2, 0), base_r, bt / 2, segments=20, taper=rng.uniform(0.7, 1.0))]
    else:
        parts = [box((0, bt / 2, 0), (base_r, bt / 2, base_r * rng.uniform(0.6, 1.0)))]
    pr = rng.uniform(0.012, 0.025) * max(height, 0.6)
    shade_r = rng.uniform(0.1, 0.22) * (1.3 if kind == "floor" else 1.0)
    shade_h = shade_r * rng.uniform(0.6, 1.4)
    if kind in ("desk", "floor"):
        parts.append(cyl((0, bt + height / 2, 0), pr, height / 2, segments=10))
        top = bt + height
        shape = rng.choice(["frustum", "frustum", "dome", "sphere"])
        if shape == "frustum":
            parts.append(cyl((0, top - shade_h * 0.2, 0), shade_r, shade_h / 2, taper=rng.uniform(0.4, 0.85),
                              segments=20))
        elif shape == "dome":
            parts.append(cyl((0, top, 0), shade_r, shade_h / 3, taper=rng.uniform(0.1, 0.3), segments=20))
        else:
            parts.append(ell((0, top, 0), (shade_r * 0.8,) * 3))
    else:
        # Arm lamp: a pole, then an arm in a random horizontal direction, shade at its end.
        a = rng.uniform(0, 2 * math.pi)
        direction = np.array([math.sin(a), 0.0, math.cos(a)])
        p0 = np.array([0.0, bt, 0.0])
        p1 = p0 + [0.0, height * rng.uniform(0.5, 0.8), 0.0]
        p1 = p1 - direction * rng.uniform(0.0, 0.15)
        reach = rng.uniform(0.25, 0.5)
        p2 = p1 + direction * reach + [0.0, rng.uniform(-0.05, 0.2), 0.0]
        parts += [segment(p0, p1, pr, 10), segment(p1, p2, pr, 10), ell(p1, (pr * 1.5,) * 3)]
        tip = p2 + direction * shade_h * 0.3
        shade = segment(tip + [0, shade_h * 0.6, 0] - direction * shade_h * 0.2, tip - [0, shade_h * 0.3, 0],
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
            parts.append(box((0, h + t / 2, z), (w / 2, t / 2, d / n * 0.38)))
    else:
        parts.append(box((0, h + t / 2, 0), (w / 2, t / 2, d / 2)))
    style = rng.choice(["legs", "legs", "panels"])
    if style == "legs":
        parts += _legs(rng, w, d, h, rng.uniform(0.04, 0.07), rng.random() < 0.3, rng.uniform(0.02, 0.12),
                       n=6 if w > 1.5 and rng.random() < 0.6 else 4)
    else:
        pt = rng.uniform(0.04, 0.08)
        for x in (-w / 2 + pt / 2 + rng.uniform(0, 0.1), w / 2 - pt / 2 - rng.uniform(0, 0.1)):
            parts.append(box((x, h / 2, 0), (pt / 2, h / 2, d / 2)))
    if rng.random() < 0.5:  # back
        bh = rng.uniform(0.25, 0.45)
        tilt = rng.uniform(0.0, 0.3)
        base = np.array([0, h + t, d / 2 - 0.03])
        up = np.array([0, math.cos(tilt), math.sin(tilt)])
        if rng.random() < 0.5:
            parts.append(box(base + up * bh / 2, (w / 2, bh / 2, 0.025), pitch=tilt))
        else:
            n = int(rng.integers(2, 4))
            for k in range(n):
                parts.append(box(base + up * bh * (k + 0.7) / n, (w / 2, bh / n * 0.25, 0.02), pitch=tilt))
            parts += [box(base + up * bh / 2 + [x, 0, 0], (0.025, bh / 2, 0.025), pitch=tilt)
                      for x in (-w / 2 + 0.05, w / 2 - 0.05)]
        if rng.random() < 0.5:  # arms
            for x in (-w / 2 + 0.02, w / 2 - 0.02):
                parts.append(box((x, h + t + 0.18, 0), (0.025, 0.02, d / 2)))
                parts.append(box((x, h + t + 0.09, -d / 2 + 0.04), (0.02, 0.09, 0.02)))
    return parts


def _sofa(rng: np.random.Generator) -> list[Part]:
    w, d = rng.uniform(1.2, 2.0), rng.uniform(0.6, 0.9)
    sh = rng.uniform(0.15, 0.25)
    leg = rng.choice([0.0, rng.uniform(0.04, 0.1)])
    parts = [box((0, leg + sh / 2, 0), (w / 2, sh / 2, d / 2))]
    if leg > 0:
        parts += _legs(rng, w, d, leg, 0.04, rng.random() < 0.5, 0.05)
    bt = rng.uniform(0.12, 0.22)
    bh = rng.uniform(0.3, 0.5)
    parts.append(box((0, leg + sh + bh / 2 - 0.02, d / 2 - bt / 2), (w / 2, bh / 2, bt / 2),
                      pitch=rng.uniform(0, 0.2)))
    n = int(rng.integers(1, 4))
    cw = (w - 0.3) / n
    for k in range(n):
        parts.append(box((-w / 2 + 0.15 + (k + 0.5) * cw, leg + sh + 0.04, -bt / 2),
                          (cw / 2 * 0.95, 0.045, (d - bt) / 2 * 0.95)))
    arms = rng.random()
    if arms < 0.8:
        ah = rng.uniform(0.1, 0.28)
        aw = rng.uniform(0.08, 0.2)
        for s in (-1, 1):
            if rng.random() < 0.5:
                parts.append(box((s * (w / 2 - aw / 2), leg + sh + ah / 2, 0), (aw / 2, ah / 2, d / 2)))
            else:
                parts.append(cyl((s * (w / 2 - aw / 2), leg + sh + ah / 2, 0), aw / 2 + 0.02, d / 2, rot=ALONG_Z,
                                  segments=14, rz=ah / 2 + 0.05))
    if rng.random() < 0.2:  # chaise: an L extension towards the front on one side
        s = rng.choice([-1, 1])
        ext = rng.uniform(0.4, 0.7)
        parts.append(box((s * (w / 2 - 0.3), leg + sh / 2, -d / 2 - ext / 2), (0.3, sh / 2, ext / 2)))
    return parts


def _watercraft(rng: np.random.Generator) -> list[Part]:
    length = 1.0
    w = rng.uniform(0.18, 0.32)
    hh = rng.uniform(0.08, 0.15)
    body = length * rng.uniform(0.65, 0.8)
    bow = length - body
    parts = [box((0, hh / 2, length / 2 - body / 2), (w / 2 * 0.75, hh / 2, body / 2), taper=(1.33, 1.0)),
             Part("box", np.array([w / 2 * 0.75, bow / 2, hh / 2]), np.array([0, hh / 2, -length / 2 + bow / 2]),
                  rotation(0, -math.pi / 2, 0), (0.08, 1.0))]
    if rng.random() < 0.4:  # sailboat
        mh = rng.uniform(0.5, 0.9)
        mz = rng.uniform(-0.2, 0.0)
        parts.append(cyl((0, hh + mh / 2, mz), 0.012, mh / 2, segments=8))
        parts.append(box((0, hh + mh * 0.55, mz + 0.15), (0.008, mh * 0.42, 0.15), taper=(1.0, 0.1)))
    else:
        n = int(rng.integers(1, 4))
        y, cl, cw = hh, body * rng.uniform(0.35, 0.6), w * rng.uniform(0.6, 0.85)
        z = rng.uniform(-0.05, 0.15)
        for _ in range(n):
            ch = rng.uniform(0.05, 0.1)
            parts.append(box((0, y + ch / 2, z), (cw / 2, ch / 2, cl / 2)))
            y, cl, cw = y + ch, cl * rng.uniform(0.5, 0.8), cw * rng.uniform(0.7, 0.95)
        if rng.random() < 0.6:
            parts.append(cyl((0, y + 0.06, z + cl * 0.3), 0.03, 0.07, segments=12))
    return parts


BUILDERS: dict[str, Callable[[np.random.Generator], list[Part]]] = {
    "03001627": _chair,
    "04379243": _table,
    "02691156": _airplane,
    "02958343": _car,
    "03636649": _lamp,
    "02828884": _bench,
    "04256520": _sofa,
    "04530566": _watercraft,
}

CATEGORIES: dict[str, str] = {key: category_name(key) for key in BUILDERS}  # the synthetic ones, by ShapeNet id
DEFAULT_CATEGORIES = ("03001627", "04379243", "02691156", "02958343", "03636649", "02828884")  # sofa, boat: opt-in
