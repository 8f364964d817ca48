"""The main job, end to end: build the default dataset -> train the baseline -> evaluate -> report.

    python -m pipelines.demo --data data/synthetic.h5 --out runs/demo     (what `make demo` runs)

The training budget is sized for about 10 minutes on 2 CPU cores and grows automatically on a GPU.
Existing outputs are reused: the dataset when it validates, training when RUN holds a finished run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape

from pipelines.cli import OneLineParser, TrainProgress, console, make_progress, user_errors, wide_print
from recon.config import DemoConfig, add_dataclass_args, config_from_args
from recon.demo import run_demo
from recon.report import results_table
from recon.training import TrainingError


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m pipelines.demo", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_args(p, DemoConfig)
    return p


def main(argv: list[str] | None = None) -> dict:
    cfg = config_from_args(DemoConfig, build_parser().parse_args(argv))
    with user_errors(TrainingError):
        cfg.validate()
        bar, task = make_progress(), None

        def progress(done: int, total: int) -> None:
            nonlocal task
            if task is None:
                bar.start()
                task = bar.add_task("eval", total=total)
            bar.update(task, completed=done)

        try:
            record = run_demo(cfg, note=lambda text: console.print(escape(text), highlight=False),
                              train_hooks=TrainProgress(), progress=progress)
        finally:
            bar.stop()
        wide_print(results_table(record, title=f"{record['encoder']} on {Path(cfg.data).name}:test"))
        gain = record["mean_iou"] - record["baselines"]["mean_shape"]["mean_iou"]
        console.print(f"[bold green]demo done in {record['minutes']:.1f} min[/]: test IoU {record['mean_iou']:.3f}, "
                      f"{gain:+.3f} over the category-mean shape. Report: {escape(record['outputs']['json'])}, "
                      f"figures: {escape(str(record['outputs']['figures']))}")
        return record


if __name__ == "__main__":
    main()
