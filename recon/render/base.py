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
from recon.errors import ExtensionUnavailable

__all__ = ["BackendUnavailable", "RasterSettings", "Renderer"]


class BackendUnavailable(ExtensionUnavailable):
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
        gamma, near, far, background_eps, background: colour of ``Renderer.rgba`` with the soft
            z-buffer (SoftRas' ``gamma_val``, ``near``, ``far``, ``eps``, ``background_color``; see
            ``recon.render.softras_rgb_torch``); ``background`` also fills uncovered pixels of ``dibr``.
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

    def rgba(self, verts: torch.Tensor, faces: torch.Tensor, azimuth: torch.Tensor, colors: torch.Tensor,
             elevation: torch.Tensor | float | None = None) -> torch.Tensor:
        """Colour render of ``verts`` with per-vertex ``colors`` seen from ``azimuth``.

        Args:
            verts: (B, V, 3) float world coordinates.
            faces: (F, 3) int64, shared by the batch.
            azimuth: (B,) degrees.
            colors: (B, V, 3) per-vertex RGB.
            elevation: optional (B,) or scalar degrees (default ``settings.elevation``).
        Returns:
            (B, 4, S, S): RGB then alpha (the backend's silhouette), row 0 at the top.
        Raises:
            BackendUnavailable: the backend has no colour render.
        """
        if verts.dim() != 3 or verts.shape[-1] != 3:
            raise ValueError(f"verts must be (B, V, 3), got {tuple(verts.shape)}")
        if faces.dim() != 2 or faces.shape[-1] != 3:
            raise ValueError(f"faces must be (F, 3), got {tuple(faces.shape)}")
        if colors.dim() != 3 or colors.shape[:2] != verts.shape[:2] or colors.shape[-1] != 3:
            raise ValueError(f"colors must be (B, V, 3) with (B, V) = {tuple(verts.shape[:2])}, got "
                             f"{tuple(colors.shape)}")
        ndc = self.project(verts, azimuth, elevation)
        return self.rasterize_rgba_ndc(ndc, faces.to(verts.device).long(), colors.to(ndc))

    def rasterize_rgba_ndc(self, verts_ndc: torch.Tensor, faces: torch.Tensor, colors: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) projected vertices, (F, 3) faces, (B, V, 3) colours -> (B, 4, S, S) RGBA."""
        raise BackendUnavailable(f"the {self.name} backend has no rgba render (backends with one: softras, dibr)")

    @abstractmethod
    def rasterize_ndc(self, verts_ndc: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) projected vertices, (F, 3) faces -> (B, S, S) soft silhouettes."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings})"
