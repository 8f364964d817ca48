"""SoftRas camera conventions: look-at + perspective projection, batched and differentiable.

Conventions (SoftRas ``examples/recon/datasets.py`` and ``soft_renderer/functional``):

* view ``v`` of the 24-view ring has azimuth ``-15 * v`` degrees, elevation 30 degrees,
  camera distance 2.732 and looks at the origin with up ``(0, 1, 0)``;
* eye = ``(d cosE sinA, d sinE, -d cosE cosA)``;
* camera frame rows: ``z = normalize(at - eye)``, ``x = normalize(up x z)``, ``y = z x x``;
* perspective: ``x_ndc = x / (z tan(angle))``, ``y_ndc = y / (z tan(angle))`` with a 15 degree
  viewing angle;
* NDC ``[-1, 1]^2``; image row 0 is the top (``y = +1``), column 0 the left (``x = -1``); pixel
  ``(row r, col c)`` has its centre at ``x = (2c + 1 - S) / S``, ``y = (S - 1 - 2r) / S``.
"""

from __future__ import annotations

import math

import torch

from recon.choices import NUM_VIEWS

__all__ = [
    "NUM_VIEWS",
    "AZIMUTH_STEP",
    "ELEVATION",
    "DISTANCE",
    "VIEWING_ANGLE",
    "IMAGE_SIZE",
    "view_azimuths",
    "eye_from_angles",
    "look_at",
    "perspective",
    "project",
    "ndc_to_pixel",
    "pixel_centers",
]

AZIMUTH_STEP = 15.0
ELEVATION = 30.0
DISTANCE = 2.732
VIEWING_ANGLE = 15.0
IMAGE_SIZE = 64


def view_azimuths(view_ids: torch.Tensor | int, azimuth_step: float = AZIMUTH_STEP) -> torch.Tensor:
    """Azimuth in degrees of the standard views.

    Args:
        view_ids: int or (B,) integer tensor of view indices in ``[0, 24)``.
    Returns:
        (B,) float32 azimuths ``-azimuth_step * view_ids``.
    """
    v = torch.as_tensor(view_ids)
    return -azimuth_step * v.to(torch.float32).reshape(-1)


def eye_from_angles(
    azimuth: torch.Tensor,
    elevation: torch.Tensor | float = ELEVATION,
    distance: torch.Tensor | float = DISTANCE,
) -> torch.Tensor:
    """Camera positions from spherical angles in degrees (SoftRas ``get_points_from_angles``).

    Args:
        azimuth: (B,) degrees.
        elevation: (B,) or scalar degrees.
        distance: (B,) or scalar.
    Returns:
        (B, 3) eye positions, same dtype/device as ``azimuth``.
    """
    azimuth = torch.as_tensor(azimuth)
    if not azimuth.is_floating_point():
        azimuth = azimuth.float()
    a = torch.deg2rad(azimuth.reshape(-1))
    e = torch.deg2rad(torch.as_tensor(elevation, dtype=a.dtype, device=a.device)).expand_as(a)
    d = torch.as_tensor(distance, dtype=a.dtype, device=a.device).expand_as(a)
    return torch.stack([d * torch.cos(e) * torch.sin(a), d * torch.sin(e), -d * torch.cos(e) * torch.cos(a)], dim=1)


def look_at(verts: torch.Tensor, eye: torch.Tensor, at: tuple[float, float, float] = (0.0, 0.0, 0.0),
            up: tuple[float, float, float] = (0.0, 1.0, 0.0)) -> torch.Tensor:
    """World -> camera coordinates (camera looks along +z).

    Args:
        verts: (B, V, 3) world coordinates.
        eye: (B, 3) camera positions.
    Returns:
        (B, V, 3) camera-frame coordinates.
    """
    at_t = torch.tensor(at, dtype=verts.dtype, device=verts.device).expand_as(eye)
    up_t = torch.tensor(up, dtype=verts.dtype, device=verts.device).expand_as(eye)
    eye = eye.to(verts.dtype)
    z = torch.nn.functional.normalize(at_t - eye, dim=1, eps=1e-5)
    x = torch.nn.functional.normalize(torch.cross(up_t, z, dim=1), dim=1, eps=1e-5)
    y = torch.nn.functional.normalize(torch.cross(z, x, dim=1), dim=1, eps=1e-5)
    rot = torch.stack([x, y, z], dim=1)  # (B, 3, 3), rows are the camera axes
    return torch.matmul(verts - eye[:, None, :], rot.transpose(1, 2))


def perspective(verts: torch.Tensor, viewing_angle: float = VIEWING_ANGLE) -> torch.Tensor:
    """Camera frame -> NDC ``(x, y)`` plus depth ``z``.

    Args:
        verts: (B, V, 3) camera-frame coordinates (z > 0 in front of the camera).
    Returns:
        (B, V, 3) with ``x/(z tan a)``, ``y/(z tan a)``, ``z``.
    """
    width = math.tan(math.radians(viewing_angle))
    z = verts[..., 2]
    return torch.stack([verts[..., 0] / (z * width), verts[..., 1] / (z * width), z], dim=-1)


def project(
    verts: torch.Tensor,
    azimuth: torch.Tensor,
    elevation: torch.Tensor | float = ELEVATION,
    distance: torch.Tensor | float = DISTANCE,
    viewing_angle: float = VIEWING_ANGLE,
) -> torch.Tensor:
    """World vertices -> NDC + depth for a batch of viewpoints.

    Args:
        verts: (B, V, 3) world coordinates.
        azimuth: (B,) degrees (``view_azimuths(view_ids)`` for the standard ring).
    Returns:
        (B, V, 3): NDC x, NDC y (both in [-1, 1] on screen), camera depth z.
    """
    if verts.dim() != 3 or verts.shape[-1] != 3:
        raise ValueError(f"verts must have shape (B, V, 3), got {tuple(verts.shape)}")
    azimuth = torch.as_tensor(azimuth, device=verts.device).to(verts.dtype).reshape(-1)
    if azimuth.numel() == 1 and verts.shape[0] != 1:
        azimuth = azimuth.expand(verts.shape[0])
    if azimuth.shape[0] != verts.shape[0]:
        raise ValueError(f"got {azimuth.shape[0]} azimuths for a batch of {verts.shape[0]} meshes")
    eye = eye_from_angles(azimuth, elevation, distance)
    return perspective(look_at(verts, eye), viewing_angle)


def ndc_to_pixel(xy: torch.Tensor, image_size: int = IMAGE_SIZE) -> torch.Tensor:
    """NDC ``(x, y)`` -> continuous pixel ``(col, row)``; integer values are pixel centres.

    Args:
        xy: (..., 2) NDC coordinates.
    Returns:
        (..., 2) ``(col, row)``.
    """
    col = (xy[..., 0] + 1.0) * image_size / 2.0 - 0.5
    row = (1.0 - xy[..., 1]) * image_size / 2.0 - 0.5
    return torch.stack([col, row], dim=-1)


def pixel_centers(image_size: int = IMAGE_SIZE, dtype: torch.dtype = torch.float32,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """NDC coordinates of all pixel centres.

    Returns:
        (S, S, 2) with ``[r, c] = (x, y)`` of pixel row r, column c.
    """
    s = image_size
    idx = torch.arange(s, dtype=dtype, device=device)
    x = (2.0 * idx + 1.0 - s) / s
    y = (s - 1.0 - 2.0 * idx) / s
    return torch.stack([x[None, :].expand(s, s), y[:, None].expand(s, s)], dim=-1)
