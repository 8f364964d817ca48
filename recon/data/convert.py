"""The ``convert`` workflow: a checked ``ConvertConfig`` -> one dataset file (or a validation), and its summary.

``python -m pipelines.convert`` parses its flags into a ``ConvertConfig``, calls ``validate()`` (one
line naming the flag for a bad value, before anything is read or written), then ``convert(cfg)``
and prints ``summary_table``. A stop signal (``recon.signals``) ends any conversion with
``Interrupted`` and nothing at ``--out``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from rich.table import Table

from recon.data.meshes import convert_meshes, parse_split
from recon.data.schema import SPLITS, DatasetInfo, validate
from recon.data.softras_npz import convert_softras
from recon.data.synthetic import build_synthetic, split_sizes
from recon.data.voxel_axes import canonical_axes
from recon.errors import ConfigError
from recon.io import check_output_file

__all__ = ["COMMANDS", "MAX_COUNT", "ConvertConfig", "convert", "summary_table"]

COMMANDS = ("synthetic", "meshes", "softras", "validate")
MAX_COUNT = 1_000_000  # objects per category and split, workers: beyond this a typo, not a dataset (memory, disk)


@dataclass
class ConvertConfig:
    """The flags of ``python -m pipelines.convert`` (one field per flag; ``command`` says which apply)."""

    command: str
    out: str = ""  # output HDF5 file (all but validate)
    path: str = ""  # validate: the file to check
    src: str = ""  # meshes, softras: source folder
    classes: str | None = None  # comma-separated category keys or names
    workers: int | None = None  # synthetic, meshes: processes (None: every core)
    no_progress: bool = False
    per_category: int = 300  # synthetic: train objects per category
    val: int | None = None  # synthetic: val objects per category (None: max(1, per_category / 7.5))
    test: int | None = None  # synthetic: test objects per category (likewise)
    seed: int = 0  # synthetic: dataset seed; meshes: split shuffle seed
    split: str = "0.8,0.1,0.1"  # meshes: train,val,test ratios
    voxel_axes: str = "auto"  # softras: auto, nmr, identity or a signed permutation

    def validate(self) -> None:
        """Raise ``ValueError`` (one line naming the flag) for a bad value; reads and writes nothing."""
        if self.command not in COMMANDS:
            raise ConfigError(f"unknown command {self.command!r}, expected one of {', '.join(COMMANDS)}")
        if self.command == "validate":
            return
        check_output_file(self.out, "--out")
        for flag, value, lo, hi in (("--per-category", self.per_category, 1, MAX_COUNT),
                                    ("--val", self.val, 0, MAX_COUNT), ("--test", self.test, 0, MAX_COUNT),
                                    ("--seed", self.seed, 0, 2 ** 63 - 1), ("--workers", self.workers, 0, MAX_COUNT)):
            if value is not None and not lo <= value <= hi:
                raise ConfigError(f"{flag} {value}: expected an integer in [{lo}, {hi}]")
        self.class_list()
        if self.command == "meshes":
            parse_split(self.split, "--split")
        if self.command == "softras" and self.voxel_axes != "auto":
            canonical_axes(self.voxel_axes)

    def class_list(self) -> list[str] | None:
        """``--classes`` as a list (None: every category the source has, or the default set)."""
        if self.classes is None:
            return None
        names = [x.strip() for x in self.classes.split(",") if x.strip()]
        if not names:
            raise ConfigError(f"--classes {self.classes!r}: expected a comma-separated list of category keys or names")
        return names


def convert(cfg: ConvertConfig) -> DatasetInfo:
    """Build ``cfg.out`` from the configured source (or validate ``cfg.path``); returns the file's summary.

    Raises:
        ValueError / OSError subclasses with one-line messages; ``recon.signals.Interrupted`` on a
        stop signal. Nothing is left at ``cfg.out`` unless the file is complete.
    """
    if cfg.command == "validate":
        return validate(cfg.path)
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
        t.add_row(key, name, *("-" if counts[s] is None else str(counts[s]) for s in SPLITS),
                  str(sum(c or 0 for c in counts.values())))
    t.add_section()
    t.add_row("all", f"{len(info.categories)} categories", *(str(totals[s]) for s in SPLITS), str(sum(totals.values())))
    return t
