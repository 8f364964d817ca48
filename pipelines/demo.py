"""The main job, end to end: build the default dataset -> train the baseline -> evaluate -> report.

    python -m pipelines.demo --data data/synthetic.h5 --out runs/demo     (what `make demo` runs)

The training stage runs for a wall-clock budget (--budget-minutes, default 10): a short calibration
times the training step on this machine and fixes the number of steps (and the lr decay point) up
front; RUN/config.json records them, and the flags printed at the end (--iterations N --precision P
--threads T ...) rerun the same training exactly. Existing outputs are reused: the dataset when it
validates, the training when RUN holds a run (an unfinished one is resumed with its recorded settings).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape

from pipelines.cli import (TrainProgress, command_parser, console, counting_progress, debug_requested, user_errors,
                           wide_print)
from recon.config import DemoConfig, config_from_args


def build_parser() -> argparse.ArgumentParser:
    return command_parser("pipelines.demo", __doc__, DemoConfig)


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(DemoConfig, args)
    with user_errors(debug=debug_requested(args)):
        # imported after parsing: --help and flag errors answer without loading torch
        from recon.workflows.demo import run_demo
        from recon.report import results_table

        with counting_progress() as progress:  # run_demo checks the flags and --out first
            record = run_demo(cfg, note=lambda text: console.print(escape(text), highlight=False),
                              train_hooks=TrainProgress(), progress=progress)
        data = escape(Path(cfg.train.data).name)  # table titles are markup
        wide_print(results_table(record, title=f"{record['encoder']} on {data}:test"))
        gain = record["mean_iou"] - record["baselines"]["mean_shape"]["mean_iou"]
        retrieval = record["baselines"].get("retrieval")
        versus = (f", {record['mean_iou'] - retrieval['mean_iou']:+.3f} over retrieval of the nearest training shape"
                  if retrieval else "")
        training = record["training"]
        console.print(f"training: {training['iterations']} steps in {record['train_minutes']:.1f} min; the same "
                      f"training again: python -m pipelines.demo {training['reproduce']}", highlight=False)
        console.print(f"[bold green]demo done in {record['minutes']:.1f} min[/]: test IoU {record['mean_iou']:.3f}, "
                      f"{gain:+.3f} over the category-mean shape{versus}. Report: {escape(record['outputs']['json'])}, "
                      f"figures: {escape(str(record['outputs']['figures']))}")
        return record


if __name__ == "__main__":
    main()
