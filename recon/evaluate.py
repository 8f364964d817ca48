"""Evaluation under the SoftRas protocol: predict a mesh from every (selected) view of every
object of a split, voxelize it at 32^3 and score 3D IoU (plus silhouette loss, Chamfer and
F-score); average per category, then the unweighted mean over categories.

Two reference rows come with it: the template sphere (the decoder's zero output) and the
category-mean shape (mean train voxels of the category thresholded at 0.5).

Every row of a result table has one shape::

    row = {"mean_iou": float, "mean_loss": float | None,
           "per_category": {name: {"iou": float, "loss": ..., "chamfer": ..., "fscore": ..., "n": int}}}

(reference rows: ``mean_loss`` None, ``per_category`` entries ``{"iou", "n"}`` with ``n`` objects).
``evaluate_run(EvalConfig)`` is the whole of ``python -m pipelines.eval`` and returns the eval
record: a row plus ``mean_chamfer, mean_fscore, checkpoint, encoder, parameters, step, split, views,
backend, seconds, outputs`` and ``baselines: {"template": row, "mean_shape": row}``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import h5py
import numpy as np
import torch

from recon import cameras
from recon.config import EvalConfig, parse_views
from recon.data.dataset import iter_objects, split_categories
from recon.data.schema import validate
from recon.distributed import resolve_device
from recon.io import check_output_dir, check_output_file, check_writable_file, write_json
from recon.losses import iou_loss
from recon.metrics import iou_3d, mesh_vs_voxels_metrics, voxelize
from recon.render import get_renderer
from recon.render.base import Renderer
from recon.report import figure_predictions, save_prediction_meshes, viewer_items, write_viewer_page
from recon.runs import load_model, lock_holder, resolve_checkpoint, run_dir_of

__all__ = ["parse_views", "EvalResult", "Prediction", "evaluate", "template_row", "mean_shape_row", "reference_rows",
           "eval_record", "evaluate_run"]


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


def _row(per_category: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A result-table row: unweighted mean IoU over categories, no silhouette loss."""
    return {"mean_iou": float(np.mean([m["iou"] for m in per_category.values()])) if per_category else float("nan"),
            "mean_loss": None, "per_category": per_category}


def template_row(template_verts: torch.Tensor, faces: torch.Tensor, data: str | os.PathLike, split: str = "test",
                 max_per_category: int | None = None, categories: Sequence[str] | None = None) -> dict[str, Any]:
    """Reference row of the (untrained) template mesh ``template_verts`` (V, 3): its IoU with every
    object of ``split`` (``n`` = objects per category)."""
    info = validate(data, require_splits=(split,))
    occ = voxelize(template_verts[None].float().cpu(), faces.cpu())[0]
    per = {}
    for key in split_categories(info, split, categories):
        gt = _gt_voxels(data, split, key, max_per_category)
        per[info.categories[key]] = {"iou": float(iou_3d(occ[None].expand_as(gt), gt).mean()), "n": len(gt)}
    return _row(per)


def mean_shape_row(data: str | os.PathLike, split: str = "test", max_per_category: int | None = None,
                   categories: Sequence[str] | None = None) -> dict[str, Any]:
    """Reference row of the category-mean shape (mean train voxels > 0.5): its IoU with every object
    of ``split`` (``n`` = objects per category)."""
    info = validate(data, require_splits=("train", split))
    per = {}
    for key in split_categories(info, split, categories):
        with h5py.File(data, "r") as f:
            ds = f[key]["train"]["voxels"]
            total = np.zeros(ds.shape[1:], dtype=np.float64)
            for start in range(0, ds.shape[0], 256):  # stream: never the whole split in memory
                total += np.asarray(ds[start:start + 256], dtype=np.float64).sum(0)
            mean = torch.from_numpy(total / max(ds.shape[0], 1) > 0.5)
        gt = _gt_voxels(data, split, key, max_per_category)
        per[info.categories[key]] = {"iou": float(iou_3d(mean[None].expand_as(gt), gt).mean()), "n": len(gt)}
    return _row(per)


def reference_rows(model: torch.nn.Module, data: str | os.PathLike, split: str = "test",
                   max_per_category: int | None = None, categories: Sequence[str] | None = None
                   ) -> dict[str, dict[str, Any]]:
    """``{"template": row, "mean_shape": row}``: what a model must beat (``model.decoder``'s template)."""
    faces = model.faces.detach().cpu()
    return {"template": template_row(model.decoder.template_mesh().detach().cpu(), faces, data, split,
                                     max_per_category, categories),
            "mean_shape": mean_shape_row(data, split, max_per_category, categories)}


