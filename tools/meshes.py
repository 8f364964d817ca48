"""The meshes the GPU check renders: deformed icospheres (projected or not) and odd faces."""

from __future__ import annotations

import torch

from recon import cameras
from recon.mesh import icosphere

__all__ = ["deformed_spheres", "projected", "odd_faces"]


def deformed_spheres(batch: int, subdivisions: int, device: torch.device | str, seed: int = 0,
                     dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Smoothly deformed icospheres of radius ~0.3-0.45 (``subdivisions`` 3: 1280 faces, 5: 20480).

    Returns:
        verts (B, V, 3), faces (F, 3) int64, on ``device``.
    """
    g = torch.Generator().manual_seed(seed)
    v, f = icosphere(subdivisions)
    v = v.to(torch.float64)
    scale = 0.3 + 0.15 * torch.rand(batch, 1, 3, generator=g, dtype=torch.float64)
    bumps = 1 + 0.15 * torch.sin(3 * v[None] @ torch.randn(batch, 3, 3, generator=g, dtype=torch.float64))
    return (v[None] * scale * bumps).to(device=device, dtype=dtype), f.to(device)


def projected(batch: int, subdivisions: int, device: torch.device | str, seed: int = 0,
              dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """``deformed_spheres`` seen from views ``0, 1, 2, ...``: (B, V, 3) NDC vertices and faces."""
    verts, faces = deformed_spheres(batch, subdivisions, "cpu", seed, torch.float64)
    az = cameras.view_azimuths(torch.arange(batch) % cameras.NUM_VIEWS).to(torch.float64)
    return cameras.project(verts, az).to(device=device, dtype=dtype), faces.to(device)


def odd_faces(device: torch.device | str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Random triangles with a zero-area face, a repeated-vertex face and one behind the camera."""
    g = torch.Generator().manual_seed(7)
    xy = torch.rand(2, 12, 2, generator=g, dtype=torch.float64) * 1.6 - 0.8
    z = 1.0 + torch.rand(2, 12, 1, generator=g, dtype=torch.float64)
    verts = torch.cat([xy, z], dim=-1)
    verts[:, 9, :2] = 0.5 * (verts[:, 10, :2] + verts[:, 11, :2])
    verts[:, 8, 2] = -0.5
    faces = torch.tensor([[0, 1, 2], [3, 4, 5], [2, 6, 7], [4, 4, 5], [8, 6, 1]])
    return verts.to(device=device, dtype=dtype), faces.to(device)
