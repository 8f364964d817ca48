"""Result presentation: rich tables (the seed's Table 1), JSON records, Fig. 2-style PNGs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from rich.table import Table

from recon.evaluate import EvalResult, Prediction
from recon.mesh import atomic_write_bytes, save_obj, voxels_to_mesh

__all__ = ["results_table", "eval_record", "write_json", "render_mesh_rgb", "figure_predictions",
           "save_prediction_meshes"]

FIG_VIEWS = (3, 9, 15)  # three viewpoints 90 degrees apart, none of them a canonical side view


def results_table(result: EvalResult, template: dict[str, float] | None = None,
                  mean_shape: dict[str, float] | None = None, title: str = "3D reconstruction") -> Table:
    """Per-category rows (loss, IoU, Chamfer, F-score) plus the overall mean and baseline IoUs."""
    t = Table(title=title)
    t.add_column("category")
    for col in ("n", "sil. loss", "3D IoU", "Chamfer", "F@0.05", "IoU template", "IoU mean shape"):
        t.add_column(col, justify="right")

    def fmt(v: float | None, digits: int = 4) -> str:
        return "-" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"

    for name, m in sorted(result.per_category.items()):
        t.add_row(name, str(m.get("n", "")), fmt(m.get("loss")), fmt(m.get("iou")), fmt(m.get("chamfer")),
                  fmt(m.get("fscore")), fmt((template or {}).get(name)), fmt((mean_shape or {}).get(name)))
    t.add_section()
    mean = lambda d: float(np.mean(list(d.values()))) if d else None  # noqa: E731
    t.add_row("[bold]mean", "", fmt(result.mean_loss), f"[bold]{fmt(result.mean_iou)}", fmt(result.mean("chamfer")),
              fmt(result.mean("fscore")), fmt(mean(template or {})), fmt(mean(mean_shape or {})))
    return t


def eval_record(result: EvalResult, template: dict[str, float], mean_shape: dict[str, float],
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The eval JSON: per_category {name: {loss, iou, chamfer, fscore, n}}, mean_loss, mean_iou, baselines."""
    rec = {
        "per_category": result.per_category,
        "mean_loss": result.mean_loss,
        "mean_iou": result.mean_iou,
        "mean_chamfer": result.mean("chamfer"),
        "mean_fscore": result.mean("fscore"),
        "baselines": {
            "template": {"iou": float(np.mean(list(template.values()))), "per_category": template},
            "mean_shape": {"iou": float(np.mean(list(mean_shape.values()))), "per_category": mean_shape},
        },
    }
    rec.update(extra or {})
    return rec


def write_json(obj: Any, path: str | os.PathLike) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=float) + "\n").encode())


def render_mesh_rgb(verts: torch.Tensor, faces: torch.Tensor, views: Sequence[int] = FIG_VIEWS,
                    image_size: int = 128) -> np.ndarray:
    """Shaded renders of a mesh on white. Returns (len(views), S, S, 3) uint8."""
    from recon.data.raster import render_views

    if faces.numel() == 0:
        return np.full((len(views), image_size, image_size, 3), 255, np.uint8)
    rgba = render_views(verts.detach().cpu().float(), faces.cpu(), list(views), image_size=image_size)
    rgba = rgba.astype(np.float32) / 255.0
    rgb, a = rgba[:, :3], rgba[:, 3:4]
    out = rgb * a + (1 - a)  # composite on white
    return (out.transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)


def _image_rgb(image: torch.Tensor) -> np.ndarray:
    """(4, S, S) RGBA in [0,1] -> (S, S, 3) on white."""
    x = image.detach().cpu().numpy()
    rgb = x[:3] * x[3:4] + (1 - x[3:4])
    return (rgb.transpose(1, 2, 0) * 255).round().clip(0, 255).astype(np.uint8)


def figure_predictions(predictions: Sequence[Prediction], faces: torch.Tensor, path: str | os.PathLike,
                       title: str = "") -> None:
    """Fig. 2-style grid: per row the input image, the predicted mesh from 3 viewpoints and the
    ground-truth voxels from the first of those viewpoints. Written atomically as PNG."""
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(len(predictions), 1)
    fig, axes = plt.subplots(rows, 5, figsize=(10, 2.1 * rows), squeeze=False)
    heads = ["input"] + [f"prediction, view {v}" for v in FIG_VIEWS] + ["GT voxels"]
    for r, p in enumerate(predictions):
        pred = render_mesh_rgb(p.verts, faces)
        gv, gf = voxels_to_mesh(p.voxels)
        gt = render_mesh_rgb(gv, gf, views=FIG_VIEWS[:1])
        panels = [_image_rgb(p.image), *pred, gt[0]]
        for c, img in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(heads[c], fontsize=8)
        axes[r, 0].set_ylabel(f"{p.name}\nIoU {p.iou:.2f}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (2.1 * rows)) if title else None)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def save_prediction_meshes(predictions: Sequence[Prediction], faces: torch.Tensor, out_dir: str | os.PathLike
                           ) -> list[Path]:
    """Write each kept prediction as ``<category>_<object>_view<v>.obj``."""
    out = []
    for p in predictions:
        safe_id = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in p.object_id)[:64]
        path = Path(out_dir) / f"{p.name}_{safe_id}_view{p.view:02d}.obj"
        save_obj(path, p.verts, faces)
        out.append(path)
    return out
