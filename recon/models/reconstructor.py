"""Encoder + decoder: one RGBA image -> a closed 642-vertex mesh."""

from __future__ import annotations

import torch
from torch import nn

from recon.mesh import load_template
from recon.models.decoder import Decoder
from recon.models.encoders import count_parameters, get_encoder

__all__ = ["Reconstructor"]


class Reconstructor(nn.Module):
    """``forward(images (B, 4, S, S)) -> verts (B, V, 3)``; faces are shared: ``self.faces (F, 3)``.

    Args:
        encoder: registry name ("baseline" | "resnet" | "attention").
        image_size: input resolution.
        template_path: .obj template (default ``assets/sphere_642.obj``).
    """

    def __init__(self, encoder: str = "baseline", image_size: int = 64, template_path: str | None = None):
        super().__init__()
        self.encoder_name = encoder
        self.encoder = get_encoder(encoder, image_size=image_size)
        verts, faces = load_template(template_path)
        self.decoder = Decoder(verts, faces)

    @property
    def faces(self) -> torch.Tensor:
        return self.decoder.faces

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 4:
            raise ValueError(f"expected RGBA images (B, 4, S, S), got {tuple(images.shape)}")
        return self.decoder(self.encoder(images))

    def num_parameters(self) -> dict[str, int]:
        return {"encoder": count_parameters(self.encoder), "decoder": count_parameters(self.decoder),
                "total": count_parameters(self)}
