"""The retrieval reference row: does a model reconstruct, or only recognise?

Single-view networks trained on ShapeNet have been shown to score close to *retrieval*: answering
each image with the ground-truth shape of the most similar training object (Tatarchenko et al.,
CVPR 2019). This row is that answer, scored like a model: for each evaluated (object, view), the
training object whose silhouette at the **same view** overlaps the input's silhouette most (2D IoU
of the alpha masks, over every training object of every category: the category is not given), and
that object's ground-truth grid scored with 3D IoU under the protocol.

Why silhouettes at the same view: it uses exactly what the model sees (one image; training images
come at the same 24 cameras, so masks at one view compare shapes, not poses), it needs no learned
embedding (so the row is the same for every model, recipe and encoder compared on a dataset), and
a silhouette is what the model is trained on. It uses the 3D labels of the training set, which the
model never sees: a model that does not beat it has not shown that it reconstructs.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import h5py
import numpy as np
import torch

from recon.data.dataset import split_categories
from recon.data.schema import validate
from recon.metrics import iou_3d
from recon.data.ground_truth import GroundTruth
from recon.ops.voxelize import DEFAULT_PROTOCOL

__all__ = ["RETRIEVAL_NOTE", "train_masks", "nearest_by_silhouette", "retrieval_row"]

RETRIEVAL_NOTE = ("answers each image with the GT shape of the training object whose silhouette at the same view "
                  "overlaps it most (2D IoU, all categories); it uses the training set's 3D labels, which the model "
                  "never sees")
_BLOCK = 64  # objects read per HDF5 slice


def _masks(group: h5py.Group, views: Sequence[int], stop: int) -> torch.Tensor:
    """(stop, len(views), S*S) bool alpha masks (> 0.5) of the first ``stop`` objects of ``group``."""
    out = []
    for start in range(0, stop, _BLOCK):
        block = np.asarray(group["images"][start:min(start + _BLOCK, stop)])  # (b, 24, 4, S, S) uint8
        out.append(torch.from_numpy(block[:, list(views), 3] > 127).flatten(2))
    s = group["images"].shape[-1]
    return torch.cat(out) if out else torch.zeros(0, len(views), s * s, dtype=torch.bool)


def train_masks(data: str | os.PathLike, views: Sequence[int]) -> tuple[torch.Tensor, list[tuple[str, int]]]:
    """The silhouettes of every training object: ``(masks (N, len(views), S*S) bool, [(category key,
    index)] * N)``."""
    info = validate(data, require_splits=("train",))
    masks, owners = [], []
    with h5py.File(data, "r") as f:
        for key in split_categories(info, "train"):
            n = info.objects("train")[key]
            masks.append(_masks(f[key]["train"], views, n))
            owners += [(key, i) for i in range(n)]
    return torch.cat(masks), owners


def nearest_by_silhouette(queries: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Index in ``bank`` of the best-overlapping mask for each query, view by view.

    Args:
        queries: (Q, K, P) bool masks of Q images at K views (P pixels).
        bank: (N, K, P) bool masks of N training objects at the same K views.
    Returns:
        (Q, K) int64: argmax over N of IoU(queries[q, k], bank[n, k]) (ties: the lowest index).
    """
    q, b = queries.float(), bank.float()
    out = torch.empty(queries.shape[:2], dtype=torch.int64)
    for k in range(queries.shape[1]):
        inter = q[:, k] @ b[:, k].T  # (Q, N)
        union = q[:, k].sum(1, keepdim=True) + b[:, k].sum(1)[None] - inter
        out[:, k] = (inter / union.clamp_min(1)).argmax(1)
    return out


def retrieval_row(data: str | os.PathLike, split: str = "test", views: Sequence[int] | None = None,
                  max_per_category: int | None = None, categories: Sequence[str] | None = None,
                  protocol: str = DEFAULT_PROTOCOL) -> dict[str, Any]:
    """Reference row of silhouette retrieval (module docstring): per category the mean 3D IoU over the
    evaluated (object, view) pairs, ``n`` objects, and ``same_category``: the share of answers taken
    from a training object of the query's own category."""
    info = validate(data, require_splits=("train", split))
    views = list(range(info.num_views)) if views is None else list(views)
    bank, owners = train_masks(data, views)
    per = {}
    with h5py.File(data, "r") as f, GroundTruth(data, protocol) as gt:
        for key in split_categories(info, split, categories):
            n = info.objects(split)[key] if max_per_category is None else min(info.objects(split)[key],
                                                                                max_per_category)
            hits = nearest_by_silhouette(_masks(f[key][split], views, n), bank)  # (n, K)
            truth = gt.voxels(key, split, 0, n)
            cache: dict[int, torch.Tensor] = {}
            ious, same = [], 0
            for i in range(n):
                for h in hits[i].tolist():
                    if h not in cache:
                        cache[h] = gt.voxels(owners[h][0], "train", owners[h][1])
                    ious.append(float(iou_3d(cache[h][None], truth[i][None])[0]))
                    same += owners[h][0] == key
            if ious:
                per[info.categories[key]] = {"iou": float(np.mean(ious)), "n": n, "same_category": same / len(ious)}
    return {"mean_iou": float(np.mean([m["iou"] for m in per.values()])) if per else float("nan"),
            "mean_loss": None, "per_category": per}
