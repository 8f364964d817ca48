"""Coloured reconstruction: the colour term of the training objective and the colour scores of eval.

Dataset images are RGBA with RGB *premultiplied* by coverage (composited over black, see
``recon.data.raster``); predicted colours are per-vertex and unpremultiplied; renders come from
``Renderer.rgba`` (RGB not premultiplied, alpha = the silhouette).

**Training** (``ColourObjective``): the silhouette objective (IoU loss + regularisers; colour alone
does not train geometry) plus ``lambda_colour * colour_l1`` over the same four renders
``[M_a@a, M_b@a, M_a@b, M_b@b]``. ``colour_l1`` compares the rendered RGB with the image inside its
mask, weighted by its coverage: ``sum |alpha_gt * rgb - rgb_gt| / (3 sum alpha_gt)``, i.e. the L1 of
the unpremultiplied colours ``rgb`` vs ``rgb_gt / alpha_gt`` weighted by ``alpha_gt`` (no division).

**Scores** (``colour_scores``, ``object_colour_scores``): the render premultiplied by its own alpha
(``rgb * alpha``, like the dataset) vs the dataset image, over the three channels and the union of the
two masks (alpha > 0.5 in either): ``l1`` = mean absolute error, ``psnr = 10 log10(1 / MSE)`` (peak 1;
MSE floored at 1e-10); and ``psnr_overlap``, the PSNR over the overlap of the masks (both > 0.5): the
colour error without the silhouette's, which dominates the union (a pixel covered by one mask only
costs its whole colour). Each prediction (made from view v) is scored at its input view (``psnr``,
``l1``, ``psnr_overlap``) and at up to ``NOVEL_VIEWS`` other evaluated views spread evenly over the
evaluated list (``novel_offsets``; all others when there are at most 5): ``*_novel``, their mean (NaN
with a single view). Averaged over predictions per category, then over categories, like the IoU.

**Mean-colour baseline** (``"mean_colour"``): each object's mean colour over all its stored views
(``sum rgb / sum alpha``, an oracle: it sees every view) painted on every vertex of the *predicted*
mesh and scored in the same way, so it shares the prediction's geometry (and IoU) and measures only
what the colour head adds over one flat, correct colour per object.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from recon import cameras
from recon.render.base import Renderer

__all__ = ["COLOUR_METRICS", "BASELINE_PREFIX", "colour_l1", "ColourObjective", "colour_scores", "object_mean_colour",
           "novel_offsets", "object_colour_scores", "split_colour_baseline", "colour_summary", "colour_record"]

COLOUR_METRICS = ("psnr", "l1", "psnr_overlap", "psnr_novel", "l1_novel", "psnr_overlap_novel")
BASELINE_PREFIX = "mean_colour_"  # per-category keys of the baseline's scores while they are accumulated
MASK_THRESHOLD = 0.5
MIN_MSE = 1e-10
NOVEL_VIEWS = 4  # other evaluated views each prediction is scored at
RENDER_CHUNK = 96  # renders per renderer call in eval


def colour_l1(rgb: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Coverage-weighted L1 of rendered colours inside the target's mask.

    Args:
        rgb: (N, 3, S, S) rendered RGB (unpremultiplied).
        target: (N, 4, S, S) dataset RGBA, RGB premultiplied by alpha.
    Returns:
        () ``sum |alpha_t * rgb - rgb_t| / (3 sum alpha_t + eps)``.
    """
    if rgb.shape[0] != target.shape[0] or rgb.shape[1] != 3 or target.shape[1] != 4 \
            or rgb.shape[2:] != target.shape[2:]:
        raise ValueError(f"colour_l1: expected rgb (N, 3, S, S) and target (N, 4, S, S), got {tuple(rgb.shape)} "
                         f"and {tuple(target.shape)}")
    alpha = target[:, 3:4]
    return (alpha * rgb - target[:, :3]).abs().sum() / (3 * alpha.sum() + eps)


