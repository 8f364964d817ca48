"""Colour heads: per-vertex RGB for the predicted mesh.

Every head is called as ``head(latent, images, verts, azimuth) -> colours (B, V, 3)`` in [0, 1], in
the colour space of the dataset images (their 8-bit values / 255, shown as sRGB), unpremultiplied.

* ``latent``: an MLP on the encoder's latent, FC 512 -> 1024 (ReLU) -> V*3, gives per-vertex gains
  (``2 sigmoid``, 0..2) on the input image's mean object colour. It colours every vertex, seen or not,
  and needs no camera.
* ``sample``: no weights; each vertex takes the colour of the input image where it projects
  (``recon.cameras.project`` at the input view's azimuth + bilinear ``grid_sample``), the
  premultiplied sample composited over the image's mean object colour, so vertices projecting onto
  the background (or onto the silhouette's edge) fall back to that colour. Occluded vertices take the
  colour of the surface in front of them. It needs the input camera, which only posed images have.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recon import cameras

__all__ = ["COLOUR_HEADS", "LatentColourHead", "ImageSampleColourHead", "get_colour_head", "image_mean_colour",
           "sample_image"]


def image_mean_colour(images: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Mean unpremultiplied colour of the object in each image (coverage-weighted).

    Args:
        images: (B, 4, S, S) RGBA in [0, 1], RGB premultiplied by alpha (composited over black).
    Returns:
        (B, 3): ``sum(rgb) / sum(alpha)`` per image (0 for an empty image).
    """
    return images[:, :3].sum((2, 3)) / images[:, 3].sum((1, 2)).clamp_min(eps)[:, None]


def sample_image(images: torch.Tensor, verts: torch.Tensor, azimuth: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``images`` where ``verts`` project from ``azimuth`` (the dataset camera).

    Args:
        images: (B, C, S, S) row 0 at the top.
        verts: (B, V, 3) world coordinates.
        azimuth: (B,) degrees.
    Returns:
        (B, V, C); points projecting outside the image read zeros. Differentiable w.r.t. ``verts``.
    """
    ndc = cameras.project(verts, azimuth)
    # NDC x right / y up, pixel centres at (2c + 1 - S) / S: grid_sample's align_corners=False, y flipped
    grid = torch.stack([ndc[..., 0], -ndc[..., 1]], dim=-1)[:, :, None, :]  # (B, V, 1, 2)
    out = F.grid_sample(images.to(verts.dtype), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[..., 0].transpose(1, 2)


class LatentColourHead(nn.Module):
    """Per-vertex RGB from the latent, as a gain on the input image's mean object colour:
    ``clamp(mean_colour(image) * 2 sigmoid(FC(ReLU(FC(latent)))), 0, 1)`` (FC ``dim_in`` -> ``hidden`` -> V*3).
    A zero output is the flat mean colour of the image; the gains (0..2 per channel and vertex) add
    shading and hue changes."""

    def __init__(self, num_verts: int, dim_in: int = 512, hidden: int = 1024):
        super().__init__()
        self.num_verts = num_verts
        self.fc1 = nn.Linear(dim_in, hidden)
        self.fc2 = nn.Linear(hidden, num_verts * 3)

    def forward(self, latent: torch.Tensor, images: torch.Tensor, verts: torch.Tensor | None = None,
                azimuth: torch.Tensor | None = None) -> torch.Tensor:
        """latent (B, dim_in), images (B, 4, S, S) premultiplied RGBA -> colours (B, V, 3) in [0, 1];
        ``verts`` and ``azimuth`` are not used (no camera needed)."""
        gain = 2 * torch.sigmoid(self.fc2(F.relu(self.fc1(latent)))).view(-1, self.num_verts, 3)
        return (image_mean_colour(images).to(gain.dtype)[:, None, :] * gain).clamp(0, 1)


class ImageSampleColourHead(nn.Module):
    """Per-vertex RGB sampled from the input image at the vertex's projection (no weights)."""

    def __init__(self, num_verts: int, dim_in: int = 512):
        super().__init__()
        self.num_verts = num_verts

    def forward(self, latent: torch.Tensor, images: torch.Tensor, verts: torch.Tensor,
                azimuth: torch.Tensor | None) -> torch.Tensor:
        """images (B, 4, S, S) premultiplied RGBA, verts (B, V, 3), azimuth (B,) degrees of each
        image's view -> colours (B, V, 3): ``rgb_s + (1 - alpha_s) * mean colour of the image``."""
        if azimuth is None:
            raise ValueError("the 'sample' colour head needs the azimuth of each input image's camera")
        s = sample_image(images, verts, azimuth.to(verts.device))
        fallback = image_mean_colour(images).to(verts.dtype)[:, None, :]
        return (s[..., :3] + (1 - s[..., 3:4]) * fallback).clamp(0, 1)


COLOUR_HEADS: dict[str, type[nn.Module]] = {"latent": LatentColourHead, "sample": ImageSampleColourHead}


def get_colour_head(name: str, num_verts: int, dim_in: int = 512) -> nn.Module:
    """A colour head by registry name (``COLOUR_HEADS``)."""
    if name not in COLOUR_HEADS:
        raise ValueError(f"colour head {name!r} unknown; valid heads: {', '.join(COLOUR_HEADS)}")
    return COLOUR_HEADS[name](num_verts, dim_in=dim_in)
