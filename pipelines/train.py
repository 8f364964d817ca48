"""Train a single-view reconstructor with silhouette supervision.

    python -m pipelines.train --data data/synthetic.h5 --out runs/baseline --iterations 2000 --batch-size 16

Multi-process (DDP): ``torchrun --nproc_per_node=N -m pipelines.train ...`` (gloo on CPU, nccl on GPU).
Writes RUN/config.json, RUN/metrics.jsonl, RUN/checkpoints/step-*.pt, RUN/last.pt, RUN/best.pt (by val IoU).
"""

from __future__ import annotations

import argparse
import os
import time

from pipelines.cli import OneLineParser, console, make_progress, user_errors
from recon.config import TrainConfig, add_dataclass_args, config_from_args


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m pipelines.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_args(p, TrainConfig)
    return p


def check_config(cfg: TrainConfig) -> None:
    """Reject nonsensical flag values with a message naming the flag."""
    from recon.models.encoders import ENCODERS
    from recon.render import BACKENDS

    if cfg.encoder not in ENCODERS:
        raise ValueError(f"--encoder {cfg.encoder!r} unknown; valid encoders: {', '.join(ENCODERS)}")
    if cfg.backend not in BACKENDS:
        raise ValueError(f"--backend {cfg.backend!r} unknown; valid backends: {', '.join(BACKENDS)}")
    for name in ("iterations", "batch_size", "val_every", "log_every", "keep", "max_bad_steps"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    for name in ("lr", "sigma"):
        v = getattr(cfg, name)
        if not (v > 0 and v < float("inf")):
            raise ValueError(f"--{name} must be a positive finite number, got {v}")
    for name in ("lambda_lap", "lambda_flat"):
        v = getattr(cfg, name)
        if not (v >= 0 and v < float("inf")):
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {v}")
    if not 0 <= cfg.decay_at <= 1 or not 0 < cfg.decay <= 1:
        raise ValueError(f"--decay-at must be in [0, 1] and --decay in (0, 1], got {cfg.decay_at}, {cfg.decay}")
    if cfg.workers < 0 or cfg.threads < 0 or cfg.val_objects < 0:
        raise ValueError("--workers, --threads and --val-objects must be >= 0")
    # absurd values would exhaust memory or processes instead of failing
    cap = max(64, 4 * (os.cpu_count() or 1))
    for name, hi in (("batch_size", 1 << 16), ("workers", cap), ("threads", cap)):
        if getattr(cfg, name) > hi:
            raise ValueError(f"--{name.replace('_', '-')} must be <= {hi}, got {getattr(cfg, name)}")
    if not 0 <= cfg.seed < 1 << 63:
        raise ValueError(f"--seed must be in [0, 2^63), got {cfg.seed}")
    if not cfg.out.strip():
        raise ValueError("--out must name a run directory, got an empty string")


def main(argv: list[str] | None = None) -> dict:
    cfg = config_from_args(TrainConfig, build_parser().parse_args(argv))
    from recon.training import Trainer, TrainingError

    with user_errors(TrainingError):
        check_config(cfg)
        trainer = Trainer(cfg, console=console)
        try:
            if trainer.is_main:
                n = trainer.model.num_parameters()
                console.print(f"[bold]recon train[/] encoder={cfg.encoder} ({n['encoder']:,} + {n['decoder']:,} "
                              f"decoder = {n['total']:,} parameters) backend={cfg.backend} "
                              f"impl={getattr(trainer.renderer, 'impl', '-')} device={trainer.device} "
                              f"world={trainer.world} -> {cfg.out}")
            if not trainer.is_main:
                return trainer.run()
            with make_progress("loss", "iou", "val_iou", "it_s") as bar:
                task = bar.add_task("train", total=cfg.iterations, completed=trainer.step, loss="-", iou="-",
                                    val_iou="-", it_s="-")
                state = {"t": time.time(), "s": trainer.step}

                def progress(step: int, info: dict) -> None:
                    now = time.time()
                    fields = {}
                    if "loss" in info:
                        fields.update(loss=f"{info['loss']:.4f}", iou=f"{info['iou']:.4f}")
                    if "val_iou" in info:
                        fields["val_iou"] = f"{info['val_iou']:.4f}"
                    if now - state["t"] > 2:
                        fields["it_s"] = f"{(step - state['s']) / (now - state['t']):.2f}"
                        state.update(t=now, s=step)
                    bar.update(task, completed=step, **fields)

                summary = trainer.run(progress)
            console.print(f"done: {summary['step']} steps in {summary['time']:.0f}s, best val IoU "
                          f"{summary['best_val_iou']:.4f}; checkpoints in {cfg.out}")
            return summary
        finally:
            trainer.close()


if __name__ == "__main__":
    main()
