"""Voxel axis conventions: signed axis permutations between a source grid and ours, and their detection.

NMR's grids are not in our order (``recon.data.schema``: ``voxels[i, j, k]`` <->
world ``(x, y, z)``). SoftRas ``examples/recon/models.py`` (``evaluate_iou``) voxelizes its
predicted mesh with ``soft_renderer.functional.voxelization``, whose kernels write cell
``[c0, c1, c2]`` for vertex coordinates ``(c0, c1, c2) = (x, y, z)`` (ours, up to its 31/32
cell scale), then compares ``pred.transpose(0, 2, 1, 3)[:, :, :, ::-1]`` with the NMR grid.
So ``nmr[a, b, c] = ours[b, a, 31 - c]``: NMR's axis 0 holds world +y, axis 1 world +x and
axis 2 world -z. We write that as the spec ``"+y+x-z"`` (``NMR_AXES``): spec letters name,
for each axis of the *source* grid, the signed world axis it holds. Any of the 48 signed
axis permutations can be given explicitly; ``"auto"`` scores all 48 on the first objects of
each class by projecting the voxels with our cameras onto the alpha masks, keeps ``"nmr"``
unless another transform is clearly better (then warns), and applies the winner to every
object of the class (the SoftRas converter stores the chosen spec in ``/<class>.attrs["voxel_transform"]``).
"""

from __future__ import annotations

import itertools
import re
from typing import Sequence

import numpy as np
import torch

from recon import cameras
from recon.errors import ConfigError

__all__ = ["NMR_AXES", "IDENTITY_AXES", "AXIS_SPECS", "parse_axes", "canonical_axes", "apply_axes", "to_source_axes",
           "axes_matrix", "score_axes", "detect_axes"]

NMR_AXES = "+y+x-z"
IDENTITY_AXES = "+x+y+z"
AXIS_SPECS: tuple[str, ...] = tuple(
    "".join(f"{s}{'xyz'[p]}" for s, p in zip(signs, perm))
    for perm in itertools.permutations(range(3)) for signs in itertools.product("+-", repeat=3))
AUTO_VIEWS = (0, 4, 8, 12, 16, 20)  # views scored by detect_axes
_AUTO_MARGIN = 0.01



