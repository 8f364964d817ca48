"""Encoder + decoder: one RGBA image -> a closed 642-vertex mesh."""

from __future__ import annotations

import torch
from torch import nn

from recon.mesh import load_template
from recon.models.colour_heads import get_colour_head
from recon.models.decoder import Decoder
from recon.models.encoders import CHANNELS_LAST, count_parameters, get_encoder
from recon.models.precision import autocast, check_precision

__all__ = ["Reconstructor"]


class Reconstructor(nn.Module):
    """``forward(images (B, 4, S, S)) -> verts (B, V, 3)`` float32; faces are shared: ``self.faces (F, 3)``.

    The encoder and the decoder's fully connected layers compute in ``precision`` ("fp32", or
    "bf16" under autocast, see ``recon.models.precision``), the encoder in the memory format
    that is fastest for it (``encoders.CHANNELS_LAST``); weights are float32 either way, and the
    template deformation and the returned vertices are float32.

    Args:
        encoder: registry name ("baseline" | "resnet" | "attention").
        image_size: input resolution.
        template_path: .obj template (default ``assets/sphere_642.obj``).
        precision: "fp32" | "bf16" (change it later with ``set_precision``).
        colour: colour head (``recon.models.colour_heads.COLOUR_HEADS``), or None for geometry only;
            ``forward(images, azimuth, with_colours=True) -> (verts, colours (B, V, 3))`` then.
    """

    def __init__(self, encoder: str = "baseline", image_size: int = 64, template_path: str | None = None,
                 precision: str = "fp32", colour: str | None = None):
        super().__init__()
        self.encoder_name = encoder
        self.encoder = get_encoder(encoder, image_size=image_size)
        verts, faces = load_template(template_path)
        self.decoder = Decoder(verts, faces)
        self.colour = colour
        self.colour_head = None if colour is None else get_colour_head(colour, self.decoder.num_verts)
        self.precision = "fp32"
        self.memory_format = torch.contiguous_format
        self.set_precision(precision)

    @property
    def faces(self) -> torch.Tensor:
        return self.decoder.faces

    def set_precision(self, precision: str) -> "Reconstructor":
        """Compute in ``precision`` ("fp32" | "bf16") from now on; moves the encoder's weights to the
        memory format that is fastest for it in that precision (values unchanged). Returns self."""
        check_precision(precision, allow_auto=False)
        self.precision = precision
        channels_last = precision in CHANNELS_LAST.get(self.encoder_name, ())
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.encoder.to(memory_format=self.memory_format)
        return self

    def forward(self, images: torch.Tensor, azimuth: torch.Tensor | None = None, with_colours: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """images (B, 4, S, S) -> verts (B, V, 3); with ``with_colours`` -> (verts, colours (B, V, 3) in [0, 1]),
        ``azimuth`` (B,) being the degrees of each image's view (the ``sample`` head needs it)."""
        if images.dim() != 4 or images.shape[1] != 4:
            raise ValueError(f"expected RGBA images (B, 4, S, S), got {tuple(images.shape)}")
        with autocast(images.device.type, self.precision):
            latent = self.encoder(images.contiguous(memory_format=self.memory_format))
            offsets, centroid = self.decoder.heads(latent)
        verts = self.decoder.deform(offsets.float(), centroid.float())
        if not with_colours:
            return verts
        if self.colour_head is None:
            raise ValueError("this model has no colour head (it was trained without --colour)")
        return verts, self.colour_head(latent.float(), images, verts, azimuth)

    def num_parameters(self) -> dict[str, int]:
        """``{encoder, decoder[, colour], total}`` (``colour``: the colour head, when there is one)."""
        colour = {} if self.colour_head is None else {"colour": count_parameters(self.colour_head)}
        return {"encoder": count_parameters(self.encoder), "decoder": count_parameters(self.decoder), **colour,
                "total": count_parameters(self)}
