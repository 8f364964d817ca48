"""Image encoders: RGBA (B, 4, S, S) -> latent (B, 512). One registry, three architectures.

* ``baseline``: the SoftRas encoder: 3x [conv k5 s2 p2 + BN + ReLU] 4->64->128->256, then FC
  256*(S/8)^2 -> 1024 -> 1024 -> 512, each followed by ReLU.
* ``resnet``: a ResNet-like encoder: conv stem, residual basic blocks with stride-2
  downsampling (64->128->256), global average pooling, FC -> 512.
* ``attention``: conv stem down to an 8x8 token grid, learned positional embedding,
  ``nn.TransformerEncoderLayer`` (s), mean pooling over tokens, FC -> 512.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn
import torch.nn.functional as F

__all__ = ["ENCODERS", "CHANNELS_LAST", "get_encoder", "BaselineEncoder", "ResNetEncoder", "AttentionEncoder",
           "count_parameters"]


def _conv_bn_relu(cin: int, cout: int, k: int = 5, s: int = 2) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class BaselineEncoder(nn.Module):
    """SoftRas ``Encoder`` (examples/recon/models.py)."""

    def __init__(self, dim_in: int = 4, dim_out: int = 512, dim1: int = 64, dim2: int = 1024, image_size: int = 64):
        super().__init__()
        self.convs = nn.Sequential(_conv_bn_relu(dim_in, dim1), _conv_bn_relu(dim1, dim1 * 2),
                                   _conv_bn_relu(dim1 * 2, dim1 * 4))
        flat = dim1 * 4 * math.ceil(image_size / 8) ** 2
        self.fc = nn.Sequential(nn.Linear(flat, dim2), nn.ReLU(inplace=True), nn.Linear(dim2, dim2),
                                nn.ReLU(inplace=True), nn.Linear(dim2, dim_out), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 4, S, S) -> (B, 512)."""
        return self.fc(self.convs(x).flatten(1))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(y)) + self.skip(x), inplace=True)


class ResNetEncoder(nn.Module):
    """ResNet-like: stem conv k5 s2 (->32x32), residual stages 64 (s1), 128 (s2), 256 (s2) -> 8x8,
    then flatten-free head: global average + max pooling concatenated, FC 512 -> 1024 -> 512."""

    def __init__(self, dim_in: int = 4, dim_out: int = 512, width: int = 64, blocks: int = 1, image_size: int = 64):
        # image_size: unused (global pooling fits any size); accepted so every encoder takes the same options
        super().__init__()
        self.stem = _conv_bn_relu(dim_in, width, k=5, s=2)
        stages, cin = [], width
        for cout, stride in ((width, 1), (width * 2, 2), (width * 4, 2)):
            for b in range(blocks):
                stages.append(_BasicBlock(cin, cout, stride if b == 0 else 1))
                cin = cout
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.Linear(2 * cin * 4, 1024), nn.ReLU(inplace=True), nn.Linear(1024, dim_out),
                                  nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 4, S, S) -> (B, 512)."""
        y = self.stages(self.stem(x))
        # 2x2 spatial pooling keeps coarse layout (where the parts are), which global pooling loses.
        pooled = torch.cat([F.adaptive_avg_pool2d(y, 2), F.adaptive_max_pool2d(y, 2)], dim=1)
        return self.head(pooled.flatten(1))


class AttentionEncoder(nn.Module):
    """Conv stem to an 8x8 token grid + learned positional embedding + Transformer encoder
    layer(s) + mean pooling -> FC 512."""

    def __init__(self, dim_in: int = 4, dim_out: int = 512, dim: int = 256, heads: int = 8, layers: int = 2,
                 image_size: int = 64):
        super().__init__()
        self.stem = nn.Sequential(_conv_bn_relu(dim_in, 64), _conv_bn_relu(64, 128), _conv_bn_relu(128, dim))
        tokens = math.ceil(image_size / 8) ** 2
        self.pos = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=dim * 4, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Sequential(nn.Linear(dim, 1024), nn.ReLU(inplace=True), nn.Linear(1024, dim_out),
                                  nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 4, S, S) -> (B, 512)."""
        t = self.stem(x).flatten(2).transpose(1, 2) + self.pos  # (B, 64, dim)
        t = self.norm(self.transformer(t))
        return self.head(t.mean(1))


ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "baseline": BaselineEncoder,
    "resnet": ResNetEncoder,
    "attention": AttentionEncoder,
}


# Precisions in which an encoder runs faster with channels_last (NHWC) activations and conv weights.
# Measured (``python -m pipelines.bench --layouts``: forward + backward + Adam, 1 thread, CPU time,
# AVX512-BF16 CPU): every encoder gains in both precisions at batch 16 and 64 (2-18 %; docs/performance.md,
# "The training step").
CHANNELS_LAST: dict[str, tuple[str, ...]] = {
    "baseline": ("fp32", "bf16"),
    "resnet": ("fp32", "bf16"),
    "attention": ("fp32", "bf16"),
}


def get_encoder(name: str, **kwargs) -> nn.Module:
    """Build an encoder by name. Raises ValueError listing the valid names."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; valid encoders: {', '.join(ENCODERS)}")
    return ENCODERS[name](**kwargs)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
