"""``RasterSettings``: the options of the soft rasterization ops (and of every renderer)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from recon import cameras

__all__ = ["RasterSettings"]


@dataclass(frozen=True)
class RasterSettings:
    """Soft rasterization settings (SoftRas defaults for single-view reconstruction).

    Attributes:
        image_size: output is ``(image_size, image_size)``.
        sigma: sharpness; per pixel-face probability ``sigmoid(sign * d^2 / sigma)`` with ``d`` the
            NDC distance from the pixel centre to the projected triangle.
        eps: pixel-face pairs whose probability is below ``eps`` are skipped; this bounds each
            face's influence to its bounding box grown by ``sqrt(sigma * log(1/eps - 1))``.
        elevation, distance, viewing_angle: camera (degrees, world units, degrees).
        gamma, near, far, background_eps, background: colour of ``Renderer.rgba`` with the soft
            z-buffer (SoftRas' ``gamma_val``, ``near``, ``far``, ``eps``, ``background_color``; see
            ``recon.ops.rgba_soft_torch``); ``background`` also fills uncovered pixels of ``dibr``.
    """

    image_size: int = cameras.IMAGE_SIZE
    sigma: float = 1e-4
    eps: float = 1e-4
    elevation: float = cameras.ELEVATION
    distance: float = cameras.DISTANCE
    viewing_angle: float = cameras.VIEWING_ANGLE
    gamma: float = 1e-4
    near: float = 1.0
    far: float = 100.0
    background_eps: float = 1e-3
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def cutoff_sq(self) -> float:
        """Squared NDC distance beyond which an outside pixel-face probability is below ``eps``."""
        return self.sigma * math.log(1.0 / self.eps - 1.0)

    def with_sigma(self, sigma: float) -> "RasterSettings":
        return replace(self, sigma=float(sigma))
