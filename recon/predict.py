"""Single-image inference: a user image -> a mesh (.obj) and a turntable PNG strip."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from recon.data.image_io import FILL, prepare_image
from recon.mesh import atomic_write_bytes, save_obj
from recon.report import render_mesh_rgb

__all__ = ["TURNTABLE_VIEWS", "PredictOutput", "output_names", "turntable_png", "predict_file"]

TURNTABLE_VIEWS = (0, 3, 6, 9, 12, 15, 18, 21)  # every 45 degrees of azimuth, elevation 30


@dataclass(frozen=True)
class PredictOutput:
    obj: Path
    turntable: Path
    used_alpha: bool


def output_names(paths: Sequence[str | os.PathLike]) -> list[str]:
    """File stems for outputs, made unique (``cat``, ``cat-2``, ...) when two inputs share a stem."""
    seen: dict[str, int] = {}
    names = []
    for p in paths:
        stem = Path(p).stem or "image"
        n = seen.get(stem, 0) + 1
        seen[stem] = n
        names.append(stem if n == 1 else f"{stem}-{n}")
    return names


def _tile(img: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3|4) uint8 -> (size, size, 3) on white, aspect kept, centred."""
    from PIL import Image

    im = Image.fromarray(img)
    if im.mode == "RGBA":
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    im = im.convert("RGB")
    scale = size / max(im.size)
    # Large photos are reduced smoothly; small inputs (the 64 px model input) enlarged without smoothing.
    resample = Image.LANCZOS if scale < 1 else Image.NEAREST
    im = im.resize((max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale))), resample)
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    canvas.paste(im, ((size - im.size[0]) // 2, (size - im.size[1]) // 2))
    return np.asarray(canvas)


def turntable_png(original: np.ndarray, model_input: torch.Tensor, verts: torch.Tensor, faces: torch.Tensor,
                  views: Sequence[int] = TURNTABLE_VIEWS, size: int = 128) -> bytes:
    """One PNG row: the original image, the framed model input, the mesh rendered at ``views``.

    Args:
        original: (H, W, 4) uint8 RGBA as read. model_input: (4, S, S) premultiplied RGBA in [0, 1].
        verts: (V, 3); faces: (F, 3).
    """
    from PIL import Image

    a = model_input[3:4].clamp(0, 1)
    on_white = (model_input[:3] + (1 - a)).clamp(0, 1)  # premultiplied RGB over white
    inp = (on_white.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    tiles = [_tile(original, size), _tile(inp, size)] + list(render_mesh_rgb(verts, faces, views, image_size=size))
    strip = np.concatenate(tiles, axis=1)
    buf = io.BytesIO()
    Image.fromarray(strip).save(buf, format="PNG")
    return buf.getvalue()


@torch.no_grad()
def predict_file(model: torch.nn.Module, path: str | os.PathLike, out_dir: str | os.PathLike, name: str,
                 size: int = 64, fill: float = FILL, device: torch.device | str = "cpu") -> PredictOutput:
    """Reconstruct the object in one image file; write ``out_dir/name.obj`` and
    ``out_dir/name_turntable.png`` (both atomically, and only once both are computed).

    Raises:
        recon.data.image_io.ImageError: the file cannot be used (missing, not an image, no object).
    """
    prepared = prepare_image(path, size=size, fill=fill)
    verts = model(prepared.image[None].to(device))[0].cpu()
    faces = model.faces.cpu()
    png = turntable_png(prepared.original, prepared.image, verts, faces)
    out = Path(out_dir)
    obj_path, png_path = out / f"{name}.obj", out / f"{name}_turntable.png"
    save_obj(obj_path, verts, faces)
    atomic_write_bytes(png_path, png)
    return PredictOutput(obj_path, png_path, prepared.used_alpha)
