"""Framing by self-consistency: where to put a user's object in the model's 64-px frame.

The model infers an object's size and position from where it sits in the frame, so a picture
framed unlike the training images (a photo, an object small or off-centre on its canvas) gives a
wrong mesh; no fixed rule (centre it, keep its own size) is right for every picture. Instead the
framing is chosen by the model's own agreement with its input:

* **Candidates** (``candidate_frames``): the object's fill of the frame (longer side of its
  bounding box over the frame side) on a grid over the training images' 5th-95th percentile range
  ``[fills.low, fills.high]``, and the centre of its bounding box on a grid over the training
  images' 5th-95th percentile range per axis (``recon.data.image_io.FillStats``); plus the
  picture's own framing (the whole image padded to a square) when it lies in those ranges.
* **Criterion** (``silhouette_agreement``): each candidate's model input goes through the network
  (all candidates in one batch: the encoder is the cost); the predicted mesh is rendered by the
  training renderer (the soft rasterizer, training settings) at the training views, and the
  candidate scores the best soft IoU ``sum(s a) / sum(s + a - s a)`` over the views between that
  silhouette ``s`` and its own input alpha ``a``: the quantity the model was trained to make high
  for training-framed images, at the view it would have been trained from. The best-scoring
  candidate wins (ties: the first, i.e. the picture's own framing).

The chosen candidate's mesh is the prediction (no second pass through the network). The search
costs one batched forward of ``len(candidates)`` images and ``len(candidates) x len(views)``
silhouettes; ``docs/framing.md`` has the measured cost and the accuracy on three picture families.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from recon import cameras
from recon.data.image_io import FillStats, PreparedImage, SourceImage, box_at, object_centres, object_fills
from recon.render import Renderer

__all__ = ["FramingSearch", "FramingChoice", "candidate_frames", "refine_frames", "soft_iou", "silhouette_agreement",
           "search_framing"]


@dataclass(frozen=True)
class FramingSearch:
    """The search: ``fill_steps`` fills over ``[fills.low, fills.high]`` at the training centres'
    midpoint, then ``centre_steps`` centres per axis (over the training centres' 5th-95th
    percentiles) and the two half-step fills around the best fill; silhouettes at the
    ``top_views`` training views that fit the first candidate's mesh best."""

    fill_steps: int = 7
    centre_steps: int = 3
    top_views: int = 3

    def __post_init__(self) -> None:
        if min(self.fill_steps, self.centre_steps, self.top_views) < 1 or self.top_views > cameras.NUM_VIEWS:
            raise ValueError(f"FramingSearch: expected at least one fill, centre and view, got {self}")


@dataclass(frozen=True)
class FramingChoice:
    """The framing the search chose: the object's ``fill`` and ``centre`` in the frame, the training
    ``view`` whose silhouette matched best and that soft IoU (``score``); ``candidates``: how many
    framings were compared."""

    fill: float
    centre: tuple[float, float]
    view: int
    score: float
    candidates: int


Frame = tuple[float, tuple[float, float]]  # (fill, (cx, cy)) of the object's bounding box in the frame


def _grid(lo: float, hi: float, n: int) -> list[float]:
    return [float((lo + hi) / 2)] if n == 1 else [float(v) for v in np.linspace(lo, hi, n)]


def candidate_frames(fills: FillStats, own: Frame | None = None, search: FramingSearch = FramingSearch()
                     ) -> list[Frame]:
    """The first round of candidates: ``own`` (the picture's own framing) first when it lies within
    the extremes the training images show, then ``fill_steps`` fills at the centres' midpoint."""
    mid = ((fills.centre_low[0] + fills.centre_high[0]) / 2, (fills.centre_low[1] + fills.centre_high[1]) / 2)
    out: list[Frame] = [(f, mid) for f in _grid(fills.low, fills.high, search.fill_steps)]
    if own is not None:
        fill, (cx, cy) = own
        if (fills.lowest <= fill <= fills.highest and fills.centre_lowest[0] <= cx <= fills.centre_highest[0]
                and fills.centre_lowest[1] <= cy <= fills.centre_highest[1]):
            out.insert(0, own)
    return out


