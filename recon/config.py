"""Dataclass configs. Every CLI flag maps 1:1 onto a field (``add_dataclass_args``), every config
checks itself (``validate()``: one-line ``ValueError`` naming the flag), every run saves its config.

Field metadata: ``help`` (the flag's help), optionally ``choices`` and ``required``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from dataclasses import dataclass, field, fields
from typing import Any, Sequence

from recon import cameras
from recon.data.dataset import split_categories
from recon.data.schema import validate as validate_dataset
from recon.io import atomic_write_bytes, check_output_dir, json_text
from recon.models.encoders import ENCODERS
from recon.models.precision import PRECISION_HELP, PRECISIONS, check_precision
from recon.ops.voxelize import DEFAULT_PROTOCOL, PROTOCOL_ALIASES, PROTOCOL_CHOICES, check_protocol
from recon.ranges import check_ranges
from recon.render import BACKENDS, RGBA_BACKENDS

__all__ = ["TrainConfig", "EvalConfig", "CompareConfig", "DemoConfig", "VIEWS_HELP", "parse_views", "add_dataclass_args", "config_from_args",
           "save_config"]

LR_SCHEDULES = ("step", "cosine")  # recon.training.schedule


def check_lr_schedule(schedule: str) -> None:
    """One-line ValueError naming ``--lr-schedule`` unless ``schedule`` is one of ``LR_SCHEDULES``."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {schedule!r}")


VIEWS_HELP = ("all | N (N evenly spaced views, e.g. 4 -> 0,6,12,18) | comma list of view indices "
              "(e.g. 0,6; a single index needs a trailing comma: 5,)")


def parse_views(spec: str | int | Sequence[int], num_views: int = cameras.NUM_VIEWS, flag: str = "--views"
                ) -> list[int]:
    """View indices from a view spec (see ``VIEWS_HELP``).

    ``"all"`` -> every view; ``"N"`` (a bare number) -> N views evenly spaced; ``"0,6,12"`` or ``"5,"``
    -> those views. Raises ValueError naming ``flag`` for anything else.
    """
    if isinstance(spec, str):
        s = spec.strip().lower()
        if s == "all":
            return list(range(num_views))
        try:
            if "," in s:
                views = [int(x) for x in s.split(",") if x.strip()]
            else:
                count = int(s)
                if not 1 <= count <= num_views:
                    hint = f"; for view {count} alone write '{count},'" if 0 <= count < num_views else ""
                    raise ValueError(f"{flag} {spec}: a single number is a count of evenly spaced views and must "
                                     f"be in [1, {num_views}]{hint}")
                return [round(i * num_views / count) % num_views for i in range(count)]
        except ValueError as e:
            if str(e).startswith(flag):
                raise
            raise ValueError(f"{flag} {spec!r}: expected {VIEWS_HELP}") from None
    elif isinstance(spec, int):
        return parse_views(str(spec), num_views, flag)
    else:
        views = [int(v) for v in spec]
    bad = [v for v in views if not 0 <= v < num_views]
    if bad or not views:
        raise ValueError(f"{flag} {spec}: view indices must be in [0, {num_views}), got {views}")
    return views


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_common(device: str, backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"--backend {backend!r} unknown; valid backends: {', '.join(BACKENDS)}")
    if not device.strip():
        raise ValueError("--device must be auto, cpu, cuda or cuda:N, got an empty string")


