"""recon: self-supervised single-view 3D mesh reconstruction with soft rasterization."""

__version__ = "0.1.0"