class ColourObjective(nn.Module):
    """The silhouette objective plus ``lambda_colour * colour_l1`` over the same renders.

    ``forward(model, renderer, faces, batch)`` -> the silhouette objective's dict (``loss`` includes the
    colour term) plus ``colour``. ``model(images, azimuth, with_colours=True)`` must return
    ``(verts, colours)``; ``renderer`` must have ``rgba`` (softras, dibr).

    Args:
        silhouette: a ``recon.training.SilhouetteObjective``; its ``losses(verts, silhouettes, batch)``
            gives the IoU loss and the regularisers from the alpha of the colour renders.
        lambda_colour: weight of the colour term.
    """

    def __init__(self, silhouette: nn.Module, lambda_colour: float):
        super().__init__()
        self.silhouette = silhouette
        self.lambda_colour = float(lambda_colour)

    def forward(self, model: nn.Module, renderer: Renderer, faces: torch.Tensor,
                batch: dict[str, torch.Tensor], mark: Callable[[str, torch.Tensor | None], None] | None = None
                ) -> dict[str, torch.Tensor]:
        """``mark(phase, tensor)``: as ``recon.training.SilhouetteObjective.forward``."""
        images = torch.cat([batch["image_a"], batch["image_b"]])
        device = images.device
        input_az = cameras.view_azimuths(torch.cat([batch["view_a"], batch["view_b"]])).to(device)
        verts, colours = model(images, azimuth=input_az, with_colours=True)  # (2B, V, 3) each: [M_a, M_b]
        if mark is not None:
            mark("network", verts)
        views = torch.cat([batch["view_a"], batch["view_a"], batch["view_b"], batch["view_b"]])
        rgba = renderer.rgba(torch.cat([verts, verts]), faces, cameras.view_azimuths(views).to(device),
                             torch.cat([colours, colours]))  # (4B, 4, S, S): [M_a@a, M_b@a, M_a@b, M_b@b]
        if mark is not None:
            mark("render", rgba)
        out = self.silhouette.losses(verts, rgba[:, 3], batch)
        targets = torch.cat([batch["image_a"], batch["image_a"], batch["image_b"], batch["image_b"]])
        colour = colour_l1(rgba[:, :3], targets)
        out["colour"] = colour
        out["loss"] = out["loss"] + self.lambda_colour * colour
        return out


