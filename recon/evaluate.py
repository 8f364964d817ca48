"""Evaluation under a 3D-IoU protocol: predict a mesh from every (selected) view of every object
of a split, voxelize it at 32^3 under the protocol (``recon.ops.voxelize``; default ``softras-iou``, the
published one) and score 3D IoU against the ground truth made under the same protocol
(``recon.data.ground_truth``), plus silhouette loss, Chamfer and F-score; average per
category, then the unweighted mean over categories.

Four reference rows come with it: the template sphere (the decoder's zero output), the
category-mean shape (mean train grid of the category thresholded at 0.5), retrieval (the GT grid of
the training object nearest by silhouette at the same view: ``recon.retrieval``; it uses 3D labels
of the training set, which the model never sees) and the oracle (each object's GT mesh scored as if
it were the prediction: the ceiling of the protocol on these data; only for files that store GT
meshes, HDF5 format v2).

Every row of a result table has one shape::

    row = {"mean_iou": float, "mean_loss": float | None,
           "per_category": {name: {"iou": float, "loss": ..., "chamfer": ..., "fscore": ..., "n": int}}}

(reference rows: ``mean_loss`` None, ``n`` objects per category). This module computes and returns
records and tensors (``EvalResult``, ``Prediction``); it writes no file. The whole of
``python -m pipelines.eval`` (checks, this, the JSON and the figures) is
``recon.workflows.eval.evaluate_run``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from recon import cameras
from recon.colour import object_colour_scores
from recon.config import parse_views
from recon.data.dataset import iter_objects, split_categories
from recon.data.schema import validate
from recon.losses import iou_loss
from recon.metrics import iou_3d, mesh_metrics, sample_mesh_surface
from recon.ops.voxelize import DEFAULT_PROTOCOL, check_protocol, voxelize
from recon.data.ground_truth import GroundTruth
from recon.render.base import Renderer
from recon.models.precision import inference_precision
from recon.runs import load_model, lock_holder, resolve_checkpoint, run_dir_of
from recon.retrieval import retrieval_row

__all__ = ["parse_views", "EvalResult", "Prediction", "evaluate", "template_row", "mean_shape_row", "oracle_row",
           "reference_rows", "eval_record", "GT_POINTS", "GT_POINTS_SEED"]

GT_POINTS = 2048  # points sampled on a GT mesh (and on each prediction) for Chamfer / F-score
GT_POINTS_SEED = 1_000_003  # generator seed of the GT mesh samples (predictions use 0 + view position)


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
    record: int = -1      # index of its entry in EvalResult.per_object (-1: none)
    colours: torch.Tensor | None = None  # (V, 3) predicted vertex colours in [0, 1]; None: a geometry-only model


@dataclass
class EvalResult:
    """Per-category means and overall unweighted means over categories, and every scored prediction."""

    per_category: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> {loss, iou, chamfer, fscore, n}
    predictions: list[Prediction] = field(default_factory=list)
    per_object: list[dict[str, Any]] = field(default_factory=list)  # {category, object_id, view, iou}
    ground_truth: dict[str, Any] = field(default_factory=dict)  # GroundTruth.describe() + meshes
    notes: list[str] = field(default_factory=list)

    def mean(self, key: str) -> float:
        vals = [m[key] for m in self.per_category.values() if key in m]
        return float(np.mean(vals)) if vals else float("nan")

    @property
    def mean_iou(self) -> float:
        return self.mean("iou")

    @property
    def mean_loss(self) -> float:
        return self.mean("loss")


def _gt_points(gt: GroundTruth, key: str, split: str, index: int) -> torch.Tensor | None:
    """(GT_POINTS, 3) points sampled on object ``index``'s GT mesh, None without one (or a zero-area one)."""
    mesh = gt.mesh(key, split, index)
    if mesh is None:
        return None
    try:
        return sample_mesh_surface(mesh[0], mesh[1], GT_POINTS, torch.Generator().manual_seed(GT_POINTS_SEED))
    except ValueError:
        return None