def refine_frames(best: Frame, fills: FillStats, search: FramingSearch = FramingSearch()) -> list[Frame]:
    """The second round around the first round's ``best``: its fill at every grid centre, and the
    fills half a step either side at its centre (those inside ``[fills.low, fills.high]``)."""
    fill, centre = best
    xs = _grid(fills.centre_low[0], fills.centre_high[0], search.centre_steps)
    ys = _grid(fills.centre_low[1], fills.centre_high[1], search.centre_steps)
    out: list[Frame] = [(fill, (x, y)) for y in ys for x in xs
                        if max(abs(x - centre[0]), abs(y - centre[1])) > 1e-9]
    half = (fills.high - fills.low) / max(search.fill_steps - 1, 1) / 2
    out += [(f, centre) for f in (fill - half, fill + half) if fills.low <= f <= fills.high]
    return out


def soft_iou(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-image soft IoU ``sum(p t) / (sum(p + t - p t) + eps)`` (``1 - recon.losses.iou_loss`` per image).

    Args:
        pred, target: (B, H, W) in [0, 1].
    Returns:
        (B,) float.
    """
    inter = (pred * target).sum((-2, -1))
    return inter / ((pred + target - pred * target).sum((-2, -1)) + eps)


@torch.no_grad()
def silhouette_agreement(verts: torch.Tensor, faces: torch.Tensor, alpha: torch.Tensor, renderer: Renderer,
                         views: Sequence[int] = tuple(range(cameras.NUM_VIEWS))) -> torch.Tensor:
    """How well each mesh's silhouette explains its own input alpha, at each of ``views``.

    Args:
        verts: (K, V, 3) meshes; faces: (F, 3); alpha: (K, S, S) input alphas in [0, 1].
        renderer: renders ``K * len(views)`` silhouettes at its image size S.
    Returns:
        (K, len(views)) float32 soft IoUs on the CPU.
    """
    k, n = verts.shape[0], len(views)
    az = cameras.view_azimuths(torch.as_tensor(list(views), dtype=torch.int64)).to(verts.device).repeat(k)
    sil = renderer.silhouettes(verts.float().repeat_interleave(n, 0), faces, az)  # (K * n, S, S)
    return soft_iou(sil.float(), alpha.float().to(sil.device).repeat_interleave(n, 0)).view(k, n).cpu()


@torch.no_grad()
def search_framing(model: torch.nn.Module, renderer: Renderer, source: SourceImage, fills: FillStats,
                   size: int, device: torch.device | str = "cpu", search: FramingSearch = FramingSearch()
                   ) -> tuple[PreparedImage, torch.Tensor, FramingChoice]:
    """Frame ``source`` by self-consistency (module docstring).

    Args:
        model: ``forward((K, 4, S, S)) -> (K, V, 3)`` with ``faces (F, 3)``, in eval mode.
        fills: the training images' framing statistics; size: the model's input size S.
    Returns:
        the chosen model input (``framing="self-consistent"``), its mesh ``(V, 3)`` on the CPU, and
        the choice.
    """
    obj = source.object
    h, w = source.alpha.shape
    side = float(max(h, w))
    own: Frame = (float(object_fills(source.alpha)), tuple(float(c) for c in object_centres(source.alpha)))
    square = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)  # the picture padded to a square

    def run(frames: list[Frame]) -> tuple[list[PreparedImage], torch.Tensor, torch.Tensor]:
        prepared = [source.framed(square if f == own else box_at(obj, *f), size, "self-consistent") for f in frames]
        images = torch.stack([p.image for p in prepared]).to(device)
        return prepared, model(images), images[:, 3]

    first = candidate_frames(fills, own, search)
    prepared, verts, alpha = run(first)
    # the views: the top_views training views that fit the anchor's mesh best, the anchor being the
    # picture's own framing when it is a candidate, else the median fill
    a = 0 if first[0] == own else len(first) // 2
    anchor = silhouette_agreement(verts[a:a + 1], model.faces, alpha[a:a + 1], renderer)[0]
    views = [int(v) for v in anchor.topk(search.top_views).indices]
    others = [i for i in range(len(first)) if i != a]
    scores = torch.empty(len(first), len(views))
    scores[a] = anchor[views]
    scores[others] = silhouette_agreement(verts[others], model.faces, alpha[others], renderer, views)
    best = int(scores.max(1).values.argmax())
    second = refine_frames(first[best], fills, search)
    if second:
        p2, v2, a2 = run(second)
        prepared, verts = prepared + p2, torch.cat([verts, v2])
        scores = torch.cat([scores, silhouette_agreement(v2, model.faces, a2, renderer, views)])
    per_frame, view_at = scores.max(1)
    best = int(per_frame.argmax())
    choice = FramingChoice(prepared[best].fill, prepared[best].centre, views[int(view_at[best])],
                           float(per_frame[best]), len(prepared))
    return prepared[best], verts[best].cpu(), choice
