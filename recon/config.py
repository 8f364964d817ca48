"""Dataclass configs, one per command; every flag of every command maps 1:1 onto a field.

- ``add_dataclass_args`` adds a config's fields as flags, ``config_from_args`` reads them back;
  a field marked ``nested`` holds another config (``DemoConfig.train``, ``CompareConfig.train``)
  whose fields are flags too (all of them, or those its metadata lists).
- ``validate()`` checks the flags alone, reads no file (one-line ``recon.errors.ConfigError``
  naming the flag); the files are checked once, where a workflow starts (``recon.training.Trainer``,
  ``recon.workflows.eval.evaluate_run``, ``recon.workflows.compare.run_comparison``,
  ``recon.workflows.demo.run_demo``, ``recon.workflows.convert.convert``, ...).
- Imports nothing heavy (no torch, data, models, protocols or render): every command answers
  ``--help`` and refuses a bad flag before torch is loaded. The names flags choose from are in
  ``recon.choices``.
- Every run saves its config (``save_config``).

Field metadata: ``help`` (the flag's help; a dict ``{command: help}`` for ``ConvertConfig``),
optionally ``choices``, ``required``, ``positional`` (with ``nargs``, ``metavar``), ``type`` (a
parser of the flag's text), ``action`` (``store_true`` / ``store_false``: a flag without its
``--no-`` twin), ``flag`` (the flag's name when it is not ``--field-name``), ``show_default``
(False: the help already says it; never shown for None and ``action`` flags), ``commands``
(``ConvertConfig``: the subcommands having it).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from dataclasses import dataclass, field, fields
from typing import Any, Sequence

from recon.choices import (ALL, BACKENDS, COLOUR_HEADS, ENCODERS, FRAMINGS, IMPLS, LR_SCHEDULES, NUM_VIEWS,
                           DEFAULT_PROTOCOL, PRECISION_HELP, PRECISIONS, PROTOCOL_ALIASES, PROTOCOL_CHOICES,
                           RGBA_BACKENDS, SPLITS, check_choice, check_precision, check_protocol)
from recon.errors import ConfigError
from recon.io import atomic_write_bytes, json_text
from recon.ranges import check_ranges

__all__ = ["TrainConfig", "EvalConfig", "CompareConfig", "DemoConfig", "ConvertConfig", "BenchConfig",
           "PredictConfig", "GpuCheckConfig", "VIEWS_HELP", "LR_SCHEDULES", "parse_views", "add_dataclass_args",
           "config_from_args", "save_config", "CONVERT_ALIASES"]


def check_lr_schedule(schedule: str) -> None:
    """One-line ConfigError naming ``--lr-schedule`` unless ``schedule`` is one of ``LR_SCHEDULES``."""
    if schedule not in LR_SCHEDULES:
        raise ConfigError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {schedule!r}")


VIEWS_HELP = ("all | N (N evenly spaced views, e.g. 4 -> 0,6,12,18) | comma list of view indices "
              "(e.g. 0,6; a single index needs a trailing comma: 5,)")
IMPL_HELP = "softras / dibr implementation: " + " | ".join(IMPLS)
PROTOCOL_HELP = ("3D IoU protocol: softras-iou (SoftRas/NMR evaluate_iou, the published numbers; old name: softras) | "
                 "exact (ray parity at the cell centres of [-0.5, 0.5]^3)")
MAX_PER_CATEGORY_HELP = "evaluate only the first N objects per category (0 = all)"


def parse_views(spec: str | int | Sequence[int], num_views: int = NUM_VIEWS, flag: str = "--views"
                ) -> list[int]:
    """View indices from a view spec (see ``VIEWS_HELP``).

    ``"all"`` -> every view; ``"N"`` (a bare number) -> N views evenly spaced; ``"0,6,12"`` or ``"5,"``
    -> those views. Raises ConfigError naming ``flag`` for anything else.
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
                    raise ConfigError(f"{flag} {spec}: a single number is a count of evenly spaced views and must "
                                      f"be in [1, {num_views}]{hint}")
                return [round(i * num_views / count) % num_views for i in range(count)]
        except ValueError as e:
            if str(e).startswith(flag):
                raise
            raise ConfigError(f"{flag} {spec!r}: expected {VIEWS_HELP}") from None
    elif isinstance(spec, int):
        return parse_views(str(spec), num_views, flag)
    else:
        views = [int(v) for v in spec]
    bad = [v for v in views if not 0 <= v < num_views]
    if bad or not views:
        raise ConfigError(f"{flag} {spec}: view indices must be in [0, {num_views}), got {views}")
    return views


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_common(device: str, backend: str) -> None:
    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend!r} unknown; valid backends: {', '.join(BACKENDS)}")
    if not device.strip():
        raise ConfigError("--device must be auto, cpu, cuda or cuda:N, got an empty string")