@torch.no_grad()
def evaluate(model: torch.nn.Module, renderer: Renderer, data: str | os.PathLike, split: str = "test",
             views: Sequence[int] | None = None, max_per_category: int | None = None,
             device: torch.device | str = "cpu", full_metrics: bool = True, keep_predictions: int = 0,
             categories: Sequence[str] | None = None, progress: Callable[[int], None] | None = None,
             protocol: str = DEFAULT_PROTOCOL, colour_scores: bool = True) -> EvalResult:
    """Score ``model`` on ``split`` under a 3D-IoU protocol.

    Args:
        model: images (N, 4, S, S) -> verts (N, V, 3), with a ``faces`` (F, 3) attribute.
        renderer: renders the prediction at its input view for the silhouette loss.
        views: view indices per object (default: all 24).
        max_per_category: evaluate only the first N objects of each category.
        full_metrics: also compute Chamfer distance and F-score@0.05 (against points on the GT mesh
            when the file stores meshes, else against the GT grid's surface cells).
        keep_predictions: keep this many predictions per category (view ``views[0]`` of the first objects).
        progress: called with the number of objects done after each object.
        protocol: ``"softras-iou"`` (published; old name ``"softras"``) or ``"exact"`` (``recon.ops.voxelize``).
        colour_scores: for a model with a colour head, also score the colours (``recon.colour``: ``psnr``,
            ``l1``, ``psnr_novel``, ``l1_novel`` and the mean-colour baseline's, prefixed ``mean_colour_``);
            needs a renderer with ``rgba``.
    Returns:
        EvalResult with per-category {loss, iou, chamfer, fscore, n} and one ``per_object`` entry per
        (object, view).
    """
    protocol = check_protocol(protocol, "protocol")
    was_training = model.training
    model.eval()
    faces = model.faces
    views = list(range(cameras.NUM_VIEWS)) if views is None else list(views)
    view_t = torch.tensor(views, dtype=torch.int64)
    acc: dict[str, dict[str, list[float]]] = {}
    result = EvalResult()
    kept: dict[str, int] = {}
    meshes = False
    coloured = getattr(model, "colour_head", None) is not None
    with GroundTruth(data, protocol) as gt:
        for rec in iter_objects(data, split, categories=categories, max_per_category=max_per_category):
            images = rec.images[view_t].to(device)
            if coloured:
                verts, colours = model(images, azimuth=cameras.view_azimuths(view_t).to(device), with_colours=True)
            else:
                verts, colours = model(images), None
            sil = renderer.silhouettes(verts, faces, cameras.view_azimuths(view_t).to(device))
            loss = torch.stack([iou_loss(sil[i:i + 1], images[i:i + 1, 3]) for i in range(len(views))]).cpu()
            grid = gt.voxels(rec.category, split, rec.index)
            ref = _gt_points(gt, rec.category, split, rec.index) if full_metrics else None
            meshes = meshes or gt.has_meshes(rec.category, split)
            m = mesh_metrics(verts, faces, grid[None].expand(len(views), -1, -1, -1), protocol, ref_points=ref,
                             grid_protocol=gt.grid(rec.category, split).protocol, full=full_metrics)
            if coloured and colour_scores:
                scores = object_colour_scores(renderer, faces, verts, colours, rec.images.to(device), views)
                m.update({k: torch.tensor(v) for k, v in scores.items()})
            a = acc.setdefault(rec.name, {})
            a.setdefault("loss", []).extend(loss.tolist())
            for k, v in m.items():
                a.setdefault(k, []).extend(v.float().cpu().tolist())
            first = len(result.per_object)
            result.per_object += [{"category": rec.name, "object_id": rec.object_id, "view": int(v), "iou": float(i)}
                                  for v, i in zip(views, m["iou"].tolist())]
            if "psnr" in m:
                for r, psnr in zip(result.per_object[first:], m["psnr"].tolist()):
                    r["psnr"] = psnr
            if kept.get(rec.name, 0) < keep_predictions:
                kept[rec.name] = kept.get(rec.name, 0) + 1
                result.predictions.append(Prediction(rec.category, rec.name, rec.object_id, views[0], images[0].cpu(),
                                                     verts[0].cpu(), grid, float(m["iou"][0]), record=first,
                                                     colours=None if colours is None else colours[0].cpu()))
            if progress is not None:
                progress(1)
        result.ground_truth = {**gt.describe(), "meshes": meshes}
        result.notes = gt.notes()
    for name, a in acc.items():
        result.per_category[name] = {k: float(np.mean(v)) for k, v in a.items()}
        result.per_category[name]["n"] = len(a["iou"])
    model.train(was_training)
    return result


