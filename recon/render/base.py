"""The renderer interface shared by every backend.

A renderer maps a batch of meshes seen from a batch of viewpoints to soft silhouettes::

    renderer.silhouettes(verts (B, V, 3), faces (F, 3) int64, azimuth (B,) degrees) -> (B, S, S) in [0, 1]

Backends implement ``rasterize_ndc`` on already projected vertices; projection (SoftRas
look-at + perspective, ``recon.cameras``) is shared so that all backends see identical geometry.
``RasterSettings`` and ``BackendUnavailable`` live in :mod:`recon.ops` (the kernels take them) and are
re-exported here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from recon import cameras
from recon.ops.checks import FacesSeen, check_mesh_shapes
from recon.ops.settings import RasterSettings
from recon.ops.unavailable import BackendUnavailable

__all__ = ["BackendUnavailable", "RasterSettings", "Renderer"]


class Renderer(ABC):
    """Base class: projection + a backend-specific ``rasterize_ndc``."""

    name: str = "base"

    def __init__(self, settings: RasterSettings | None = None):
        self.settings = settings or RasterSettings()
        self._faces_seen = FacesSeen()  # face indices are checked once per faces tensor (recon.ops.checks)

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
        check_mesh_shapes(verts, faces, "verts")
        self._faces_seen.check(faces, verts.shape[1])
        return self.rasterize_ndc(self.project(verts, azimuth, elevation), faces.to(verts.device).long())

    def rgba(self, verts: torch.Tensor, faces: torch.Tensor, azimuth: torch.Tensor, colours: torch.Tensor,
             elevation: torch.Tensor | float | None = None) -> torch.Tensor:
        """Colour render of ``verts`` with per-vertex ``colours`` seen from ``azimuth``.

        Args:
            verts: (B, V, 3) float world coordinates.
            faces: (F, 3) int64, shared by the batch.
            azimuth: (B,) degrees.
            colours: (B, V, 3) per-vertex RGB.
            elevation: optional (B,) or scalar degrees (default ``settings.elevation``).
        Returns:
            (B, 4, S, S): RGB then alpha (the backend's silhouette), row 0 at the top.
        Raises:
            BackendUnavailable: the backend has no colour render.
        """
        check_mesh_shapes(verts, faces, "verts")
        if colours.dim() != 3 or colours.shape[:2] != verts.shape[:2] or colours.shape[-1] != 3:
            raise ValueError(f"colours must be (B, V, 3) with (B, V) = {tuple(verts.shape[:2])}, got "
                             f"{tuple(colours.shape)}")
        self._faces_seen.check(faces, verts.shape[1])
        ndc = self.project(verts, azimuth, elevation)
        return self.rasterize_rgba_ndc(ndc, faces.to(verts.device).long(), colours.to(ndc))

    def rasterize_rgba_ndc(self, verts_ndc: torch.Tensor, faces: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) projected vertices, (F, 3) faces, (B, V, 3) colours -> (B, 4, S, S) RGBA."""
        raise BackendUnavailable(f"the {self.name} backend has no rgba render (backends with one: softras, dibr)")

    @abstractmethod
    def rasterize_ndc(self, verts_ndc: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) projected vertices, (F, 3) faces -> (B, S, S) soft silhouettes."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings})"