def _check_encoder(encoder: str, flag: str = "--encoder") -> None:
    if encoder not in ENCODERS:
        raise ConfigError(f"{flag} {encoder!r} unknown; valid encoders: {', '.join(ENCODERS)}")


@dataclass
class TrainConfig:
    """Training settings. Defaults follow SoftRas (examples/recon/train.py) except the length."""

    data: str = field(default="data/synthetic.h5", metadata={"help": "HDF5 dataset (python -m pipelines.convert)"})
    out: str = field(default="runs/run", metadata={"help": "run directory (config, metrics, checkpoints)"})
    encoder: str = field(default="baseline", metadata={"help": " | ".join(ENCODERS)})
    backend: str = field(default="softras", metadata={"help": "rendering backend: " + " | ".join(BACKENDS)})
    impl: str = field(default="auto", metadata={"help": IMPL_HELP})
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
                "the input view only, needs the input camera)", "choices": COLOUR_HEADS})
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

    def validate(self) -> None:
        """Reject nonsensical flag values without touching any file: one-line ConfigError naming the
        flag. (The files, ``--out``, ``--data`` and ``--val-views`` against the dataset, are checked
        by ``recon.training.check_train_inputs`` when a training starts.)"""
        _check_encoder(self.encoder)
        _check_common(self.device, self.backend)
        check_precision(self.precision)
        for name in ("iterations", "batch_size", "val_every", "log_every", "keep", "max_bad_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{_flag(name)} must be >= 1, got {getattr(self, name)}")
        if self.decay_step < 0:
            raise ConfigError(f"--decay-step must be >= 0 (0 = decay_at x iterations), got {self.decay_step}")
        for name in ("lr", "sigma"):
            v = getattr(self, name)
            if not (v > 0 and math.isfinite(v)):
                raise ConfigError(f"--{name} must be a positive finite number, got {v}")
        if not 0 < self.eps < 0.5:
            raise ConfigError(f"--eps must be in (0, 0.5) (SoftRas: 1e-10 in training, 1e-4 by default), "
                             f"got {self.eps}")
        if self.colour and self.backend not in RGBA_BACKENDS:
            raise ConfigError(f"--colour needs a backend with a colour render ({' or '.join(RGBA_BACKENDS)}), "
                             f"got --backend {self.backend}")
        if self.colour_head not in COLOUR_HEADS:
            raise ConfigError(f"--colour-head must be {' or '.join(COLOUR_HEADS)}, got {self.colour_head!r}")
        for name in ("lambda_lap", "lambda_flat", "lambda_colour"):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                raise ConfigError(f"{_flag(name)} must be a finite number >= 0, got {v}")
        check_lr_schedule(self.lr_schedule)
        if not 0 <= self.decay_at <= 1 or not 0 < self.decay <= 1:
            raise ConfigError(f"--decay-at must be in [0, 1] and --decay in (0, 1], got {self.decay_at}, {self.decay}")
        if self.workers < 0 or self.threads < 0 or self.val_objects < 0:
            raise ConfigError("--workers, --threads and --val-objects must be >= 0")
        # absurd values would exhaust memory or processes instead of failing
        cap = max(64, 4 * (os.cpu_count() or 1))
        for name, hi in (("batch_size", 1 << 16), ("workers", cap), ("threads", cap)):
            if getattr(self, name) > hi:
                raise ConfigError(f"{_flag(name)} must be <= {hi}, got {getattr(self, name)}")
        if not 0 <= self.seed < 1 << 63:
            raise ConfigError(f"--seed must be in [0, 2^63), got {self.seed}")
        if not self.out.strip():
            raise ConfigError("--out must name a run directory, got an empty string")
        if not self.data.strip():
            raise ConfigError("--data must name a dataset file, got an empty string")
        check_ranges(self)  # the upper bounds (recon.ranges, docs/operations.md)

    check_flags = validate  # the name before validate() became pure