def colour_scores(rgba: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """PSNR and L1 of renders against dataset images over the union of their masks, and PSNR over the
    overlap of the masks (where both cover: the colour error without the silhouette's).

    Args:
        rgba: (N, 4, S, S) renders (RGB unpremultiplied, alpha).
        target: (N, 4, S, S) dataset RGBA (RGB premultiplied).
    Returns:
        ``{"psnr": (N,), "l1": (N,), "psnr_overlap": (N,)}`` float64; NaN where the mask is empty.
    """
    if rgba.shape != target.shape or rgba.dim() != 4 or rgba.shape[1] != 4:
        raise ValueError(f"colour_scores: expected two (N, 4, S, S) tensors, got {tuple(rgba.shape)} and "
                         f"{tuple(target.shape)}")
    rgba, target = rgba.double(), target.double()
    err = rgba[:, :3] * rgba[:, 3:4] - target[:, :3]  # (N, 3, S, S)
    covered, covers = rgba[:, 3] > MASK_THRESHOLD, target[:, 3] > MASK_THRESHOLD
    out = {}
    for name, mask in (("", covered | covers), ("_overlap", covered & covers)):
        m = mask[:, None].double()
        count = 3 * m.sum((1, 2, 3))
        nan = torch.where(count == 0, math.nan, 0.0)  # NaN for an empty mask, else 0
        mse = (err.pow(2) * m).sum((1, 2, 3)) / count.clamp_min(1)
        out[f"psnr{name}"] = -10 * torch.log10(mse.clamp_min(MIN_MSE)) + nan
        if not name:
            out["l1"] = (err.abs() * m).sum((1, 2, 3)) / count.clamp_min(1) + nan
    return out


def object_mean_colour(images: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(N, 4, S, S) premultiplied views of one object -> (3,) its mean colour ``sum rgb / sum alpha``."""
    return images[:, :3].sum((0, 2, 3)) / images[:, 3].sum().clamp_min(eps)


def novel_offsets(n: int, k: int = NOVEL_VIEWS) -> list[int]:
    """Offsets (in positions of the evaluated-view list, mod ``n``) of the novel views a prediction is
    scored at: ``round(j n / (k + 1))`` for j = 1..k, without 0 and repeats (every other view when n <= k + 1)."""
    return sorted({round(j * n / (k + 1)) % n for j in range(1, k + 1)} - {0})


def _scores_at(renderer: Renderer, faces: torch.Tensor, verts: torch.Tensor, colours: torch.Tensor,
               targets: torch.Tensor, azimuths: torch.Tensor) -> dict[str, list[float]]:
    """Prediction i scored at its own view i and at views ``i + novel_offsets(n)`` (mod n)."""
    n = verts.shape[0]
    offsets = novel_offsets(n)
    pred = torch.arange(n).repeat_interleave(1 + len(offsets))  # (i, i), (i, i + o1), ...
    at = (pred + torch.tensor([0] + offsets).repeat(n)) % n
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(pred), RENDER_CHUNK):
        p, a = pred[start:start + RENDER_CHUNK].to(verts.device), at[start:start + RENDER_CHUNK].to(verts.device)
        for k, v in colour_scores(renderer.rgba(verts[p], faces, azimuths[a], colours[p]), targets[a]).items():
            parts.setdefault(k, []).append(v)
    scores = {k: torch.cat(v).view(n, -1).cpu() for k, v in parts.items()}
    out: dict[str, list[float]] = {}
    for k, v in scores.items():
        out[k] = v[:, 0].tolist()
        out[f"{k}_novel"] = v[:, 1:].nanmean(1).tolist() if offsets else [math.nan] * n
    return out


@torch.no_grad()
def object_colour_scores(renderer: Renderer, faces: torch.Tensor, verts: torch.Tensor, colours: torch.Tensor,
                         images: torch.Tensor, views: Sequence[int]) -> dict[str, list[float]]:
    """Colour scores of the predictions of one object, and of the mean-colour baseline on them.

    Args:
        renderer: has ``rgba``.
        faces: (F, 3).
        verts, colours: (n, V, 3) the predictions from the evaluated views ``views`` (n of them).
        images: (K, 4, S, S) every stored view of the object (K >= max(views) + 1).
        views: the evaluated view indices.
    Returns:
        ``{metric: n values}`` for ``COLOUR_METRICS`` and the same keys prefixed ``BASELINE_PREFIX``.
    """
    view_t = torch.as_tensor(list(views), dtype=torch.int64)
    targets = images[view_t].to(verts.device)
    az = cameras.view_azimuths(view_t).to(verts.device)
    scores = _scores_at(renderer, faces, verts, colours, targets, az)
    flat = object_mean_colour(images).to(colours)[None, None].expand_as(colours)
    base = _scores_at(renderer, faces, verts, flat, targets, az)
    scores.update({BASELINE_PREFIX + k: v for k, v in base.items()})
    return scores


def _nanmean(values: Sequence[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(np.mean(vals)) if vals else math.nan


def split_colour_baseline(per_category: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Move the baseline's scores (keys ``BASELINE_PREFIX + metric``) out of ``per_category`` (in place)
    into a result row: ``{"mean_iou", "mean_loss": None, "mean_<metric>"..., "per_category": {name:
    {"iou", <metric>..., "n"}}}``; its IoU is the prediction's (same meshes)."""
    per = {}
    for name, m in per_category.items():
        row = {"iou": m.get("iou", math.nan)}
        row.update({k: m.pop(BASELINE_PREFIX + k) for k in COLOUR_METRICS if BASELINE_PREFIX + k in m})
        row["n"] = m.get("n")
        per[name] = row
    return {"mean_iou": _nanmean([m["iou"] for m in per.values()]), "mean_loss": None,
            **colour_summary(per), "per_category": per}


def colour_record(per_category: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The colour part of a coloured run's eval record, from ``evaluate``'s ``per_category`` (whose baseline
    keys it removes, in place): ``mean_<metric>`` for each of ``COLOUR_METRICS`` and
    ``colour_baselines: {"mean_colour": row}``."""
    baseline = split_colour_baseline(per_category)
    return {**colour_summary(per_category), "colour_baselines": {"mean_colour": baseline}}


def colour_summary(per_category: dict[str, dict[str, Any]]) -> dict[str, float]:
    """``{"mean_<metric>": unweighted mean over categories}`` for each of ``COLOUR_METRICS``."""
    return {f"mean_{k}": _nanmean([m[k] for m in per_category.values() if k in m]) for k in COLOUR_METRICS}