@dataclass
class TrainConfig:
    """Training settings. Defaults follow SoftRas (examples/recon/train.py) except the length."""

    data: str = field(default="data/synthetic.h5", metadata={"help": "HDF5 dataset (python -m pipelines.convert)"})
    out: str = field(default="runs/run", metadata={"help": "run directory (config, metrics, checkpoints)"})
    encoder: str = field(default="baseline", metadata={"help": "baseline | resnet | attention"})
    backend: str = field(default="softras", metadata={"help": "rendering backend: " + " | ".join(BACKENDS)})
    impl: str = field(default="auto", metadata={"help": "softras / dibr implementation: auto | torch | cpp | cuda"})
    iterations: int = field(default=250_000, metadata={"help": "training steps (SoftRas: 250k)"})
    batch_size: int = field(default=64, metadata={"help": "objects per step (each gives 2 images, 4 renders)"})
    lr: float = field(default=1e-4, metadata={"help": "Adam learning rate"})
    lambda_lap: float = field(default=5e-3, metadata={"help": "Laplacian regulariser weight"})
    lambda_flat: float = field(default=5e-4, metadata={"help": "flatten regulariser weight"})
    colour: bool = field(default=False, metadata={
        "help": "also predict per-vertex colours (a colour head) and train them: loss + lambda_colour x L1 of the "
                "rendered RGB vs the images inside their masks (needs --backend softras or dibr; recon.colour)"})
    colour_head: str = field(default="latent", metadata={
        "help": "with --colour: latent (per-vertex gains from the latent on the image's mean colour; no camera "
                "needed, best at novel views) | sample (the input image's colour where each vertex projects; best at "
                "the input view only, needs the input camera)", "choices": ("latent", "sample")})
    lambda_colour: float = field(default=1.0, metadata={"help": "colour L1 weight (with --colour)"})
    sigma: float = field(default=1e-4, metadata={"help": "soft rasterizer sharpness"})
    eps: float = field(default=1e-4, metadata={"help": "soft rasterizer cutoff: pixel-face pairs whose probability is "
                                                       "below eps are skipped (SoftRas dist_eps: 1e-4 library "
                                                       "default, 1e-10 in its examples/recon training)"})
    decay_at: float = field(default=0.6, metadata={"help": "fraction of the run after which lr and sigma are x decay "
                                                            "(SoftRas: 150k of 250k)"})
    decay: float = field(default=0.3, metadata={"help": "lr and sigma multiplier after decay_at"})
    decay_step: int = field(default=0, metadata={
        "help": "the step from which lr and sigma are x decay, overriding --decay-at (0 = decay_at x iterations; a "
                "clock-steered demo records where its decay fell)"})
    lr_schedule: str = field(default="step", metadata={
        "help": "step: lr x decay after decay_at (SoftRas) | cosine: lr falls along a half cosine from --lr to 0 "
                "over the run; sigma steps at decay_at either way", "choices": LR_SCHEDULES})
    seed: int = field(default=0, metadata={"help": "seed for weights and data sampling"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N"})
    precision: str = field(default="auto", metadata={"help": PRECISION_HELP + "; config.json records the result",
                                                     "choices": PRECISIONS})
    val_every: int = field(default=1000, metadata={"help": "validate (3D IoU) and checkpoint every K steps"})
    val_objects: int = field(default=10, metadata={"help": "val objects per category for periodic validation (0 = all)"})
    val_views: str = field(default="0,6,12,18", metadata={"help": "views used for periodic validation: " + VIEWS_HELP})
    log_every: int = field(default=10, metadata={"help": "write a metrics.jsonl line every K steps"})
    keep: int = field(default=2, metadata={"help": "number of step checkpoints kept"})
    workers: int = field(default=0, metadata={"help": "DataLoader worker processes"})
    max_bad_steps: int = field(default=5, metadata={"help": "stop after this many non-finite steps in a row"})
    resume: bool = field(default=False, metadata={"help": "continue from the newest valid checkpoint in --out"})
    tensorboard: bool = field(default=True, metadata={"help": "log to RUN/tb when tensorboard is installed"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = the cores idle at start, at least 1; "
                                                      "config.json records the result)"})
    flush_denormal: bool = field(default=True, metadata={
        "help": "flush subnormal floats to zero on CPU (x86 computes them in microcode: the step slows ~2x once "
                "they appear, a few hundred steps in); --no-flush-denormal computes them exactly"})

    def validate(self) -> list[int]:
        """``check_flags()``, then the files: ``--out`` can become a run directory, the dataset has
        train and val objects in every category, sound GT meshes (the evaluation after training scores
        them) and ``--val-views`` fits it. Everything that would otherwise fail at the first validation,
        hours in, fails now (one line naming flag or file).

        Returns:
            the validation view indices (``val_views`` resolved against the dataset's views).
        """
        self.check_flags()
        check_output_dir(self.out, "--out")
        info = validate_dataset(self.data, require_splits=("train", "val"), check_meshes=True)
        split_categories(info, "train")
        return parse_views(self.val_views, info.num_views, "--val-views")

    def check_flags(self) -> None:
        """Reject nonsensical values without touching any file: one-line ValueError naming the flag."""
        if self.encoder not in ENCODERS:
            raise ValueError(f"--encoder {self.encoder!r} unknown; valid encoders: {', '.join(ENCODERS)}")
        _check_common(self.device, self.backend)
        check_precision(self.precision)
        for name in ("iterations", "batch_size", "val_every", "log_every", "keep", "max_bad_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{_flag(name)} must be >= 1, got {getattr(self, name)}")
        if self.decay_step < 0:
            raise ValueError(f"--decay-step must be >= 0 (0 = decay_at x iterations), got {self.decay_step}")
        for name in ("lr", "sigma"):
            v = getattr(self, name)
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"--{name} must be a positive finite number, got {v}")
        if not 0 < self.eps < 0.5:
            raise ValueError(f"--eps must be in (0, 0.5) (SoftRas: 1e-10 in training, 1e-4 by default), "
                             f"got {self.eps}")
        if self.colour and self.backend not in RGBA_BACKENDS:
            raise ValueError(f"--colour needs a backend with a colour render ({' or '.join(RGBA_BACKENDS)}), "
                             f"got --backend {self.backend}")
        if self.colour_head not in ("latent", "sample"):
            raise ValueError(f"--colour-head must be latent or sample, got {self.colour_head!r}")
        for name in ("lambda_lap", "lambda_flat", "lambda_colour"):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"{_flag(name)} must be a finite number >= 0, got {v}")
        check_lr_schedule(self.lr_schedule)
        if not 0 <= self.decay_at <= 1 or not 0 < self.decay <= 1:
            raise ValueError(f"--decay-at must be in [0, 1] and --decay in (0, 1], got {self.decay_at}, {self.decay}")
        if self.workers < 0 or self.threads < 0 or self.val_objects < 0:
            raise ValueError("--workers, --threads and --val-objects must be >= 0")
        # absurd values would exhaust memory or processes instead of failing
        cap = max(64, 4 * (os.cpu_count() or 1))
        for name, hi in (("batch_size", 1 << 16), ("workers", cap), ("threads", cap)):
            if getattr(self, name) > hi:
                raise ValueError(f"{_flag(name)} must be <= {hi}, got {getattr(self, name)}")
        if not 0 <= self.seed < 1 << 63:
            raise ValueError(f"--seed must be in [0, 2^63), got {self.seed}")
        if not self.out.strip():
            raise ValueError("--out must name a run directory, got an empty string")
        check_ranges(self)  # the upper bounds (recon.ranges, docs/operations.md)


