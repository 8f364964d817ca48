"""Build the synthetic dataset file: sizes per split, category selection, parallel rendering, one writer."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

from recon.data._parallel import default_workers, pack_voxels, parallel_map, unpack_voxels
from recon.data.categories import resolve_categories as resolve_keys
from recon.data.schema import SPLITS, DatasetInfo, DatasetWriter, validate
from recon.ops.voxelize import SOFTRAS_IOU
from recon.data.synthetic.objects import object_record
from recon.data.synthetic.shapes import CATEGORIES, DEFAULT_CATEGORIES
from recon.progress import progress_bar

__all__ = ["SPLIT_OFFSET", "split_sizes", "resolve_categories", "build_synthetic"]

SPLIT_OFFSET = {"train": 0, "val": 1_000_000, "test": 2_000_000}


def split_sizes(per_category: int | Sequence[int] | Mapping[str, int], val: int | None = None,
                test: int | None = None) -> dict[str, int]:
    """Normalise a size spec to ``{"train": n, "val": n, "test": n}``.

    An int ``n`` is the train size; val and test then get ``max(1, int(n / 7.5))``
    (300 -> 40, the default 300/40/40). ``val`` / ``test``, when given, replace those.
    """
    if isinstance(per_category, Mapping):
        unknown = set(per_category) - set(SPLITS)
        if unknown:
            raise ValueError(f"unknown splits {sorted(unknown)} in per_category, expected {SPLITS}")
        sizes = {s: int(per_category.get(s, 0)) for s in SPLITS}
    elif isinstance(per_category, (int, np.integer)):
        n = int(per_category)
        sizes = {"train": n, "val": max(1, int(n / 7.5)), "test": max(1, int(n / 7.5))}
    else:
        values = list(per_category)
        if len(values) != 3:
            raise ValueError(f"per_category must be an int, a (train, val, test) triple or a dict, "
                             f"got {per_category!r}")
        sizes = dict(zip(SPLITS, (int(x) for x in values)))
    sizes.update({s: int(n) for s, n in (("val", val), ("test", test)) if n is not None})
    if any(v < 0 for v in sizes.values()) or sum(sizes.values()) == 0:
        raise ValueError(f"per_category sizes must be >= 0 and not all zero, got {sizes}")
    return sizes


def resolve_categories(categories: Sequence[str] | None) -> list[str]:
    """Category keys from keys or names (``None`` or empty: the default six)."""
    if not categories:
        return list(DEFAULT_CATEGORIES)
    return resolve_keys(categories, list(CATEGORIES), "synthetic")


def _render(task: tuple[str, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    images, grids, verts, faces = object_record(*task)
    return images, pack_voxels(grids[SOFTRAS_IOU]), pack_voxels(grids["exact"]), verts, faces


def build_synthetic(
    out_path: str | os.PathLike,
    per_category: int | Sequence[int] | Mapping[str, int] = (300, 40, 40),
    categories: Sequence[str] | None = None,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> DatasetInfo:
    """Generate, render and voxelize the synthetic dataset into a format-v2 HDF5 file: images, the
    ground-truth grids of both 3D-IoU protocols (``voxels``: softras, ``voxels_exact``) and the GT meshes.

    Objects are produced in parallel (``workers`` processes, default ``os.cpu_count()``;
    ``workers <= 1`` runs in this process) and written by this process in a fixed order, so
    the file content does not depend on ``workers``. The file appears atomically at
    ``out_path`` only when complete; a stop signal (``recon.signals``) leaves nothing there.

    Args:
        out_path: output ``.h5`` path.
        per_category: train size (int), ``(train, val, test)`` or ``{split: n}``.
        categories: keys or names (default ``DEFAULT_CATEGORIES``).
        seed: dataset seed.
        workers: process count.
        progress: show a rich progress bar.
    Returns:
        the written file's ``DatasetInfo``.
    Raises:
        recon.signals.Interrupted: on SIGINT/SIGTERM (nothing written).
    """
    sizes = split_sizes(per_category)
    keys = resolve_categories(categories)
    tasks = [(key, split, SPLIT_OFFSET[split] + i) for key in keys for split in SPLITS for i in range(sizes[split])]
    bar = progress_bar(enabled=progress)
    with DatasetWriter(out_path, voxel_protocol=SOFTRAS_IOU, grids=("exact",), meshes=True) as writer:
        for key in keys:
            writer.add_category(key, CATEGORIES[key], source=f"synthetic(seed={seed})",
                                rgb_convention="Lambert shaded, premultiplied over black (background 0)")
            for split in SPLITS:  # every split exists (possibly empty) so readers can require it
                writer.create_split(key, split, capacity=sizes[split])
        jobs = [(key, index, seed) for key, _, index in tasks]
        with bar, parallel_map(_render, jobs, default_workers(workers)) as results:
            task_id = bar.add_task("synthetic", total=len(tasks))
            for (key, split, index), (images, softras, exact, verts, faces) in zip(tasks, results):
                oid = f"{CATEGORIES[key]}-{split}-{index - SPLIT_OFFSET[split]:05d}"
                writer.append(key, split, images, unpack_voxels(softras), oid, grids={"exact": unpack_voxels(exact)},
                              mesh=(verts, faces))
                bar.advance(task_id)
    return validate(out_path)
