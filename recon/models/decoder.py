"""Latent -> closed mesh by deforming the template sphere (SoftRas/NMR decoder)."""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

__all__ = ["Decoder", "RENAMED_KEYS"]

# state_dict keys of earlier releases -> today's (checkpoints written before the rename still load)
RENAMED_KEYS = {"fc_bias.": "fc_offsets."}


class Decoder(nn.Module):
    """FC 512 -> 1024 -> 2048 (ReLU), heads: centroid (x0.1) and per-vertex offsets.

    ``v = sigmoid(logit(|0.5 t|) + offset) * sign(t)``, then each side is scaled towards the
    tanh-squashed centroid and shifted by it, and everything is scaled by 0.5, so vertices always
    stay inside ``[-0.5, 0.5]^3``. Zero offsets and centroid give the template at radius 0.25.

    Args:
        template_verts: (V, 3) unit-sphere template; template_faces: (F, 3).
    """

    def __init__(self, template_verts: torch.Tensor, template_faces: torch.Tensor, dim_in: int = 512,
                 centroid_scale: float = 0.1, offset_scale: float = 1.0, obj_scale: float = 0.5):
        super().__init__()
        self.register_buffer("template", template_verts.float().clone())
        self.register_buffer("faces", template_faces.long().clone())
        self.num_verts = template_verts.shape[0]
        self.centroid_scale = centroid_scale
        self.offset_scale = offset_scale
        self.obj_scale = obj_scale
        self.fc1 = nn.Linear(dim_in, 1024)
        self.fc2 = nn.Linear(1024, 2048)
        self.fc_centroid = nn.Linear(2048, 3)
        self.fc_offsets = nn.Linear(2048, self.num_verts * 3)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001 (torch's hook)
        """Load checkpoints that name the offsets head ``fc_bias`` (before it was ``fc_offsets``)."""
        for key in [k for k in state_dict if k.startswith(prefix)]:
            for old, new in RENAMED_KEYS.items():
                if key.startswith(prefix + old):
                    state_dict[prefix + new + key[len(prefix + old):]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def deform(self, offsets: torch.Tensor, centroid: torch.Tensor) -> torch.Tensor:
        """Offsets (B, V, 3) and raw centroid (B, 3) -> vertices (B, V, 3) in [-0.5, 0.5]^3."""
        base = self.template * self.obj_scale
        sign = torch.sign(base)
        base = base.abs()
        base = torch.log(base / (1 - base))
        c = torch.tanh(centroid)[:, None, :]
        v = torch.sigmoid(base + offsets) * sign
        v = F.relu(v) * (1 - c) - F.relu(-v) * (c + 1)
        return (v + c) * 0.5

    def heads(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The fully connected part: latent (B, 512) -> (offsets (B, V, 3), raw centroid (B, 3)),
        in the autocast dtype when called under autocast."""
        x = F.relu(self.fc1(latent), inplace=True)
        x = F.relu(self.fc2(x), inplace=True)
        centroid = self.fc_centroid(x) * self.centroid_scale
        offsets = (self.fc_offsets(x) * self.offset_scale).view(-1, self.num_verts, 3)
        return offsets, centroid

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """latent: (B, 512) -> vertices (B, V, 3), always float32 (``deform`` runs in float32)."""
        offsets, centroid = self.heads(latent)
        return self.deform(offsets.float(), centroid.float())

    def template_mesh(self) -> torch.Tensor:
        """(V, 3) the mesh predicted with zero offsets and centroid (the 'template sphere' baseline)."""
        zeros = torch.zeros(1, self.num_verts, 3, device=self.template.device)
        return self.deform(zeros, torch.zeros(1, 3, device=self.template.device))[0]