@dataclass
class EvalConfig:
    """Evaluation settings (``python -m pipelines.eval``)."""

    checkpoint: str = field(default="", metadata={"help": "run directory (uses best.pt) or checkpoint file",
                                                  "required": True})
    data: str = field(default="data/synthetic.h5", metadata={"help": "HDF5 dataset"})
    split: str = field(default="test", metadata={"help": "split", "choices": ("train", "val", "test")})
    views: str = field(default="all", metadata={"help": VIEWS_HELP})
    backend: str = field(default="softras",
                         metadata={"help": "renderer for the silhouette loss: " + " | ".join(BACKENDS)})
    impl: str = field(default="auto", metadata={"help": "softras / dibr implementation: auto | torch | cpp | cuda"})
    protocol: str = field(default=DEFAULT_PROTOCOL, metadata={
        "help": "3D IoU protocol: softras-iou (SoftRas/NMR evaluate_iou, the published numbers; old name: softras) | "
                "exact (ray parity at the cell centres of [-0.5, 0.5]^3)", "choices": PROTOCOL_CHOICES})
    encoder: str | None = field(default=None, metadata={"help": "expected encoder; error if the checkpoint differs"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda"})
    precision: str = field(default="auto", metadata={
        "help": "auto | fp32 | bf16: the encoder/decoder's precision (auto = the one the checkpoint was trained in "
                "where this device runs it natively, else fp32)", "choices": PRECISIONS})
    max_per_category: int | None = field(default=None,
                                         metadata={"help": "evaluate only the first N objects per category"})
    full_metrics: bool = field(default=True, metadata={"help": "Chamfer / F-score (--no-full-metrics: faster)"})
    json: str | None = field(default=None, metadata={"help": "write results here (default: RUN/eval_<split>.json)"})
    figures: int = field(default=2, metadata={"help": "Fig. 2 rows per category (0 = none)"})
    out: str | None = field(default=None, metadata={"help": "figure/mesh directory (default: RUN/eval_<split>)"})

    def __post_init__(self) -> None:
        self.protocol = PROTOCOL_ALIASES.get(self.protocol, self.protocol)  # "softras" -> "softras-iou"

    def validate(self) -> None:
        """Reject bad flag values before any file is read (one-line ValueError naming the flag).
        What needs the files (views vs the dataset, the checkpoint, writable outputs) is checked
        by ``recon.workflows.eval.evaluate_run`` before it computes anything."""
        if not self.checkpoint.strip():
            raise ValueError("--checkpoint must name a run directory or a checkpoint file, got an empty string")
        if self.split not in ("train", "val", "test"):
            raise ValueError(f"--split {self.split!r}: expected train, val or test")
        _check_common(self.device, self.backend)
        check_protocol(self.protocol)
        check_precision(self.precision)
        if self.encoder is not None and self.encoder not in ENCODERS:
            raise ValueError(f"--encoder {self.encoder!r} unknown; valid encoders: {', '.join(ENCODERS)}")
        if self.figures < 0:
            raise ValueError(f"--figures must be >= 0, got {self.figures}")
        if self.max_per_category is not None and self.max_per_category < 1:
            raise ValueError(f"--max-per-category must be >= 1, got {self.max_per_category}")
        check_ranges(self)



@dataclass
class CompareConfig:
    """Encoder comparison settings (``python -m pipelines.compare``): the training settings shared by
    every encoder (``train``; its ``encoder``, ``out`` and ``resume`` are set per run) and how the
    runs are evaluated. The flags are this class's fields plus ``TrainConfig``'s."""

    train: TrainConfig = field(default_factory=TrainConfig, metadata={"nested": True})
    out: str = field(default="runs/compare", metadata={"help": "output directory (one run per encoder inside)"})
    encoders: str = field(default="baseline,resnet,attention", metadata={"help": "comma-separated encoder names"})
    split: str = field(default="test", metadata={"help": "evaluation split", "choices": ("train", "val", "test")})
    views: str = field(default="all", metadata={"help": "evaluation views: " + VIEWS_HELP})
    max_per_category: int = field(default=0, metadata={"help": "evaluate the first N objects per category (0 = all)"})
    checkpoint: str = field(default="best", metadata={"help": "evaluate best.pt (by val IoU) or last.pt",
                                                      "choices": ("best", "last")})
    protocol: str = field(default=DEFAULT_PROTOCOL, metadata={
        "help": "3D IoU protocol: softras-iou (old name: softras) | exact (see pipelines.eval)",
        "choices": PROTOCOL_CHOICES})
    classes: str | None = field(default=None, metadata={
        "help": "comma-separated category keys or names the dataset must hold exactly (error otherwise; convert "
                "with --classes)"})
    preset: str | None = field(default=None, metadata={
        "help": "named settings (recon.workflows.compare.PRESETS): softras-shapenet | report-6 | demo; explicit flags override "
                "them"})
    figures: int = field(default=2, metadata={"help": "Fig. 2 rows per category"})
    full_metrics: bool = field(default=True, metadata={"help": "also compute Chamfer distance and F-score"})

    def __post_init__(self) -> None:
        self.protocol = PROTOCOL_ALIASES.get(self.protocol, self.protocol)  # "softras" -> "softras-iou"

    def encoder_names(self) -> list[str]:
        """``--encoders`` as a list; unknown names raise ValueError listing the valid ones."""
        names = list(dict.fromkeys(x.strip() for x in self.encoders.split(",") if x.strip()))
        bad = [n for n in names if n not in ENCODERS]
        if bad or not names:
            what = f"unknown encoder(s) {', '.join(map(repr, bad))}" if bad else "no encoder given"
            raise ValueError(f"--encoders: {what}; valid encoders: {', '.join(ENCODERS)}")
        return names

    def train_config(self, encoder: str) -> TrainConfig:
        """The ``TrainConfig`` of one encoder's run: ``OUT/<encoder>``, everything else shared."""
        return dataclasses.replace(self.train, encoder=encoder, out=os.path.join(self.out, encoder), resume=False)

    def validate(self) -> list[str]:
        """Check flags, the output directory and the dataset (all before any training); return the encoders."""
        encoders = self.encoder_names()
        if self.split not in ("train", "val", "test"):
            raise ValueError(f"--split {self.split!r}: expected train, val or test")
        if self.checkpoint not in ("best", "last"):
            raise ValueError(f"--checkpoint must be best or last, got {self.checkpoint!r}")
        check_protocol(self.protocol)
        if min(self.max_per_category, self.figures) < 0:
            raise ValueError("--max-per-category and --figures must be >= 0")
        if not self.out.strip():
            raise ValueError("--out must name a directory, got an empty string")
        check_ranges(self)
        self.train_config(encoders[0]).check_flags()
        check_output_dir(self.out, "--out")
        info = validate_dataset(self.train.data, require_splits=("train", "val", self.split), check_meshes=True)
        split_categories(info, "train")
        if self.classes:
            _check_classes(info, self.classes, self.preset)
        parse_views(self.views, info.num_views, "--views")
        parse_views(self.train.val_views, info.num_views, "--val-views")
        return encoders


def _check_classes(info: Any, classes: str, preset: str | None) -> None:
    """The dataset holds exactly the categories of ``--classes`` (keys or names), else a one-line error."""
    wanted = [c.strip() for c in classes.split(",") if c.strip()]
    have = {key: name for key, name in info.categories.items()}
    missing = [c for c in wanted if c not in have and c not in have.values()]
    extra = [k for k, n in have.items() if k not in wanted and n not in wanted]
    if missing or extra:
        what = (f"lacks {', '.join(missing)}" if missing else "") + ("; " if missing and extra else "") + \
            (f"also holds {', '.join(f'{k} ({have[k]})' for k in extra)}" if extra else "")
        source = f"--preset {preset}" if preset else "--classes"
        raise ValueError(f"{info.path}: {source} needs exactly the categories {','.join(wanted)}; the dataset {what} "
                         f"(convert with: python -m pipelines.convert softras --src DIR --out FILE --classes "
                         f"{','.join(wanted)})")


@dataclass
class DemoConfig:
    """``make demo`` / ``python -m pipelines.demo``: build the default dataset, train, evaluate."""

    data: str = field(default="data/synthetic.h5", metadata={"help": "dataset path, built if missing"})
    out: str = field(default="runs/demo", metadata={"help": "run directory"})
    encoder: str = field(default="baseline", metadata={"help": "baseline | resnet | attention"})
    per_category: int = field(default=300, metadata={"help": "train objects per category when building the data "
                                                             "(val/test: recon.data.synthetic.split_sizes)"})
    budget_minutes: float = field(default=10.0, metadata={
        "help": "wall-clock budget of the training stage (calibration and kernel build included): a short "
                "calibration fixes the steps that fit it"})
    iterations: int = field(default=0, metadata={"help": "training steps (0 = as many as fit --budget-minutes); "
                                                         "with the run's --precision and --threads it reproduces it"})
    batch_size: int = field(default=0, metadata={"help": "batch size (0 = 16 on CPU, 64 on CUDA)"})
    lr: float = field(default=5e-4, metadata={"help": "Adam learning rate for the short demo run"})
    decay_at: float = field(default=0.6, metadata={"help": "fraction of the steps after which sigma (and, with "
                                                            "--lr-schedule step, lr) is x 0.3"})
    lr_schedule: str = field(default="step", metadata={"help": "step | cosine (see pipelines.train --help)",
                                                       "choices": LR_SCHEDULES})
    decay_step: int = field(default=0, metadata={"help": "with --iterations: the step of the decay (0 = decay_at x "
                                                         "iterations); the reproduce line names it"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N"})
    precision: str = field(default="auto", metadata={"help": PRECISION_HELP, "choices": PRECISIONS})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = the cores idle at start, at least 1)"})
    seed: int = field(default=0, metadata={"help": "seed of the dataset and the training"})

    def validate(self) -> None:
        """One-line ValueError naming the flag."""
        if self.encoder not in ENCODERS:
            raise ValueError(f"--encoder {self.encoder!r} unknown; valid encoders: {', '.join(ENCODERS)}")
        if self.per_category < 1:
            raise ValueError(f"--per-category must be >= 1, got {self.per_category}")
        if min(self.iterations, self.batch_size, self.threads, self.decay_step) < 0:
            raise ValueError("--iterations, --batch-size, --threads and --decay-step must be >= 0 (0 = the demo's "
                             "choice)")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"--lr must be a positive finite number, got {self.lr}")
        if not (self.budget_minutes > 0 and math.isfinite(self.budget_minutes)):
            raise ValueError(f"--budget-minutes must be a positive number of minutes, got {self.budget_minutes}")
        if not 0 <= self.decay_at <= 1:
            raise ValueError(f"--decay-at must be in [0, 1], got {self.decay_at}")
        check_lr_schedule(self.lr_schedule)
        check_precision(self.precision)
        # the budget applies only when it sets the steps; below MIN_DEMO_MINUTES it would train a token 40 steps
        check_ranges(self, skip=("budget_minutes",) if self.iterations else ())
        check_output_dir(self.out, "--out")

_TYPES = {"int": int, "float": float, "str": str, "int | None": int, "str | None": str, "float | None": float}


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Add ``--field-name`` flags for every dataclass field (bools become --x / --no-x)."""
    for f in fields(cls):
        if f.name in skip:
            continue
        meta = dict(f.metadata)
        kwargs: dict[str, Any] = {"default": f.default}
        if meta.get("required"):
            kwargs = {"required": True}
            help_ = meta.get("help", "")
        else:
            help_ = meta.get("help", "") + f" (default: {f.default})"
        if f.type in (bool, "bool"):
            parser.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, help=help_, **kwargs)
            continue
        typ = _TYPES.get(f.type if isinstance(f.type, str) else f.type.__name__, str)
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        parser.add_argument(_flag(f.name), type=typ, help=help_, **kwargs)


def config_from_args(cls: type, args: argparse.Namespace) -> Any:
    """The ``cls`` instance of parsed flags (fields the namespace lacks keep their defaults)."""
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})


def save_config(cfg: Any, path: str | os.PathLike) -> None:
    """``cfg`` (a dataclass) as indented JSON, written atomically."""
    atomic_write_bytes(path, (json_text(dataclasses.asdict(cfg)) + "\n").encode())
