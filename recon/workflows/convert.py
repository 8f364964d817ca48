"""The ``convert`` workflow: a ``recon.config.ConvertConfig`` -> one dataset file (or a
validation), and its summary.

``python -m pipelines.convert`` parses its flags into a ``ConvertConfig`` and calls ``convert(cfg)``
(which checks the flags, one line naming the flag for a bad value, and ``--out`` before anything
is read or written), then prints ``summary_table``. A stop signal (``recon.signals``) ends any
conversion with ``Interrupted`` and nothing at ``--out``.
"""

from __future__ import annotations

import os
import warnings

import torch
from rich.table import Table
from rich.text import Text

from recon.config import ConvertConfig
from recon.data.meshes import convert_meshes, parse_split
from recon.data.schema import SPLITS, DatasetInfo, validate
from recon.data.softras_npz import convert_softras
from recon.data.synthetic import build_synthetic, split_sizes
from recon.io import check_writable_file

__all__ = ["convert", "summary_table"]


def convert(cfg: ConvertConfig) -> DatasetInfo:
    """Build ``cfg.out`` from the configured source (or validate ``cfg.path``); returns the file's summary.

    Raises:
        ValueError / OSError subclasses with one-line messages; ``recon.signals.Interrupted`` on a
        stop signal. Nothing is left at ``cfg.out`` unless the file is complete.
    """
    cfg.validate()
    if cfg.command == "validate":
        info = validate(cfg.path, check_meshes=True, deep=cfg.deep)
        for key, name in info.categories.items():
            for split, needed_by in (("val", "train's periodic validation and eval --split val"),
                                     ("test", "eval (--split test, the default), demo and compare")):
                if not info.objects(split).get(key):
                    warnings.warn(f"{cfg.path}: /{key}/{split}: no {split} objects in category {name!r}: "
                                  f"{needed_by} will refuse this file", stacklevel=2)
        return info
    check_writable_file(cfg.out, "--out")
    torch.set_num_threads(1)  # per-object work is small: parallelism comes from the worker processes
    progress = not cfg.no_progress
    if cfg.command == "synthetic":
        return build_synthetic(cfg.out, split_sizes(cfg.per_category, cfg.val, cfg.test), cfg.class_list(), cfg.seed,
                               cfg.workers, progress)
    if cfg.command == "meshes":
        return convert_meshes(cfg.src, cfg.out, parse_split(cfg.split, "--split"), cfg.seed, cfg.class_list(),
                              cfg.workers, progress)[0]
    return convert_softras(cfg.src, cfg.out, cfg.class_list(), voxel_axes=cfg.voxel_axes, progress=progress)


def summary_table(info: DatasetInfo, title: str, seconds: float | None = None) -> Table:
    """Objects per category and split, plus file size, image size, views (and build time)."""
    size = os.path.getsize(info.path)
    caption = f"{size / 2 ** 20:.1f} MiB" + (f", {seconds:.1f} s" if seconds is not None else "")
    caption += f", {info.image_size}x{info.image_size} px, {info.num_views} views, format v{info.version}"
    if info.grids:
        caption += f", ground-truth grids {' + '.join(info.grids)}"
    caption += ", GT meshes" if info.meshes else ", no GT meshes"
    t = Table(title=title, caption=caption)
    t.add_column("category")
    t.add_column("name")
    for s in SPLITS:
        t.add_column(s, justify="right")
    t.add_column("total", justify="right")
    totals = {s: 0 for s in SPLITS}
    for key, name in info.categories.items():
        counts = {s: info.objects(s).get(key) for s in SPLITS}
        for s in SPLITS:
            totals[s] += counts[s] or 0
        t.add_row(Text(key), Text(name), *("-" if counts[s] is None else str(counts[s]) for s in SPLITS),
                  str(sum(c or 0 for c in counts.values())))
    t.add_section()
    t.add_row("all", f"{len(info.categories)} categories", *(str(totals[s]) for s in SPLITS), str(sum(totals.values())))
    return t