@dataclass
class EvalConfig:
    """Evaluation settings (``python -m pipelines.eval``)."""

    checkpoint: str = field(default="", metadata={"help": "run directory (uses best.pt) or checkpoint file",
                                                  "required": True})
    data: str = field(default="data/synthetic.h5", metadata={"help": "HDF5 dataset"})
    split: str = field(default="test", metadata={"help": "split", "choices": SPLITS})
    views: str = field(default="all", metadata={"help": VIEWS_HELP})
    backend: str = field(default="softras",
                         metadata={"help": "renderer for the silhouette loss: " + " | ".join(BACKENDS)})
    impl: str = field(default="auto", metadata={"help": IMPL_HELP})
    protocol: str = field(default=DEFAULT_PROTOCOL, metadata={"help": PROTOCOL_HELP, "choices": PROTOCOL_CHOICES})
    encoder: str | None = field(default=None, metadata={"help": "expected encoder; error if the checkpoint differs"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda"})
    precision: str = field(default="auto", metadata={
        "help": "auto | fp32 | bf16: the encoder/decoder's precision (auto = the one the checkpoint was trained in "
                "where this device runs it natively, else fp32)", "choices": PRECISIONS})
    max_per_category: int = field(default=ALL, metadata={"help": MAX_PER_CATEGORY_HELP})
    full_metrics: bool = field(default=True, metadata={"help": "Chamfer / F-score (--no-full-metrics: faster)"})
    json: str | None = field(default=None, metadata={"help": "write results here (default: RUN/eval_<split>.json)"})
    figures: int = field(default=2, metadata={"help": "Fig. 2 rows per category (0 = none)"})
    out: str | None = field(default=None, metadata={"help": "figure/mesh directory (default: RUN/eval_<split>)"})

    def __post_init__(self) -> None:
        self.protocol = PROTOCOL_ALIASES.get(self.protocol, self.protocol)  # "softras" -> "softras-iou"

    def validate(self) -> None:
        """Reject bad flag values before any file is read (one-line ConfigError naming the flag).
        What needs the files (views vs the dataset, the checkpoint, writable outputs) is checked
        by ``recon.workflows.eval.evaluate_run`` before it computes anything."""
        if not self.checkpoint.strip():
            raise ConfigError("--checkpoint must name a run directory or a checkpoint file, got an empty string")
        if self.split not in SPLITS:
            raise ConfigError(f"--split {self.split!r}: expected train, val or test")
        _check_common(self.device, self.backend)
        check_protocol(self.protocol)
        check_precision(self.precision)
        if self.encoder is not None:
            _check_encoder(self.encoder)
        if self.figures < 0:
            raise ConfigError(f"--figures must be >= 0, got {self.figures}")
        if self.max_per_category is not None and self.max_per_category < 0:  # None: the old spelling of all
            raise ConfigError(f"--max-per-category must be >= 0 (0 = all), got {self.max_per_category}")
        check_ranges(self)


def _train_flags(skip: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(TrainConfig) if f.name not in skip)


@dataclass
class CompareConfig:
    """Encoder comparison settings (``python -m pipelines.compare``): the training settings shared by
    every encoder (``train``; its ``encoder``, ``out`` and ``resume`` are set per run) and how the
    runs are evaluated (the ``EvalConfig`` fields of the same names, with the same meaning and
    spelling; ``recon.workflows.compare.eval_config`` builds each run's ``EvalConfig``). The flags are this class's
    fields plus ``TrainConfig``'s."""

    train: TrainConfig = field(default_factory=lambda: TrainConfig(iterations=0), metadata={
        "nested": True, "flags": _train_flags(("out", "encoder", "resume"))})
    out: str = field(default="runs/compare", metadata={"help": "output directory (one run per encoder inside)"})
    encoders: str = field(default="baseline,resnet,attention", metadata={"help": "comma-separated encoder names"})
    split: str = field(default="test", metadata={"help": "evaluation split", "choices": SPLITS})
    views: str = field(default="all", metadata={"help": "evaluation views: " + VIEWS_HELP})
    max_per_category: int = field(default=ALL, metadata={"help": MAX_PER_CATEGORY_HELP})
    checkpoint: str = field(default="best", metadata={"help": "evaluate best.pt (by val IoU) or last.pt",
                                                      "choices": ("best", "last")})
    protocol: str = field(default=DEFAULT_PROTOCOL, metadata={"help": PROTOCOL_HELP, "choices": PROTOCOL_CHOICES})
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
        """``--encoders`` as a list; unknown names raise ConfigError listing the valid ones."""
        names = list(dict.fromkeys(x.strip() for x in self.encoders.split(",") if x.strip()))
        bad = [n for n in names if n not in ENCODERS]
        if bad or not names:
            what = f"unknown encoder(s) {', '.join(map(repr, bad))}" if bad else "no encoder given"
            raise ConfigError(f"--encoders: {what}; valid encoders: {', '.join(ENCODERS)}")
        return names

    def train_config(self, encoder: str) -> TrainConfig:
        """The ``TrainConfig`` of one encoder's run: ``OUT/<encoder>``, everything else shared."""
        return dataclasses.replace(self.train, encoder=encoder, out=os.path.join(self.out, encoder), resume=False)

    def validate(self) -> list[str]:
        """Check the flags (the shared training's too), reading no file; return the encoders. The
        output directory and the dataset are checked by ``recon.workflows.compare.run_comparison``."""
        encoders = self.encoder_names()
        if self.split not in SPLITS:
            raise ConfigError(f"--split {self.split!r}: expected train, val or test")
        if self.checkpoint not in ("best", "last"):
            raise ConfigError(f"--checkpoint must be best or last, got {self.checkpoint!r}")
        check_protocol(self.protocol)
        if min(self.max_per_category, self.figures) < 0:
            raise ConfigError("--max-per-category and --figures must be >= 0")
        if not self.out.strip():
            raise ConfigError("--out must name a directory, got an empty string")
        check_ranges(self)  # the upper bounds (recon.ranges, docs/operations.md)
        self.train_config(encoders[0]).validate()
        return encoders


# The TrainConfig fields the demo exposes as flags, and where the demo's default or help differs.
DEMO_TRAIN_FLAGS = ("data", "out", "encoder", "iterations", "batch_size", "lr", "decay_at", "lr_schedule", "decay_step",
                    "device", "precision", "threads", "seed")
DEMO_TRAIN_DEFAULTS = {"out": "runs/demo", "iterations": 0, "batch_size": 0, "lr": 5e-4}
DEMO_TRAIN_HELP = {
    "data": "dataset path, built if missing",
    "out": "run directory",
    "iterations": "training steps (0 = as many as fit --budget-minutes); with the run's --precision and --threads "
                  "it reproduces it",
    "batch_size": "batch size (0 = 16 on CPU, 64 on CUDA)",
    "lr": "Adam learning rate for the short demo run",
    "decay_at": "fraction of the steps after which sigma (and, with --lr-schedule step, lr) is x 0.3",
    "lr_schedule": "step | cosine (see pipelines.train --help)",
    "decay_step": "with --iterations: the step of the decay (0 = decay_at x iterations); the reproduce line names it",
    "seed": "seed of the dataset and the training",
}


@dataclass
class DemoConfig:
    """``make demo`` / ``python -m pipelines.demo``: build the default dataset, train, evaluate.

    ``train`` is the demo's training (``DEMO_TRAIN_FLAGS`` are flags), where ``iterations`` 0 means
    "as many as fit the budget" and ``batch_size`` 0 "the device's demo batch" (``recon.workflows.demo``
    resolves both before training). ``DemoConfig.of(data=..., iterations=...)`` builds one from
    flag names."""

    train: TrainConfig = field(default_factory=lambda: TrainConfig(**DEMO_TRAIN_DEFAULTS), metadata={
        "nested": True, "flags": DEMO_TRAIN_FLAGS, "help": DEMO_TRAIN_HELP})
    per_category: int = field(default=300, metadata={"help": "train objects per category when building the data "
                                                             "(val/test: recon.data.synthetic.split_sizes)"})
    budget_minutes: float = field(default=10.0, metadata={
        "help": "wall-clock budget of the training stage (calibration and kernel build included): a short "
                "calibration fixes the steps that fit it"})

    @classmethod
    def of(cls, **flags: Any) -> "DemoConfig":
        """A ``DemoConfig`` from flag names (``data``, ``iterations``, ``per_category``, ...)."""
        own = {f.name for f in fields(cls)} - {"train"}
        bad = set(flags) - own - set(DEMO_TRAIN_FLAGS)
        if bad:
            raise TypeError(f"DemoConfig.of: unknown field(s) {', '.join(sorted(bad))}")
        train = dataclasses.replace(TrainConfig(**DEMO_TRAIN_DEFAULTS),
                                    **{k: v for k, v in flags.items() if k not in own})
        return cls(train=train, **{k: v for k, v in flags.items() if k in own})

    def validate(self) -> None:
        """One-line ConfigError naming the flag; reads no file."""
        if self.per_category < 1:
            raise ConfigError(f"--per-category must be >= 1, got {self.per_category}")
        if min(self.train.iterations, self.train.batch_size, self.train.threads) < 0:
            raise ConfigError("--iterations, --batch-size and --threads must be >= 0 (0 = the demo's choice)")
        if not (self.budget_minutes > 0 and math.isfinite(self.budget_minutes)):
            raise ConfigError(f"--budget-minutes must be a positive number of minutes, got {self.budget_minutes}")
        # the budget applies only when it sets the steps; below MIN_DEMO_MINUTES it would train a token 40 steps
        check_ranges(self, skip=("budget_minutes",) if self.train.iterations else ())
        # the rest as any training: 0 (the demo's choice) stands for a valid value here
        dataclasses.replace(self.train, iterations=self.train.iterations or 1,
                            batch_size=self.train.batch_size or 1).validate()


CONVERT_COMMANDS = ("synthetic", "meshes", "nmr", "validate")
# earlier names: "softras" (the SoftRas/NMR .npz converter) is "nmr", since "softras" names the renderer backend
# (and "softras-iou" the 3D-IoU protocol)
CONVERT_ALIASES = {"softras": "nmr"}
MAX_COUNT = 1_000_000  # objects per category and split, workers: beyond this a typo, not a dataset (memory, disk)
_BUILDS = ("synthetic", "meshes", "nmr")


@dataclass
class ConvertConfig:
    """The flags of ``python -m pipelines.convert`` (one field per flag; ``command`` says which
    apply: metadata ``commands``)."""

    command: str = field(default="", metadata={"subcommand": True})
    out: str = field(default="", metadata={"help": "output HDF5 file (written atomically: temp file + rename)",
                                           "required": True, "commands": _BUILDS})
    path: str = field(default="", metadata={"help": "HDF5 file", "positional": True, "commands": ("validate",)})
    deep: bool = field(default=False, metadata={
        "help": "read every chunk, so corrupt compressed data is found now, not during a training (costs a full read "
                "of the file)", "action": "store_true", "commands": ("validate",)})
    src: str = field(default="", metadata={"help": {"meshes": "source folder", "nmr": "folder with the .npz files"},
                                           "required": True, "commands": ("meshes", "nmr")})
    classes: str | None = field(default=None, metadata={
        "help": "comma-separated subset of categories, by key (03001627) or name (chair)", "commands": _BUILDS})
    workers: int | None = field(default=None, metadata={
        "help": "worker processes (default: all CPU cores; 0 or 1 = no pool)", "show_default": False,
        "commands": ("synthetic", "meshes")})
    no_progress: bool = field(default=False, metadata={"help": "no progress bars", "action": "store_true",
                                                       "commands": _BUILDS})
    per_category: int = field(default=300, metadata={"help": "train objects per category", "commands": ("synthetic",)})
    val: int | None = field(default=None, metadata={
        "help": "val objects per category (default: max(1, per-category / 7.5))", "show_default": False,
        "commands": ("synthetic",)})
    test: int | None = field(default=None, metadata={
        "help": "test objects per category (default: max(1, per-category / 7.5))", "show_default": False,
        "commands": ("synthetic",)})
    seed: int = field(default=0, metadata={"help": {"synthetic": "dataset seed",
                                                    "meshes": "seed of the per-category split shuffle"},
                                           "commands": ("synthetic", "meshes")})
    split: str = field(default="0.8,0.1,0.1", metadata={"help": "train,val,test ratios summing to 1",
                                                        "commands": ("meshes",)})
    voxel_axes: str = field(default="auto", metadata={
        "help": "how NMR voxel axes map onto ours: auto (detect per class from the alpha masks, default), nmr "
                "(+y+x-z, derived from SoftRas' evaluation code), identity, or a signed axis permutation such "
                "as +y+x-z (one signed world axis per source-grid axis)", "show_default": False,
        "commands": ("nmr",)})

    def __post_init__(self) -> None:
        self.command = CONVERT_ALIASES.get(self.command, self.command)

    def validate(self) -> None:
        """Raise ``ConfigError`` (one line naming the flag) for a bad value; reads and writes nothing."""
        if self.command not in CONVERT_COMMANDS:
            raise ConfigError(f"unknown command {self.command!r}, expected one of {', '.join(CONVERT_COMMANDS)}")
        if self.command == "validate":
            return
        if not self.out.strip():
            raise ConfigError("--out must name the output HDF5 file, got an empty string")
        for flag, value, lo, hi in (("--per-category", self.per_category, 1, MAX_COUNT),
                                    ("--val", self.val, 0, MAX_COUNT), ("--test", self.test, 0, MAX_COUNT),
                                    ("--seed", self.seed, 0, 2 ** 63 - 1), ("--workers", self.workers, 0, MAX_COUNT)):
            if value is not None and not lo <= value <= hi:
                raise ConfigError(f"{flag} {value}: expected an integer in [{lo}, {hi}]")
        self.class_list()
        # the parsers of --split and --voxel-axes live with their converters (numpy/torch: loaded after parsing)
        if self.command == "meshes":
            from recon.data.meshes import parse_split

            parse_split(self.split, "--split")
        if self.command == "nmr" and self.voxel_axes != "auto":
            from recon.data.voxel_axes import canonical_axes

            canonical_axes(self.voxel_axes)

    def class_list(self) -> list[str] | None:
        """``--classes`` as a list (None: every category the source has, or the default set)."""
        if self.classes is None:
            return None
        names = [x.strip() for x in self.classes.split(",") if x.strip()]
        if not names:
            raise ConfigError(f"--classes {self.classes!r}: expected a comma-separated list of category keys or names")
        return names


BENCH_PRECISIONS = ("all", "auto", "fp32", "bf16")


@dataclass
class BenchConfig:
    """The flags of ``python -m pipelines.bench``."""

    quick: bool = field(default=False, metadata={
        "help": "one round per setting, renderer batches 1/16 only (a smoke run)", "action": "store_true"})
    device: str = field(default="cpu", metadata={"help": "cpu | cuda"})
    json: str | None = field(default=None, metadata={"help": "write records + ratios here", "show_default": False})
    impls: str | None = field(default=None, metadata={
        "help": "comma list to restrict implementations (torch,cpp,cuda)", "show_default": False})
    step_batches: str = field(default="16,64", metadata={
        "help": "batches of the training-step benchmark (16 is the demo's)"})
    precision: str = field(default="all", metadata={
        "help": "precisions of the training step: all = fp32 and bf16 side by side, auto = what --precision "
                "auto picks for each batch", "choices": BENCH_PRECISIONS})
    data: str | None = field(default=None, metadata={
        "help": "dataset the training steps load from (default: data/synthetic.h5 when present, else a small one "
                "built in a temp dir)", "show_default": False})
    workers: int = field(default=0, metadata={"help": "DataLoader workers of the training steps"})
    threads: int = field(default=0, metadata={"help": "CPU threads (0 = as training chooses: the cores idle at start)"})
    contention: bool = field(default=False, metadata={
        "help": "also measure next to a process that keeps one core busy, and per thread count and OpenMP wait "
                "policy", "action": "store_true"})
    layouts: bool = field(default=False, metadata={
        "help": "also time each encoder's network per precision and memory layout (channels_last or not)",
        "action": "store_true"})
    denormal: bool = field(default=False, metadata={
        "help": "also time the training step at initialisation and after --denormal-steps steps, flushing subnormal "
                "floats to zero or not", "action": "store_true"})
    denormal_steps: int = field(default=300, metadata={
        "help": "steps trained (flushing off) before the late measurement of --denormal"})

    def batches(self) -> tuple[int, ...]:
        """``--step-batches`` as a tuple (ConfigError unless a comma list of sizes >= 1)."""
        try:
            values = tuple(int(x) for x in self.step_batches.split(",") if x.strip())
        except ValueError:
            values = ()
        if not values or min(values) < 1:
            raise ConfigError(f"--step-batches must be a comma list of batch sizes >= 1, e.g. 16,64, "
                              f"got {self.step_batches!r}")
        return values

    def validate(self) -> None:
        """One-line ConfigError naming the flag; reads no file."""
        if self.workers < 0 or self.threads < 0:
            raise ConfigError("--workers and --threads must be >= 0")
        if not 1 <= self.denormal_steps <= 100_000:
            raise ConfigError(f"--denormal-steps must be in [1, 100000], got {self.denormal_steps}")
        check_choice(self.precision, BENCH_PRECISIONS, "--precision")
        self.batches()
        if self.impls is not None:
            bad = [i for i in self.impls.split(",") if i not in IMPLS[1:]]
            if bad:
                raise ConfigError(f"--impls {self.impls!r}: expected a comma list of {', '.join(IMPLS[1:])}")


def check_view(view: int | None, flag: str = "--view") -> None:
    """None (estimate it) or a view index in ``[0, NUM_VIEWS)``; ConfigError naming ``flag`` otherwise."""
    if view is not None and not 0 <= view < NUM_VIEWS:
        raise ConfigError(f"{flag} {view}: expected a training view index in [0, {NUM_VIEWS})")


def parse_view_flag(text: str) -> int | None:
    """``--view``: ``auto`` -> None, else an int (the range is checked by ``PredictConfig.validate``)."""
    if text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a view index 0-23, got {text!r}") from None


@dataclass
class PredictConfig:
    """The flags of ``python -m pipelines.predict``."""

    images: list[str] = field(default_factory=list, metadata={
        "help": "PNG or JPEG files", "positional": True, "nargs": "+", "metavar": "IMAGE"})
    checkpoint: str = field(default="", metadata={"help": "run directory (uses best.pt) or checkpoint file",
                                                  "required": True})
    out: str = field(default="", metadata={"help": "output directory", "required": True})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda"})
    precision: str = field(default="auto", metadata={
        "help": "the network's precision: auto = the one the checkpoint was trained in where this device runs it "
                "natively, else fp32", "choices": PRECISIONS})
    framing: str | None = field(default=None, metadata={
        "help": "how images are framed for the model (default: auto, or fill when --fill is given)",
        "choices": FRAMINGS, "show_default": False})
    fill: float | None = field(default=None, metadata={
        "help": "with --framing fill: fraction of the frame the object's longer side spans", "show_default": False})
    view: int | None = field(default=None, metadata={
        "help": "the training view (camera) the image was taken from, for a checkpoint with the 'sample' colour "
                "head; auto: the view whose silhouette of the predicted mesh best matches the image (default: auto; "
                "other checkpoints need no view)", "type": parse_view_flag, "metavar": "auto|0-23",
        "show_default": False})

    def validate(self) -> None:
        """One-line ConfigError naming the flag; reads no file (``--framing``/``--fill`` are checked
        by ``recon.data.image_io.Framing.from_flags``)."""
        if not self.images:
            raise ConfigError("expected at least one IMAGE")
        if not self.checkpoint.strip():
            raise ConfigError("--checkpoint must name a run directory or a checkpoint file, got an empty string")
        if not self.out.strip():
            raise ConfigError("--out must name a directory, got an empty string")
        if not self.device.strip():
            raise ConfigError("--device must be auto, cpu, cuda or cuda:N, got an empty string")
        check_precision(self.precision)
        check_view(self.view)


@dataclass
class GpuCheckConfig:
    """Settings of ``python -m pipelines.gpucheck``."""

    out: str = field(default="gpu_check", metadata={"help": "report directory"})
    dry_run: bool = field(default=False, metadata={
        "help": "CPU parts only (chosen automatically when CUDA is not available)", "action": "store_true"})
    train_steps: int = field(default=300, metadata={"help": "GPU training steps"})
    tests: bool = field(default=True, metadata={"help": "skip the CUDA-marked pytest run", "action": "store_false",
                                                "flag": "--no-tests"})
    work: str | None = field(default=None, metadata={
        "help": "keep the dataset and training run here (default: a temp dir, removed at the end)",
        "show_default": False})
    budget_s: float = field(default=420.0, metadata={
        "help": "sections that would start after this many seconds are skipped"})

    def validate(self) -> None:
        """One-line ConfigError naming the flag for a bad value; reads no file (the directories are
        checked by ``tools.gpucheck.run_gpu_check`` before any work)."""
        if not self.out.strip():
            raise ConfigError("--out must name a directory, got an empty string")
        if self.train_steps < 1:
            raise ConfigError(f"--train-steps must be >= 1, got {self.train_steps}")
        if not (self.budget_s > 0 and math.isfinite(self.budget_s)):
            raise ConfigError(f"--budget-s must be a positive number of seconds, got {self.budget_s}")


_TYPES = {"int": int, "float": float, "str": str, "int | None": int, "str | None": str, "float | None": float,
          "list[str]": str}


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (),
                       command: str | None = None) -> None:
    """Add ``--field-name`` flags for every dataclass field (see the module doc for the metadata).

    Bools become ``--x / --no-x`` (or one ``store_true`` / ``store_false`` flag); a ``nested`` field
    adds the flags of the config it holds (those its metadata lists), with the defaults of its
    ``default_factory``; ``command`` picks the fields of one subcommand (``ConvertConfig``).
    """
    for f in fields(cls):
        if f.name in skip or f.metadata.get("subcommand"):
            continue
        meta = dict(f.metadata)
        if meta.get("nested"):
            inner = f.default_factory()  # type: ignore[misc]
            only, helps = meta.get("flags"), meta.get("help", {})
            for g in fields(inner):
                if (only is None or g.name in only) and g.name not in skip:
                    _add_field(parser, g, getattr(inner, g.name), helps.get(g.name), command)
            continue
        if "commands" in meta and command not in meta["commands"]:
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        _add_field(parser, f, default, None, command)


def _add_field(parser: argparse.ArgumentParser, f: dataclasses.Field, default: Any, help_: str | None,
               command: str | None) -> None:
    meta = f.metadata
    help_ = help_ if help_ is not None else meta.get("help", "")
    if isinstance(help_, dict):
        help_ = help_[command]
    name = meta.get("flag", _flag(f.name))
    kwargs: dict[str, Any] = {"default": default}
    if meta.get("required"):
        kwargs = {"required": True}
    elif meta.get("show_default", True) and not meta.get("positional") and "action" not in meta \
            and default is not None:
        help_ += f" (default: {default})"
    if meta.get("positional"):
        kwargs = {k: meta[k] for k in ("nargs", "metavar") if k in meta}
        parser.add_argument(f.name, help=help_, **kwargs)
        return
    if "action" in meta:
        parser.add_argument(name, dest=f.name, action=meta["action"], help=help_, default=default)
        return
    if f.type in (bool, "bool"):
        parser.add_argument(name, action=argparse.BooleanOptionalAction, help=help_, **kwargs)
        return
    typ = meta.get("type") or _TYPES.get(f.type if isinstance(f.type, str) else f.type.__name__, str)
    for key in ("choices", "metavar"):
        if key in meta:
            kwargs[key] = meta[key]
    parser.add_argument(name, dest=f.name, type=typ, help=help_, **kwargs)


def config_from_args(cls: type, args: argparse.Namespace) -> Any:
    """The ``cls`` instance of parsed flags (fields the namespace lacks keep their defaults; a
    ``nested`` config is its ``default_factory``'s with the flags it lists replaced)."""
    values = {}
    for f in fields(cls):
        if f.metadata.get("nested"):
            inner = f.default_factory()  # type: ignore[misc]
            only = f.metadata.get("flags")
            values[f.name] = dataclasses.replace(inner, **{
                g.name: getattr(args, g.name) for g in fields(inner)
                if (only is None or g.name in only) and hasattr(args, g.name)})
        elif hasattr(args, f.name):
            values[f.name] = getattr(args, f.name)
    return cls(**values)


def save_config(cfg: Any, path: str | os.PathLike) -> None:
    """``cfg`` (a dataclass) as indented JSON, written atomically."""
    atomic_write_bytes(path, (json_text(dataclasses.asdict(cfg)) + "\n").encode())
