"""Pictures: shaded mesh renders, the Fig. 2-style prediction grid, training curves, and the
prediction meshes saved beside them. Every file is written atomically.

Mesh renders are Lambert-shaded on white, with the light fixed in the camera frame
(``recon.data.raster.DEFAULT_LIGHT``). A mesh without colours is drawn by the dataset's renderer
(``render_views``: flat grey faces, 3x3 supersampled coverage). A mesh with per-vertex colours (a
coloured run's prediction) is drawn as ``colour * shade``: the same flat per-face shade
(``shading_from_views``, with a larger ambient term, ``COLOUR_AMBIENT``, since predicted colours already
carry some of the images' shading) times the vertex colours interpolated across the face, through
the DIB-R-style hard rasterizer (``recon.ops.rgba.dibr_rgba``, its torch reference: no kernel
build) at the same 3x3 samples per pixel, averaged down. With white colours and the same ambient
term it draws what ``render_views`` draws (``tests/test_colour_outputs.py``)."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any, Sequence

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from recon import cameras
from recon.data import raster
from recon.data.raster import DEFAULT_LIGHT, render_views
from recon.io import atomic_write_bytes, write_json
from recon.mesh import save_obj, voxels_to_mesh
from recon.report.mesh_export import save_glb, save_ply
from recon.names import safe_component
from recon.render.base import RasterSettings
from recon.ops.rgba import dibr_rgba
from recon.runtime import one_thread
from recon.evaluate import Prediction

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the non-interactive backend)


__all__ = ["FIG_VIEWS", "MANIFEST_NAME", "COLOUR_AMBIENT", "shading_from_views", "render_mesh_rgb",
           "figure_predictions", "prediction_mesh_name", "save_prediction_meshes", "plot_curves"]

FIG_VIEWS = (3, 9, 15)  # three viewpoints 90 degrees apart, none of them a canonical side view
COLOUR_AMBIENT = 0.5  # ambient share of a coloured render's shade (predicted colours already hold some shading)
_SUPERSAMPLE = 3  # samples per pixel side of a coloured render (as render_views' coverage)
_HARD_SIGMA = 1e-12  # DIB-R soft-alpha sharpness of a coloured render: alpha is the pixel's coverage
MANIFEST_NAME = "predictions.json"  # what save_prediction_meshes wrote, beside the meshes


def _save_figure(fig: Any, path: str | os.PathLike) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def shading_from_views(verts: torch.Tensor, faces: torch.Tensor, azimuth: torch.Tensor,
                 light_dir: Sequence[float] = DEFAULT_LIGHT, ambient: float = COLOUR_AMBIENT) -> torch.Tensor:
    """Lambert shade of every face seen from each azimuth, as ``render_views`` shades its faces
    (``recon.data.raster.face_shading``, here with the coloured renders' ambient term).

    Args:
        verts: (V, 3) world coordinates. faces: (F, 3). azimuth: (n,) degrees.
    Returns:
        (n, F) shades in [ambient, 1].
    """
    n = azimuth.shape[0]
    cam = cameras.look_at(verts[None].expand(n, -1, -1), cameras.eye_from_angles(azimuth).to(verts))  # (n, V, 3)
    return raster.face_shading(cam[:, faces], light_dir, ambient)[0]


def _render_coloured(verts: torch.Tensor, faces: torch.Tensor, colours: torch.Tensor, views: Sequence[int],
                     image_size: int) -> np.ndarray:
    """Each face's corner colours times its ``shading_from_views`` (faces get their own corners, so the
    shade stays flat while the colours interpolate), rendered by ``dibr_rgba`` at ``_SUPERSAMPLE`` x
    the size, averaged down (premultiplied) and composited on white. Returns (len(views), S, S, 3) uint8."""
    if colours.shape != verts.shape:
        raise ValueError(f"render_mesh_rgb: colours must have shape {tuple(verts.shape)} like verts, got "
                         f"{tuple(colours.shape)}")
    azimuth = cameras.view_azimuths(torch.as_tensor(list(views)))
    n, nf = azimuth.shape[0], faces.shape[0]
    shade = shading_from_views(verts, faces, azimuth)  # (n, F)
    corner_colours = (colours.clamp(0, 1)[faces][None] * shade[..., None, None]).reshape(n, 3 * nf, 3)
    corners = verts[faces].reshape(1, 3 * nf, 3).expand(n, -1, -1)
    own_faces = torch.arange(3 * nf).view(nf, 3)
    settings = RasterSettings(image_size=image_size * _SUPERSAMPLE, sigma=_HARD_SIGMA)
    rgba = dibr_rgba(cameras.project(corners, azimuth), own_faces, corner_colours, settings, impl="torch")
    alpha = rgba[:, 3:4]  # (n, 1, S', S'); RGB is not premultiplied
    pooled = F.avg_pool2d(torch.cat([rgba[:, :3] * alpha, alpha], 1), _SUPERSAMPLE)  # (n, 4, S, S) premultiplied
    out = (pooled[:, :3] + (1 - pooled[:, 3:4])).clamp(0, 1)
    return (out.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


@torch.no_grad()
def render_mesh_rgb(verts: torch.Tensor, faces: torch.Tensor, views: Sequence[int] = FIG_VIEWS,
                    image_size: int = 128, colours: torch.Tensor | None = None) -> np.ndarray:
    """Shaded renders of a mesh (verts (V, 3), faces (F, 3)) on white: flat grey faces, or with
    ``colours`` (V, 3) sRGB in [0, 1] the vertex colours times a Lambert shade (see the module doc).
    Returns (len(views), S, S, 3) uint8."""
    if faces.numel() == 0:
        return np.full((len(views), image_size, image_size, 3), 255, np.uint8)
    v, f = verts.detach().cpu().float(), faces.detach().cpu().long()
    with one_thread():
        if colours is not None:
            return _render_coloured(v, f, colours.detach().cpu().float(), views, image_size)
        rgba = render_views(v, f, list(views), image_size=image_size)
    rgba = rgba.astype(np.float32) / 255.0
    rgb, a = rgba[:, :3], rgba[:, 3:4]
    out = rgb + (1 - a)  # RGB is premultiplied (over black): composite on white
    return (out.transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)


def _image_rgb(image: torch.Tensor) -> np.ndarray:
    """(4, S, S) premultiplied RGBA in [0,1] (a dataset image) -> (S, S, 3) on white."""
    x = image.detach().cpu().numpy()
    rgb = x[:3] + (1 - x[3:4])
    return (rgb.transpose(1, 2, 0) * 255).round().clip(0, 255).astype(np.uint8)


def _mathtext_literal(text: str) -> str:
    """``text`` drawn as written by matplotlib: ``$`` would start mathtext (and a bad formula fails the save)."""
    return text.replace("$", r"\$")


def figure_predictions(predictions: Sequence[Prediction], faces: torch.Tensor, path: str | os.PathLike,
                       title: str = "") -> None:
    """Fig. 2-style grid: per row the input image, the predicted mesh from 3 viewpoints (in its
    predicted vertex colours when the prediction has them, ``Prediction.colours``; else grey) and the
    ground-truth voxels from the first of those viewpoints. Written atomically as PNG."""
    rows = max(len(predictions), 1)
    fig, axes = plt.subplots(rows, 5, figsize=(10, 2.1 * rows), squeeze=False)
    shown = "predicted colours" if any(p.colours is not None for p in predictions) else "prediction"
    heads = ["input"] + [f"{shown}, view {v}" for v in FIG_VIEWS] + ["GT voxels"]
    for r, p in enumerate(predictions):
        pred = render_mesh_rgb(p.verts, faces, colours=p.colours)
        gv, gf = voxels_to_mesh(p.voxels)
        gt = render_mesh_rgb(gv, gf, views=FIG_VIEWS[:1])
        for c, img in enumerate([_image_rgb(p.image), *pred, gt[0]]):
            ax = axes[r, c]
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(heads[c], fontsize=8)
        axes[r, 0].set_ylabel(f"{_mathtext_literal(p.name)}\nIoU {p.iou:.2f}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (2.1 * rows)) if title else None)
    _save_figure(fig, path)


def prediction_mesh_name(category: str, object_id: str, view: int) -> str:
    """File stem of a saved prediction: ``<category>_<object id>_view<vv>``. Both names come from the
    dataset file: each goes through ``recon.names.safe_component`` (ASCII letters, digits, ``-_.``
    kept, at most 64 characters, a hash of the original when changed), so the stem is one file name
    inside the output folder whatever the file calls things (``../x``, ``/abs``, NUL, ...)."""
    return f"{safe_component(category)}_{safe_component(object_id)}_view{int(view):02d}"


def save_prediction_meshes(predictions: Sequence[Prediction], faces: torch.Tensor, out_dir: str | os.PathLike,
                           colours: Sequence[torch.Tensor | None] | None = None) -> list[Path]:
    """Write each kept prediction as ``<category>_<object>_view<v>``: ``.obj``, ``.ply`` and ``.glb``
    (vertex colours, see ``recon.report.mesh_export``), its input image as ``_input.png``, and a manifest
    ``predictions.json`` listing them (what ``recon.report.viewer.viewer_items_from_meshes`` reads).

    Args:
        faces: (F, 3) shared by every prediction.
        colours: per prediction (V, 3) sRGB in [0, 1] or None (grey); None for all grey.
    Returns:
        The .obj paths, in order.
    """
    if colours is not None and len(colours) != len(predictions):
        raise ValueError(f"save_prediction_meshes: {len(colours)} colour arrays for {len(predictions)} predictions")
    out, manifest = [], []
    for i, p in enumerate(predictions):
        stem = prediction_mesh_name(p.name, p.object_id, p.view)
        rgb = None if colours is None else colours[i]
        path = Path(out_dir) / f"{stem}.obj"
        save_obj(path, p.verts, faces)
        save_ply(path.with_suffix(".ply"), p.verts, faces, rgb)
        save_glb(path.with_suffix(".glb"), p.verts, faces, rgb)
        buf = io.BytesIO()
        Image.fromarray(_image_rgb(p.image)).save(buf, format="PNG")
        atomic_write_bytes(Path(out_dir) / f"{stem}_input.png", buf.getvalue())
        manifest.append({"stem": stem, "category": p.category, "name": p.name, "object_id": p.object_id,
                         "view": int(p.view), "iou": float(p.iou) if math.isfinite(p.iou) else None,
                         "files": {"obj": f"{stem}.obj", "ply": f"{stem}.ply", "glb": f"{stem}.glb",
                                   "input": f"{stem}_input.png"}})
        out.append(path)
    write_json(manifest, Path(out_dir) / MANIFEST_NAME)
    return out


def _curve(records: Sequence[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of ``key``; a step logged twice (before a crash and after resuming) keeps the later value."""
    by_step = {int(r["step"]): float(r[key]) for r in records if key in r and r[key] is not None}
    steps = np.array(sorted(by_step), dtype=np.int64)
    return steps, np.array([by_step[s] for s in steps], dtype=np.float64)


def plot_curves(runs: dict[str, Sequence[dict[str, Any]]], path: str | os.PathLike) -> None:
    """Training loss (raw, and a moving average) and validation IoU against steps, one line per run.

    Args:
        runs: run name -> its ``metrics.jsonl`` records (``recon.runs.read_metrics``).
    """
    fig, (ax_loss, ax_iou) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (name, recs) in enumerate(runs.items()):
        color = f"C{i}"
        steps, loss = _curve(recs, "loss")
        if len(steps):
            ax_loss.plot(steps, loss, color=color, alpha=0.25, lw=0.8)
            k = max(1, len(loss) // 20)
            smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
            ax_loss.plot(steps[k - 1:], smooth, color=color, lw=1.8, label=name)
        steps, iou = _curve(recs, "val_iou")
        if len(steps):
            ax_iou.plot(steps, iou, color=color, marker="o", ms=3, lw=1.5, label=name)
    ax_loss.set(title="training loss (silhouette IoU + regularisers)", xlabel="step", ylabel="loss")
    ax_iou.set(title="validation 3D IoU", xlabel="step", ylabel="IoU")
    for ax in (ax_loss, ax_iou):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    _save_figure(fig, path)
