"""Framing by self-consistency: where to put a user's object in the model's 64-px frame.

The model infers an object's size and position from where it sits in the frame, so a picture
framed unlike the training images (a photo, an object small or off-centre on its canvas) gives a
wrong mesh; no fixed rule (centre it, keep its own size) is right for every picture. Instead the
framing is chosen by the model's own agreement with its input:

* **Search space**: the object's *fill* of the frame (longer side of its bounding box over the
  frame side) within the extremes the training images show, ``[fills.lowest, fills.highest]``,
  and the *centre* of its bounding box within the training centres' 5th-95th percentiles per axis
  (``recon.data.image_io.FillStats``, measured on the checkpoint's training data), plus the
  picture's own framing (the whole image padded to a square) when it lies within the extremes.
* **Criterion** (``silhouette_agreement``): each candidate's model input goes through the network;
  the predicted mesh is rendered by the training renderer (the soft rasterizer, training settings)
  at training views, and the candidate scores the best soft IoU ``sum(s a) / sum(s + a - s a)``
  over the views between that silhouette ``s`` and its own input alpha ``a``: the quantity the
  model was trained to make high on training-framed images, at the view the picture is best
  explained from. The best-scoring candidate wins (ties: the first, i.e. the picture's own framing).
* **Rounds** (each one batched forward: the encoder is the cost): (1) ``candidate_frames``: the
  picture's own framing and ``fill_steps`` fills at the training centres' midpoint, scored at
  every other training view (30 degrees apart); (2) ``refine_frames``: the best fill and the fills
  half a step either side, each at ``centre_steps`` x ``centre_steps`` centres, scored at the
  first round's best view and its two neighbours (15 degrees either side), where the first
  round's candidates are scored too.

The chosen candidate's mesh is the prediction (no further pass through the network). With the
defaults a search is 12-13 + 26 candidates, 14 x 13 + 3 x 26 silhouettes; ``docs/framing.md``
has the measured cost and the accuracy on three families of pictures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from recon import cameras
from recon.data.image_io import FillStats, PreparedImage, SourceImage, box_at, object_centres, object_fills
from recon.render import Renderer
from recon.runtime import one_thread

__all__ = ["FramingSearch", "FramingChoice", "candidate_frames", "refine_frames", "soft_iou", "silhouette_agreement",
           "search_framing"]


@dataclass(frozen=True)
class FramingSearch:
    """The search, in two rounds of one batched forward each: ``fill_steps`` fills over the training
    fills' extremes ``[fills.lowest, fills.highest]`` at the training centres' midpoint, rendered
    at every ``view_stride``-th training view; then the best fill and the fills half a step either
    side, each at ``centre_steps`` x ``centre_steps`` centres over the training centres' 5th-95th
    percentiles, rendered at the first round's best view and its neighbours (``view_stride // 2``
    either side)."""

    fill_steps: int = 12
    centre_steps: int = 3
    view_stride: int = 2

    def __post_init__(self) -> None:
        if min(self.fill_steps, self.centre_steps, self.view_stride) < 1 or self.view_stride > cameras.NUM_VIEWS:
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


def _mid(fills: FillStats) -> tuple[float, float]:
    return (fills.centre_low[0] + fills.centre_high[0]) / 2, (fills.centre_low[1] + fills.centre_high[1]) / 2


def _fill_step(fills: FillStats, search: FramingSearch) -> float:
    return (fills.highest - fills.lowest) / max(search.fill_steps - 1, 1)


def candidate_frames(fills: FillStats, own: Frame | None = None, search: FramingSearch = FramingSearch()
                     ) -> list[Frame]:
    """The first round: ``own`` (the picture's own framing) first when it lies within the extremes
    the training images show, then ``fill_steps`` fills over those extremes at the centres' midpoint."""
    out: list[Frame] = [(f, _mid(fills)) for f in _grid(fills.lowest, fills.highest, search.fill_steps)]
    if own is not None:
        fill, (cx, cy) = own
        if (fills.lowest <= fill <= fills.highest and fills.centre_lowest[0] <= cx <= fills.centre_highest[0]
                and fills.centre_lowest[1] <= cy <= fills.centre_highest[1]):
            out.insert(0, own)
    return out


def refine_frames(best: Frame, fills: FillStats, search: FramingSearch = FramingSearch()) -> list[Frame]:
    """The second round around the first round's ``best``: its fill and the fills half a step either
    side (within the extremes), each at every grid centre; ``best`` itself is left out."""
    xs = _grid(fills.centre_low[0], fills.centre_high[0], search.centre_steps)
    ys = _grid(fills.centre_low[1], fills.centre_high[1], search.centre_steps)
    half = _fill_step(fills, search) / 2
    out: list[Frame] = []
    for f in (best[0] - half, best[0], best[0] + half):
        if fills.lowest - 1e-9 <= f <= fills.highest + 1e-9:
            out += [(f, (x, y)) for y in ys for x in xs
                    if max(abs(f - best[0]), abs(x - best[1][0]), abs(y - best[1][1])) > 1e-9]
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
    with one_thread():  # small meshes: on a busy CPU more threads only add contention (recon.runtime)
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
    n = cameras.NUM_VIEWS
    coarse = list(range(0, n, search.view_stride))
    scores = torch.full((len(first), n), -1.0)  # views not rendered never win (IoU >= 0)
    scores[:, coarse] = silhouette_agreement(verts, model.faces, alpha, renderer, coarse)
    best = int(scores.max(1).values.argmax())
    # the second round is rendered at the first round's best view and its neighbours on the ring
    v = int(scores[best].argmax())
    views = sorted({(v + d) % n for d in range(-(search.view_stride // 2), search.view_stride // 2 + 1)})
    extra = [u for u in views if u not in coarse]  # the first round is scored there too: one footing for all
    if extra:
        scores[:, extra] = silhouette_agreement(verts, model.faces, alpha, renderer, extra)
    second = refine_frames(first[best], fills, search)
    if second:
        p2, v2, a2 = run(second)
        prepared, verts = prepared + p2, torch.cat([verts, v2])
        wide = torch.full((len(second), n), -1.0)
        wide[:, views] = silhouette_agreement(v2, model.faces, a2, renderer, views)
        scores = torch.cat([scores, wide])
    per_frame, view_at = scores.max(1)
    best = int(per_frame.argmax())
    choice = FramingChoice(prepared[best].fill, prepared[best].centre, int(view_at[best]), float(per_frame[best]),
                           len(prepared))
    return prepared[best], verts[best].cpu(), choice
