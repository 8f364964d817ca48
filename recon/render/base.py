"""The renderer interface shared by every backend.

A renderer maps a batch of meshes seen from a batch of viewpoints to soft silhouettes::

    renderer.silhouettes(verts (B, V, 3), faces (F, 3) int64, azimuth (B,) degrees) -> (B, S, S) in [0, 1]

Backends implement ``rasterize_ndc`` on already projected vertices; projection (SoftRas
look-at + perspective, ``recon.cameras``) is shared so that all backends see identical geometry.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace

import torch

from recon import cameras

__all__ = ["BackendUnavailable", "RasterSettings", "Renderer"]


class BackendUnavailable(RuntimeError):
    """A rendering backend cannot run here; the message says what is missing and how to install it."""


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
    """

    image_size: int = cameras.IMAGE_SIZE
    sigma: float = 1e-4
    eps: float = 1e-4
    elevation: float = cameras.ELEVATION
    distance: float = cameras.DISTANCE
    viewing_angle: float = cameras.VIEWING_ANGLE

    @property
    def cutoff_sq(self) -> float:
        """Squared NDC distance beyond which an outside pixel-face probability is below ``eps``."""
        return self.sigma * math.log(1.0 / self.eps - 1.0)

    def with_sigma(self, sigma: float) -> "RasterSettings":
        return replace(self, sigma=float(sigma))


class Renderer(ABC):
    """Base class: projection + a backend-specific ``rasterize_ndc``."""

    name: str = "base"

    def __init__(self, settings: RasterSettings | None = None):
        self.settings = settings or RasterSettings()

    def set_sigma(self, sigma: float) -> None:
        """Change the silhouette sharpness (annealed during training)."""
        self.settings = self.settings.with_sigma(sigma)

    def project(self, verts: torch.Tensor, azimuth: torch.Tensor,
                elevation: torch.Tensor | float | None = None) -> torch.Tensor:
        """(B, V, 3) world -> (B, V, 3) NDC x, y and camera depth z."""
        s = self.settings
        return cameras.project(verts, azimuth, s.elevation if elevation is None else elevation, s.distance,
                               s.viewing_angle)

    def silhouettes(self, verts: torch.Tensor, faces: torch.Tensor, azimuth: torch.Tensor,
                    elevation: torch.Tensor | float | None = None) -> torch.Tensor:
        """Soft silhouettes of ``verts`` seen from ``azimuth``.

        Args:
            verts: (B, V, 3) float world coordinates.
            faces: (F, 3) int64, shared by the batch.
            azimuth: (B,) degrees (``recon.cameras.view_azimuths(view_ids)``).
            elevation: optional (B,) or scalar degrees (default ``settings.elevation``).
        Returns:
            (B, S, S) silhouettes in [0, 1], row 0 at the top.
        """
        if verts.dim() != 3 or verts.shape[-1] != 3:
            raise ValueError(f"verts must be (B, V, 3), got {tuple(verts.shape)}")
        if faces.dim() != 2 or faces.shape[-1] != 3:
            raise ValueError(f"faces must be (F, 3), got {tuple(faces.shape)}")
        return self.rasterize_ndc(self.project(verts, azimuth, elevation), faces.to(verts.device).long())

    @abstractmethod
    def rasterize_ndc(self, verts_ndc: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) projected vertices, (F, 3) faces -> (B, S, S) soft silhouettes."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings})"
