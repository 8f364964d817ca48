r"""Compare encoders under the same decoder, renderer, data and training budget (Table 1 / Fig. 2).

    python -m pipelines.compare --data data/synthetic.h5 --out runs/compare --iterations 5000 \
        --encoders baseline,resnet,attention --batch-size 32

Trains each encoder into OUT/<encoder>/ (a finished run is reused, an unfinished one resumed),
evaluates all of them on the test split and writes OUT/table.json, OUT/table.md,
OUT/curves.png, OUT/<encoder>_predictions.png and OUT/report.html (self-contained).
"""

from __future__ import annotations

import argparse
import sys

from pipelines.cli import OneLineParser, console, make_progress, user_errors
from recon.compare import CompareConfig
from recon.config import add_dataclass_args, config_from_args


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m pipelines.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_args(p, CompareConfig)
    return p


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = config_from_args(CompareConfig, build_parser().parse_args(argv))
    from pipelines import train
    from recon import compare
    from recon.training import TrainingError

    with user_errors(TrainingError):
        encoders = compare.check_config(cfg)
        console.print(f"[bold]recon compare[/] {', '.join(encoders)} on {cfg.data}: {cfg.iterations} steps each, "
                      f"seed {cfg.seed}, batch size {cfg.batch_size}, lr {cfg.lr} -> {cfg.out}")
        plans = [compare.plan_run(cfg, e) for e in encoders]  # check every run dir before training any
        for plan in plans:
            if plan.action == "reuse":
                console.print(f"[bold]{plan.encoder}[/]: reusing {plan.run_dir} "
                              f"(step {plan.steps} >= {cfg.iterations})")
                continue
            if plan.action == "resume":
                console.print(f"[bold]{plan.encoder}[/]: resuming {plan.run_dir} from step {plan.steps}")
            train.main(compare.train_argv(plan.config))
        n_obj = compare.count_objects(cfg)
        with make_progress() as bar:
            tasks = {e: bar.add_task(f"eval {e}", total=n_obj) for e in encoders}
            record = compare.run_comparison(cfg, plans, compare.command_line("pipelines.compare", argv),
                                            progress=lambda e, k: bar.advance(tasks[e], k))
        console.print(compare.rich_table(record))
        console.print(f"wrote {cfg.out}/table.json, table.md, curves.png, report.html and "
                      f"{', '.join(f'{e}_predictions.png' for e in encoders)}")
        return record


if __name__ == "__main__":
    main()