def _row(per_category: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A result-table row: unweighted mean IoU over categories, no silhouette loss."""
    return {"mean_iou": float(np.mean([m["iou"] for m in per_category.values()])) if per_category else float("nan"),
            "mean_loss": None, "per_category": per_category}


def _count(n: int, max_per_category: int | None) -> int:
    return n if max_per_category is None else min(n, max_per_category)


def template_row(template_verts: torch.Tensor, faces: torch.Tensor, data: str | os.PathLike, split: str = "test",
                 max_per_category: int | None = None, categories: Sequence[str] | None = None,
                 protocol: str = DEFAULT_PROTOCOL) -> dict[str, Any]:
    """Reference row of the (untrained) template mesh ``template_verts`` (V, 3): its IoU under ``protocol``
    with every object of ``split`` (``n`` = objects per category)."""
    info = validate(data, require_splits=(split,))
    occ = voxelize(template_verts[None].float().cpu(), faces.cpu(), protocol=protocol)[0]
    per = {}
    with GroundTruth(data, protocol) as gt:
        for key in split_categories(info, split, categories):
            grids = gt.voxels(key, split, 0, _count(info.objects(split)[key], max_per_category))
            per[info.categories[key]] = {"iou": float(iou_3d(occ[None].expand_as(grids), grids).mean()),
                                         "n": len(grids)}
    return _row(per)


def mean_shape_row(data: str | os.PathLike, split: str = "test", max_per_category: int | None = None,
                   categories: Sequence[str] | None = None, protocol: str = DEFAULT_PROTOCOL) -> dict[str, Any]:
    """Reference row of the category-mean shape (mean train grid under ``protocol`` > 0.5): its IoU with
    every object of ``split`` (``n`` = objects per category)."""
    info = validate(data, require_splits=("train", split))
    per = {}
    with GroundTruth(data, protocol) as gt:
        for key in split_categories(info, split, categories):
            n_train = info.objects("train")[key]
            total = None
            for start in range(0, n_train, 256):  # stream: never the whole split in memory
                block = gt.voxels(key, "train", start, min(start + 256, n_train)).double().sum(0)
                total = block if total is None else total + block
            if total is None:
                continue  # no train object: no mean shape
            mean = total / n_train > 0.5
            grids = gt.voxels(key, split, 0, _count(info.objects(split)[key], max_per_category))
            per[info.categories[key]] = {"iou": float(iou_3d(mean[None].expand_as(grids), grids).mean()),
                                         "n": len(grids)}
    return _row(per)


def oracle_row(data: str | os.PathLike, split: str = "test", max_per_category: int | None = None,
               categories: Sequence[str] | None = None, protocol: str = DEFAULT_PROTOCOL,
               full_metrics: bool = True) -> dict[str, Any] | None:
    """Reference row of the ground truth itself: each object's GT mesh voxelized under ``protocol`` and
    scored against its GT grid like a prediction (IoU; Chamfer and F-score against other points sampled
    on the same mesh when ``full_metrics``). The ceiling of the protocol on these data.

    Returns:
        The row (``n`` = objects per category), or None when the file stores no GT meshes (format v1,
        SoftRas/NMR npz conversions).
    """
    info = validate(data, require_splits=(split,))
    per = {}
    with GroundTruth(data, protocol) as gt:
        keys = split_categories(info, split, categories)
        if not all(gt.has_meshes(k, split) for k in keys):
            return None
        for key in keys:
            acc: dict[str, list[float]] = {}
            for i in range(_count(info.objects(split)[key], max_per_category)):
                verts, faces = gt.mesh(key, split, i)
                m = mesh_metrics(verts[None], faces, gt.voxels(key, split, i)[None], protocol,
                                 ref_points=_gt_points(gt, key, split, i) if full_metrics else None, full=full_metrics)
                for k, v in m.items():
                    acc.setdefault(k, []).append(float(v[0]))
            if acc:
                per[info.categories[key]] = {**{k: float(np.nanmean(v)) if not np.isnan(v).all() else float("nan")
                                                for k, v in acc.items()}, "n": len(acc["iou"])}
    return _row(per)


def reference_rows(model: torch.nn.Module, data: str | os.PathLike, split: str = "test",
                   max_per_category: int | None = None, categories: Sequence[str] | None = None,
                   protocol: str = DEFAULT_PROTOCOL, full_metrics: bool = True,
                   views: Sequence[int] | None = None) -> dict[str, dict[str, Any]]:
    """``{"template": row, "mean_shape": row, "retrieval": row, "oracle": row}``: what a model must beat
    (``model.decoder``'s template, the category means, the nearest training shape by silhouette at the
    evaluated ``views``: ``recon.retrieval``) and the ceiling (the GT meshes; left out when the file has
    none)."""
    faces = model.faces.detach().cpu()
    rows = {"template": template_row(model.decoder.template_mesh().detach().cpu(), faces, data, split,
                                     max_per_category, categories, protocol),
            "mean_shape": mean_shape_row(data, split, max_per_category, categories, protocol),
            "retrieval": retrieval_row(data, split, views, max_per_category, categories, protocol)}
    oracle = oracle_row(data, split, max_per_category, categories, protocol, full_metrics)
    if oracle is not None:
        rows["oracle"] = oracle
    return rows


def eval_record(result: EvalResult, baselines: dict[str, dict[str, Any]],
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The eval JSON: a row (``per_category {name: {loss, iou, chamfer, fscore, n}}``, ``mean_loss``,
    ``mean_iou``) plus ``mean_chamfer``, ``mean_fscore``, ``baselines {name: row}``, ``ground_truth``,
    ``notes``, ``per_object`` and ``extra``."""
    rec = {"per_category": result.per_category, "mean_loss": result.mean_loss, "mean_iou": result.mean_iou,
           "mean_chamfer": result.mean("chamfer"), "mean_fscore": result.mean("fscore"), "baselines": baselines,
           "ground_truth": result.ground_truth, "notes": list(result.notes)}
    rec.update(extra or {})
    rec["per_object"] = result.per_object  # last: the long list
    return rec
