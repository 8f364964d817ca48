"""ShapeNet-style normalisation, written once: bounding box centred at the origin, longest side ``1 - margin``."""

from __future__ import annotations

import numpy as np

__all__ = ["unit_cube_transform"]


def unit_cube_transform(points: np.ndarray, margin: float = 0.0) -> tuple[np.ndarray, float]:
    """Centre and scale that put ``points`` into the unit cube ``[-0.5, 0.5]^3``.

    ``(points - centre) * scale`` has its bounding box centred at the origin and its longest
    side equal to ``1 - margin``.

    Args:
        points: (N, 3) float.
        margin: room left free along the longest side.
    Returns:
        centre (3,) float64, scale float.
    Raises:
        ValueError: no points, NaN/Inf coordinates, an extent that overflows float64, is zero or is
            too small to invert (messages are the reason, e.g. ``"zero extent (all vertices coincide)"``).
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(points) == 0:
        raise ValueError("no vertices")
    if not np.isfinite(points).all():
        raise ValueError("non-finite vertex coordinates (NaN or Inf)")
    lo, hi = points.min(0), points.max(0)
    with np.errstate(over="ignore"):
        extent = float((hi - lo).max())
    if not np.isfinite(extent):
        raise ValueError("vertex coordinates too large (their extent overflows float64)")
    if not extent > 0:
        raise ValueError("zero extent (all vertices coincide)")
    scale = (1.0 - margin) / extent
    if not np.isfinite(scale):
        raise ValueError(f"extent {extent:g} too small to scale to the unit cube")
    return (lo + hi) / 2, scale