def parse_axes(spec: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Parse a signed axis permutation.

    Args:
        spec: ``"nmr"``, ``"identity"`` or three signed world axes, one per source-grid axis,
            e.g. ``"+y+x-z"`` (signs optional, ``"yx-z"``).
    Returns:
        (perm, signs): source axis ``a`` holds world axis ``perm[a]`` times ``signs[a]``.
    Raises:
        ValueError: for anything else.
    """
    s = spec.strip().lower()
    s = {"nmr": NMR_AXES, "identity": IDENTITY_AXES, "ours": IDENTITY_AXES}.get(s, s)
    m = re.fullmatch(r"([+-]?)([xyz])([+-]?)([xyz])([+-]?)([xyz])", s)
    if not m or len({m.group(2), m.group(4), m.group(6)}) != 3:
        raise ConfigError(f"invalid voxel axes {spec!r}: expected 'auto', 'nmr', 'identity' or a signed "
                         f"permutation of x, y, z such as '+y+x-z'")
    perm = tuple("xyz".index(m.group(k)) for k in (2, 4, 6))
    signs = tuple(-1 if m.group(k) == "-" else 1 for k in (1, 3, 5))
    return perm, signs  # type: ignore[return-value]


def canonical_axes(spec: str) -> str:
    """``"nmr"`` -> ``"+y+x-z"`` etc."""
    perm, signs = parse_axes(spec)
    return "".join(f"{'+' if s > 0 else '-'}{'xyz'[p]}" for p, s in zip(perm, signs))


def apply_axes(grid: np.ndarray, spec: str) -> np.ndarray:
    """Bring a source grid (trailing 3 axes) into our axis order.

    Args:
        grid: (..., R, R, R) in the source convention described by ``spec``.
    Returns:
        (..., R, R, R) with ``out[..., i, j, k]`` the cell at world ``(x_i, y_j, z_k)``.
    """
    perm, signs = parse_axes(spec)
    lead = grid.ndim - 3
    flipped = grid
    for a, s in enumerate(signs):
        if s < 0:
            flipped = np.flip(flipped, lead + a)
    axes = list(range(lead)) + [lead + perm.index(d) for d in range(3)]
    return np.ascontiguousarray(np.transpose(flipped, axes))


def to_source_axes(grid: np.ndarray, spec: str) -> np.ndarray:
    """Inverse of ``apply_axes``: our grid -> the source convention (e.g. NMR order for tests)."""
    perm, signs = parse_axes(spec)
    lead = grid.ndim - 3
    out = np.transpose(grid, list(range(lead)) + [lead + p for p in perm])
    for a, s in enumerate(signs):
        if s < 0:
            out = np.flip(out, lead + a)
    return np.ascontiguousarray(out)


def axes_matrix(spec: str) -> np.ndarray:
    """(3, 3) signed permutation ``M`` with ``world = M @ source_point`` for cell centres."""
    perm, signs = parse_axes(spec)
    m = np.zeros((3, 3))
    for a in range(3):
        m[perm[a], a] = signs[a]
    return m


def _surface_points(grid: np.ndarray) -> np.ndarray:
    """Centres (source frame) of occupied cells with an empty 6-neighbour, each split into 8
    sub-points at +-1/4 cell so that splats cover the projected cell without holes."""
    occ = np.asarray(grid).astype(bool)
    pad = np.pad(occ, 1)
    interior = occ.copy()
    for axis in range(3):
        for shift in (-1, 1):
            interior &= np.roll(pad, shift, axis)[1:-1, 1:-1, 1:-1]
    idx = np.argwhere(occ & ~interior)
    r = occ.shape[0]
    centres = -0.5 + (idx + 0.5) / r
    offs = np.array(list(itertools.product((-0.25, 0.25), repeat=3))) / r
    return (centres[:, None, :] + offs[None]).reshape(-1, 3)


def score_axes(voxels: np.ndarray, alpha: np.ndarray, views: Sequence[int] = AUTO_VIEWS,
               specs: Sequence[str] = AXIS_SPECS) -> dict[str, float]:
    """Mean silhouette IoU of the voxels under each candidate transform.

    Args:
        voxels: (R, R, R) grid in the source convention.
        alpha: (len(views), S, S) uint8 alpha masks of the same object.
        views: the view indices of ``alpha``.
    Returns:
        {spec: mean over views of IoU(projected voxels, alpha > 127)}.
    """
    pts = _surface_points(voxels)
    s = alpha.shape[-1]
    masks = torch.from_numpy(np.asarray(alpha) > 127).reshape(len(views), -1)
    out = {}
    if len(pts) == 0:
        return {spec: 0.0 for spec in specs}
    az = cameras.view_azimuths(torch.as_tensor(list(views)))
    for spec in specs:
        world = torch.from_numpy(pts @ axes_matrix(spec).T).float()
        ndc = cameras.project(world[None].expand(len(views), -1, -1), az)
        col = ((ndc[..., 0] + 1) * s / 2).floor().long()
        row = ((1 - ndc[..., 1]) * s / 2).floor().long()
        ok = (col >= 0) & (col < s) & (row >= 0) & (row < s)
        flat = (torch.arange(len(views))[:, None] * s * s + row * s + col)[ok]
        proj = torch.zeros(len(views) * s * s, dtype=torch.bool)
        proj[flat] = True
        proj = proj.reshape(len(views), -1)
        inter = (proj & masks).sum(1).float()
        union = (proj | masks).sum(1).clamp_min(1).float()
        out[spec] = float((inter / union).mean())
    return out


def detect_axes(samples: Sequence[tuple[np.ndarray, np.ndarray]], views: Sequence[int] = AUTO_VIEWS,
                prefer: str = NMR_AXES, margin: float = _AUTO_MARGIN) -> tuple[str, dict[str, float]]:
    """Pick the signed axis permutation that best explains the alpha masks.

    Args:
        samples: [(images (24, 4, S, S) uint8, voxels (R, R, R) source order)] of one class.
        prefer: returned unless another spec scores more than ``margin`` higher (ties between
            mirror-symmetric candidates are common).
    Returns:
        (spec, mean scores per spec).
    """
    total = {spec: 0.0 for spec in AXIS_SPECS}
    for images, voxels in samples:
        for spec, v in score_axes(voxels, images[list(views), 3], views).items():
            total[spec] += v / max(1, len(samples))
    best = max(total, key=total.get)
    prefer = canonical_axes(prefer)
    if total[best] <= total[prefer] + margin:
        best = prefer
    return best, total
