"""Evaluation under a 3D-IoU protocol: predict a mesh from every (selected) view of every object
of a split, voxelize it at 32^3 under the protocol (``recon.protocols``; default ``softras``, the
published one) and score 3D IoU against the ground truth made under the same protocol
(``recon.protocols.ground_truth``), plus silhouette loss, Chamfer and F-score; average per
category, then the unweighted mean over categories.

Three reference rows come with it: the template sphere (the decoder's zero output), the
category-mean shape (mean train grid of the category thresholded at 0.5) and the oracle (each
object's GT mesh scored as if it were the prediction: the ceiling of the protocol on these data;
only for files that store GT meshes, HDF5 format v2).

Every row of a result table has one shape::

    row = {"mean_iou": float, "mean_loss": float | None,
           "per_category": {name: {"iou": float, "loss": ..., "chamfer": ..., "fscore": ..., "n": int}}}

(reference rows: ``mean_loss`` None, ``n`` objects per category). ``evaluate_run(EvalConfig)`` is the
whole of ``python -m pipelines.eval`` and returns the eval record: a row plus ``mean_chamfer,
mean_fscore, protocol, checkpoint, encoder, parameters, step, split, views, backend, seconds, outputs``,
``baselines: {"template": row, "mean_shape": row[, "oracle": row]}``, ``reference_notes`` (why a
reference row is missing), ``ground_truth`` (which stored grids were scored against), ``notes`` and
``per_object``: one ``{category, object_id, view, iou}`` per scored prediction (``mesh``: the file
stem in ``outputs.meshes`` for the saved ones).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from recon import cameras
from recon.colour import colour_record, object_colour_scores
from recon.config import EvalConfig, parse_views
from recon.data.dataset import iter_objects, split_categories
from recon.data.schema import validate
from recon.distributed import resolve_device
from recon.io import OutputPathError, check_output_dir, check_output_file, check_writable_file, write_json
from recon.losses import iou_loss
from recon.metrics import iou_3d, mesh_metrics, sample_mesh_surface
from recon.protocols import DEFAULT_PROTOCOL, check_protocol, voxelize
from recon.protocols.ground_truth import GroundTruth
from recon.render import RGBA_BACKENDS, get_renderer
from recon.render.base import Renderer
from recon.report import (figure_predictions, prediction_mesh_name, save_prediction_meshes, viewer_items,
                          write_viewer_page)
from recon.models.precision import inference_precision
from recon.runs import load_model, lock_holder, resolve_checkpoint, run_dir_of

__all__ = ["parse_views", "EvalResult", "Prediction", "evaluate", "template_row", "mean_shape_row", "oracle_row",
           "reference_rows", "eval_record", "evaluate_run", "GT_POINTS", "GT_POINTS_SEED"]

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
    colors: torch.Tensor | None = None  # (V, 3) predicted vertex colours in [0, 1]; None: a geometry-only model


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
        protocol: ``"softras"`` (published) or ``"exact"`` (``recon.protocols``).
        colour_scores: for a model with a colour head, also score the colours (``recon.colour``: ``psnr``,
            ``l1``, ``psnr_novel``, ``l1_novel`` and the mean-colour baseline's, prefixed ``mean_colour_``);
            needs a renderer with ``rgba``.
    Returns:
        EvalResult with per-category {loss, iou, chamfer, fscore, n} and one ``per_object`` entry per
        (object, view).
    """
    check_protocol(protocol, "protocol")
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
                                                     colors=None if colours is None else colours[0].cpu()))
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
                   protocol: str = DEFAULT_PROTOCOL, full_metrics: bool = True) -> dict[str, dict[str, Any]]:
    """``{"template": row, "mean_shape": row, "oracle": row}``: what a model must beat (``model.decoder``'s
    template, the category means) and the ceiling (the GT meshes; left out when the file has none)."""
    faces = model.faces.detach().cpu()
    rows = {"template": template_row(model.decoder.template_mesh().detach().cpu(), faces, data, split,
                                     max_per_category, categories, protocol),
            "mean_shape": mean_shape_row(data, split, max_per_category, categories, protocol)}
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


