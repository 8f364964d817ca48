"""Dataclass configs. Every CLI flag maps 1:1 onto a field; every run saves its config."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["TrainConfig", "add_dataclass_args", "config_from_args", "save_config", "load_config"]


@dataclass
class TrainConfig:
    """Training settings. Defaults follow SoftRas (examples/recon/train.py) except the length."""

    data: str = field(default="data/synthetic.h5", metadata={"help": "HDF5 dataset (python -m pipelines.convert)"})
    out: str = field(default="runs/run", metadata={"help": "run directory (config, metrics, checkpoints)"})
    encoder: str = field(default="baseline", metadata={"help": "baseline | resnet | attention"})
    backend: str = field(default="softras", metadata={"help": "rendering backend: softras | kaolin | nvdiffrast"})
    impl: str = field(default="auto", metadata={"help": "softras implementation: auto | torch | cpp | cuda"})
    iterations: int = field(default=250_000, metadata={"help": "training steps (SoftRas: 250k)"})
    batch_size: int = field(default=64, metadata={"help": "objects per step (each gives 2 images, 4 renders)"})
    lr: float = field(default=1e-4, metadata={"help": "Adam learning rate"})
    lambda_lap: float = field(default=5e-3, metadata={"help": "Laplacian regulariser weight"})
    lambda_flat: float = field(default=5e-4, metadata={"help": "flatten regulariser weight"})
    sigma: float = field(default=1e-4, metadata={"help": "soft rasterizer sharpness"})
    decay_at: float = field(default=0.6, metadata={"help": "fraction of the run after which lr and sigma are x decay "
                                                            "(SoftRas: 150k of 250k)"})
    decay: float = field(default=0.3, metadata={"help": "lr and sigma multiplier after decay_at"})
    seed: int = field(default=0, metadata={"help": "seed for weights and data sampling"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N"})
    val_every: int = field(default=1000, metadata={"help": "validate (3D IoU) and checkpoint every K steps"})
    val_objects: int = field(default=10, metadata={"help": "val objects per category for periodic validation (0 = all)"})
    val_views: str = field(default="0,6,12,18", metadata={"help": "views used for periodic validation: all | comma list"})
    log_every: int = field(default=10, metadata={"help": "write a metrics.jsonl line every K steps"})
    keep: int = field(default=2, metadata={"help": "number of step checkpoints kept"})
    workers: int = field(default=0, metadata={"help": "DataLoader worker processes"})
    max_bad_steps: int = field(default=5, metadata={"help": "stop after this many non-finite steps in a row"})
    resume: bool = field(default=False, metadata={"help": "continue from the newest valid checkpoint in --out"})
    tensorboard: bool = field(default=True, metadata={"help": "log to RUN/tb when tensorboard is installed"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = torch default)"})


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Add ``--field-name`` flags for every dataclass field (bools become --x / --no-x)."""
    for f in fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        help_ = f.metadata.get("help", "") + f" (default: {f.default})"
        if f.type in (bool, "bool"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_)
        else:
            typ = {"int": int, "float": float, "str": str}.get(f.type if isinstance(f.type, str) else f.type.__name__, str)
            parser.add_argument(flag, type=typ, default=f.default, help=help_)


def config_from_args(cls: type, args: argparse.Namespace) -> Any:
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})


def save_config(cfg: Any, path: str | os.PathLike) -> None:
    from recon.mesh import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(dataclasses.asdict(cfg), indent=2) + "\n").encode())


def load_config(cls: type, path: str | os.PathLike) -> Any:
    with open(path) as f:
        raw = json.load(f)
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in raw.items() if k in known})
