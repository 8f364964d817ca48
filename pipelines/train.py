"""Train a single-view reconstructor with silhouette supervision.

    python -m pipelines.train --data data/synthetic.h5 --out runs/baseline --iterations 2000 --batch-size 16

Multi-process (DDP): ``torchrun --nproc_per_node=N -m pipelines.train ...`` (gloo on CPU, nccl on GPU).
Writes RUN/config.json, RUN/metrics.jsonl, RUN/checkpoints/step-*.pt, RUN/last.pt, RUN/best.pt (by val IoU).
Ctrl-C / SIGTERM: the current step is checkpointed, then exit 130 / 143; continue with --resume.
"""

from __future__ import annotations

import argparse

from rich.markup import escape

from pipelines.cli import TrainProgress, command_parser, console, debug_requested, user_errors
from recon.config import TrainConfig, config_from_args


def build_parser() -> argparse.ArgumentParser:
    return command_parser("pipelines.train", __doc__, TrainConfig)


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(TrainConfig, args)
    with user_errors(debug=debug_requested(args)):
        # imported after parsing: --help and flag errors answer without loading torch
        from recon.distributed import dist_info
        from recon.training import train

        summary = train(cfg, TrainProgress())  # checks the flags, then the files, before any work
        if dist_info().is_main:
            console.print(f"done: {summary['step']} steps in {summary['time']:.0f}s, best val IoU "
                          f"{summary['best_val_iou']:.4f}; checkpoints in {escape(cfg.out)}")
        return summary


if __name__ == "__main__":
    main()