def _outputs(cfg: EvalConfig, run_dir: Path) -> tuple[Path, Path | None]:
    """(JSON path, figure directory or None) of an evaluation, checked writable before any work."""
    json_path = Path(cfg.json) if cfg.json else run_dir / f"eval_{cfg.split}.json"
    flag = "--json" if cfg.json else "--json (default)"
    if json_path.is_dir():
        raise OutputPathError(f"{flag} {json_path}: is a directory, expected a file path")
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
        The eval record (see ``eval_record``) with ``protocol, reference_notes, checkpoint, encoder,
        parameters (encoder, decoder, total), step, split, views, backend, precision, seconds`` and ``outputs {json,
        figures, meshes, viewer}`` (paths written, None when not).
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
    precision = inference_precision(cfg.precision, state.get("precision"), device)
    model.set_precision(precision.precision)  # the encoder/decoder's; renderer and metrics stay fp32
    renderer = get_renderer(cfg.backend, image_size=info.image_size, device=str(device), impl=cfg.impl)
    holder = lock_holder(run_dir)
    if holder is not None:
        say(f"note: {run_dir} is being written by a training (PID {holder}); evaluating {ckpt.name} as it is now")
    encoder = state["config"].get("encoder")
    total = sum(min(n, cfg.max_per_category or n) for n in info.objects(cfg.split).values())
    say(f"recon eval {ckpt} (encoder={encoder}, step {state['step']}) on {cfg.data}:{cfg.split}, "
        f"{total} objects x {len(views)} views, backend={cfg.backend}, 3D IoU protocol {cfg.protocol}, "
        f"precision {precision.precision} ({precision.reason})")
    done = [0]

    def advance(k: int) -> None:
        done[0] += k
        if progress is not None:
            progress(done[0], total)

    coloured = model.colour_head is not None
    score_colours = coloured and cfg.backend in RGBA_BACKENDS
    if coloured and not score_colours:
        say(f"note: colour scores skipped: the {cfg.backend} backend has no colour render ({', '.join(RGBA_BACKENDS)} "
            f"have one)")
    t0 = time.time()
    result = evaluate(model, renderer, cfg.data, cfg.split, views=views,
                      max_per_category=cfg.max_per_category or None, device=device, full_metrics=cfg.full_metrics, keep_predictions=cfg.figures, progress=advance,
                      protocol=cfg.protocol, colour_scores=score_colours)
    # a coloured run: mean_psnr ... and colour_baselines {"mean_colour": row}, moved out of per_category
    colour = colour_record(result.per_category) if score_colours else {}
    for line in result.notes:
        say(f"note: {line}")
    baselines = reference_rows(model, cfg.data, cfg.split, cfg.max_per_category or None, protocol=cfg.protocol,
                               full_metrics=cfg.full_metrics)
    reference_notes = {}
    if "oracle" not in baselines:
        reference_notes["oracle"] = (f"skipped: {cfg.data} stores no ground-truth meshes (HDF5 format v1, or data "
                                     f"converted from SoftRas/NMR npz, which have none)")
        say(f"note: oracle row {reference_notes['oracle']}")
    outputs: dict[str, str | None] = {"json": str(json_path), "figures": None, "meshes": None, "viewer": None}
    record = eval_record(result, baselines, extra={
        "protocol": cfg.protocol, "reference_notes": reference_notes, "checkpoint": str(ckpt), "encoder": encoder,
        "parameters": model.num_parameters(), "step": state["step"], "split": cfg.split, "views": views,
        "backend": cfg.backend, "precision": precision.precision, "seconds": time.time() - t0, "outputs": outputs,
        **colour})
    if result.predictions and fig_dir is not None:
        faces = model.faces.cpu()
        figure_predictions(result.predictions, faces, fig_dir / "predictions.png",
                           title=f"{encoder}: input, prediction from 3 views, GT voxels ({cfg.protocol} grid)")
        colors = [p.colors for p in result.predictions] if coloured else None  # None: grey meshes
        save_prediction_meshes(result.predictions, faces, fig_dir / "meshes", colors=colors)
        for p in result.predictions:  # each saved mesh names its per_object record, and the record its mesh
            if p.record >= 0:
                result.per_object[p.record]["mesh"] = prediction_mesh_name(p.name, p.object_id, p.view)
        items = viewer_items(result.predictions, faces, colors=colors, mesh_dir=fig_dir / "meshes", page_dir=fig_dir)
        write_viewer_page(items, fig_dir / "index.html", f"{encoder} on {cfg.split}: predictions")
        outputs.update(figures=str(fig_dir / "predictions.png"), meshes=str(fig_dir / "meshes"),
                       viewer=str(fig_dir / "index.html"))
    write_json(record, json_path)
    return record
