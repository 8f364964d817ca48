"""Evaluation under the SoftRas protocol: predict a mesh from every (selected) view of every
object of a split, voxelize it at 32^3 and score 3D IoU (plus silhouette loss, Chamfer and
F-score); average per category, then the unweighted mean over categories.

Two reference rows come with it: the template sphere (the decoder's zero output) and the
category-mean shape (mean train voxels of the category thresholded at 0.5).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Sequence

import h5py
import numpy as np
import torch

from recon import cameras
from recon.data.dataset import iter_objects, split_categories
from recon.data.schema import validate
from recon.losses import iou_loss
from recon.metrics import iou_3d, mesh_vs_voxels_metrics, voxelize
from recon.render.base import Renderer

__all__ = ["parse_views", "EvalResult", "Prediction", "evaluate", "mean_shape_iou", "template_iou"]


def parse_views(spec: str | int | Sequence[int], num_views: int = cameras.NUM_VIEWS) -> list[int]:
    """``"all"`` -> every view; ``"N"`` (an int) -> N views evenly spaced; ``"0,6,12"`` -> those views."""
    if isinstance(spec, str):
        s = spec.strip().lower()
        if s == "all":
            return list(range(num_views))
        if "," in s:
            views = [int(x) for x in s.split(",") if x.strip()]
        else:
            spec = int(s)
            if not 1 <= spec <= num_views:
                raise ValueError(f"--views N must be in [1, {num_views}], got {spec}")
            return [round(i * num_views / spec) % num_views for i in range(spec)]
    elif isinstance(spec, int):
        return parse_views(str(spec), num_views)
    else:
        views = [int(v) for v in spec]
    bad = [v for v in views if not 0 <= v < num_views]
    if bad or not views:
        raise ValueError(f"views must be in [0, {num_views}), got {views}")
    return views


@dataclass
class Prediction:
    """A kept prediction (for figures): the input view and the predicted mesh."""

    category: str
    name: str
    object_id: str
    view: int
    image: torch.Tensor   # (4, S, S)
    verts: torch.Tensor   # (V, 3)
    voxels: torch.Tensor  # (32, 32, 32) bool, ground truth
    iou: float


@dataclass
class EvalResult:
    """Per-category means and overall unweighted means over categories."""

    per_category: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> {loss, iou, chamfer, fscore, n}
    predictions: list[Prediction] = field(default_factory=list)

    def mean(self, key: str) -> float:
        vals = [m[key] for m in self.per_category.values() if key in m]
        return float(np.mean(vals)) if vals else float("nan")

    @property
    def mean_iou(self) -> float:
        return self.mean("iou")

    @property
    def mean_loss(self) -> float:
        return self.mean("loss")


@torch.no_grad()
def evaluate(model: torch.nn.Module, renderer: Renderer, data: str | os.PathLike, split: str = "test",
             views: Sequence[int] | None = None, max_per_category: int | None = None,
             device: torch.device | str = "cpu", full_metrics: bool = True, keep_predictions: int = 0,
             categories: Sequence[str] | None = None, progress: Callable[[int], None] | None = None) -> EvalResult:
    """Score ``model`` on ``split``.

    Args:
        model: images (N, 4, S, S) -> verts (N, V, 3), with a ``faces`` (F, 3) attribute.
        renderer: renders the prediction at its input view for the silhouette loss.
        views: view indices per object (default: all 24).
        max_per_category: evaluate only the first N objects of each category.
        full_metrics: also compute Chamfer distance and F-score@0.05.
        keep_predictions: keep this many predictions per category (view 0 of the first objects) for figures.
        progress: called with the number of objects done after each object.
    Returns:
        EvalResult with per-category {loss, iou, chamfer, fscore, n}.
    """
    was_training = model.training
    model.eval()
    faces = model.faces
    views = list(range(cameras.NUM_VIEWS)) if views is None else list(views)
    view_t = torch.tensor(views, dtype=torch.int64)
    acc: dict[str, dict[str, list[float]]] = {}
    result = EvalResult()
    kept: dict[str, int] = {}
    for rec in iter_objects(data, split, categories=categories, max_per_category=max_per_category):
        images = rec.images[view_t].to(device)
        verts = model(images)
        sil = renderer.silhouettes(verts, faces, cameras.view_azimuths(view_t).to(device))
        loss = torch.stack([iou_loss(sil[i:i + 1], images[i:i + 1, 3]) for i in range(len(views))]).cpu()
        gt = rec.voxels[None].expand(len(views), -1, -1, -1).to(device)
        if full_metrics:
            m = mesh_vs_voxels_metrics(verts, faces, gt)
        else:
            m = {"iou": iou_3d(voxelize(verts, faces), gt)}
        a = acc.setdefault(rec.name, {})
        a.setdefault("loss", []).extend(loss.tolist())
        for k, v in m.items():
            a.setdefault(k, []).extend(v.float().cpu().tolist())
        if kept.get(rec.name, 0) < keep_predictions:
            kept[rec.name] = kept.get(rec.name, 0) + 1
            result.predictions.append(Prediction(rec.category, rec.name, rec.object_id, views[0], images[0].cpu(),
                                                 verts[0].cpu(), rec.voxels, float(m["iou"][0])))
        if progress is not None:
            progress(1)
    for name, a in acc.items():
        result.per_category[name] = {k: float(np.mean(v)) for k, v in a.items()}
        result.per_category[name]["n"] = len(a["iou"])
    model.train(was_training)
    return result


def _gt_voxels(data: str | os.PathLike, split: str, key: str, max_per_category: int | None) -> torch.Tensor:
    with h5py.File(data, "r") as f:
        ds = f[key][split]["voxels"]
        n = ds.shape[0] if max_per_category is None else min(ds.shape[0], max_per_category)
        return torch.from_numpy(np.asarray(ds[:n]).astype(bool))


def template_iou(template_verts: torch.Tensor, faces: torch.Tensor, data: str | os.PathLike, split: str = "test",
                 max_per_category: int | None = None, categories: Sequence[str] | None = None) -> dict[str, float]:
    """IoU of the (untrained) template mesh with every object, per category name."""
    info = validate(data, require_splits=(split,))
    occ = voxelize(template_verts[None].float().cpu(), faces.cpu())[0]
    out = {}
    for key in split_categories(info, split, categories):
        gt = _gt_voxels(data, split, key, max_per_category)
        out[info.categories[key]] = float(iou_3d(occ[None].expand_as(gt), gt).mean())
    return out


def mean_shape_iou(data: str | os.PathLike, split: str = "test", max_per_category: int | None = None,
                   categories: Sequence[str] | None = None) -> dict[str, float]:
    """IoU of the category-mean shape (mean train voxels > 0.5) with every object of ``split``."""
    info = validate(data, require_splits=("train", split))
    out = {}
    for key in split_categories(info, split, categories):
        with h5py.File(data, "r") as f:
            ds = f[key]["train"]["voxels"]
            total = np.zeros(ds.shape[1:], dtype=np.float64)
            for start in range(0, ds.shape[0], 256):  # stream: never the whole split in memory
                total += np.asarray(ds[start:start + 256], dtype=np.float64).sum(0)
            mean = torch.from_numpy(total / max(ds.shape[0], 1) > 0.5)
        gt = _gt_voxels(data, split, key, max_per_category)
        out[info.categories[key]] = float(iou_3d(mean[None].expand_as(gt), gt).mean())
    return out