def eval_record(result: EvalResult, baselines: dict[str, dict[str, Any]],
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The eval JSON: a row (``per_category {name: {loss, iou, chamfer, fscore, n}}``, ``mean_loss``,
    ``mean_iou``) plus ``mean_chamfer``, ``mean_fscore``, ``baselines {name: row}`` and ``extra``."""
    rec = {"per_category": result.per_category, "mean_loss": result.mean_loss, "mean_iou": result.mean_iou,
           "mean_chamfer": result.mean("chamfer"), "mean_fscore": result.mean("fscore"), "baselines": baselines}
    rec.update(extra or {})
    return rec


def _outputs(cfg: EvalConfig, run_dir: Path) -> tuple[Path, Path | None]:
    """(JSON path, figure directory or None) of an evaluation, checked writable before any work."""
    json_path = Path(cfg.json) if cfg.json else run_dir / f"eval_{cfg.split}.json"
    flag = "--json" if cfg.json else "--json (default)"
    if json_path.is_dir():
        raise ValueError(f"{flag} {json_path}: is a directory, expected a file path")
    check_writable_file(json_path, flag)
    if not cfg.figures:
        return json_path, None
    fig_dir = Path(cfg.out) if cfg.out else run_dir / f"eval_{cfg.split}"
    flag = "--out" if cfg.out else "--out (default)"
    check_output_dir(fig_dir, flag)
    check_output_file(fig_dir / "predictions.png", flag)
    check_output_file(fig_dir / "index.html", flag)
    check_output_dir(fig_dir / "meshes", flag)
    return json_path, fig_dir


def evaluate_run(cfg: EvalConfig, progress: Callable[[int, int], None] | None = None,
                 note: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Everything ``python -m pipelines.eval`` does: check the flags, the checkpoint, the dataset and
    that the outputs can be written (all before computing), evaluate, add the reference rows, write
    the JSON and the figures.

    Args:
        progress: ``progress(done, total)`` objects, after each object.
        note: receives one-line remarks (what is evaluated; a run that a training is still writing).
    Returns:
        The eval record (see ``eval_record``) with ``checkpoint, encoder, parameters (encoder, decoder,
        total), step, split, views, backend, seconds`` and ``outputs {json, figures, meshes, viewer}`` (paths
        written, None when not).
    """
    cfg.validate()
    say = note or (lambda text: None)
    device = resolve_device(cfg.device)
    ckpt = resolve_checkpoint(cfg.checkpoint)
    info = validate(cfg.data, require_splits=("train", cfg.split))  # train: the mean-shape reference row
    views = parse_views(cfg.views, info.num_views, "--views")
    run_dir = run_dir_of(ckpt)
    json_path, fig_dir = _outputs(cfg, run_dir)
    model, state = load_model(ckpt, device, encoder=cfg.encoder)
    renderer = get_renderer(cfg.backend, image_size=info.image_size, device=str(device), impl=cfg.impl)
    holder = lock_holder(run_dir)
    if holder is not None:
        say(f"note: {run_dir} is being written by a training (PID {holder}); evaluating {ckpt.name} as it is now")
    encoder = state["config"].get("encoder")
    total = sum(min(n, cfg.max_per_category or n) for n in info.objects(cfg.split).values())
    say(f"recon eval {ckpt} (encoder={encoder}, step {state['step']}) on {cfg.data}:{cfg.split}, "
        f"{total} objects x {len(views)} views, backend={cfg.backend}")
    done = [0]

    def advance(k: int) -> None:
        done[0] += k
        if progress is not None:
            progress(done[0], total)

    t0 = time.time()
    result = evaluate(model, renderer, cfg.data, cfg.split, views=views, max_per_category=cfg.max_per_category,
                      device=device, full_metrics=cfg.full_metrics, keep_predictions=cfg.figures, progress=advance)
    baselines = reference_rows(model, cfg.data, cfg.split, cfg.max_per_category)
    outputs: dict[str, str | None] = {"json": str(json_path), "figures": None, "meshes": None, "viewer": None}
    record = eval_record(result, baselines, extra={
        "checkpoint": str(ckpt), "encoder": encoder, "parameters": model.num_parameters(), "step": state["step"],
        "split": cfg.split, "views": views, "backend": cfg.backend, "seconds": time.time() - t0, "outputs": outputs})
    if result.predictions and fig_dir is not None:
        faces = model.faces.cpu()
        figure_predictions(result.predictions, faces, fig_dir / "predictions.png",
                           title=f"{encoder}: input, prediction from 3 views, GT voxels")
        save_prediction_meshes(result.predictions, faces, fig_dir / "meshes")
        items = viewer_items(result.predictions, faces, mesh_dir=fig_dir / "meshes", page_dir=fig_dir)
        write_viewer_page(items, fig_dir / "index.html", f"{encoder} on {cfg.split}: predictions")
        outputs.update(figures=str(fig_dir / "predictions.png"), meshes=str(fig_dir / "meshes"),
                       viewer=str(fig_dir / "index.html"))
    write_json(record, json_path)
    return record
