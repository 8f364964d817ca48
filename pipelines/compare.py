r"""Compare encoders under the same decoder, renderer, data and training budget (Table 1 / Fig. 2).

    python -m pipelines.compare --data data/synthetic.h5 --out runs/compare --iterations 5000 \
        --encoders baseline,resnet,attention --batch-size 32

Trains each encoder into OUT/<encoder>/ (a finished run is reused, an unfinished one resumed),
evaluates all of them on the test split and writes OUT/table.json, OUT/table.md,
OUT/curves.png, OUT/<encoder>_predictions.png and OUT/report.html (self-contained).
Every training flag of pipelines.train is accepted and shared by all encoders.

    python -m pipelines.compare --preset softras-shapenet --data data/shapenet.h5 --out runs/softras

--preset NAME sets flag values (explicit flags override them): softras-shapenet (SoftRas's schedule,
13 classes, scored like SoftRas: protocol softras-iou, split val, last checkpoint, published numbers beside
ours), report-6 (the same on six classes), demo (4000 steps, batch 16, lr 5e-4, val every 1000;
recon.workflows.compare.PRESETS).
"""

from __future__ import annotations

import argparse
import shlex
import sys

from rich.markup import escape

from pipelines.cli import (TrainProgress, command_parser, console, counting_progress, debug_requested, user_errors,
                           wide_print)
from recon.config import CompareConfig, config_from_args


def build_parser() -> argparse.ArgumentParser:
    # its own flags and the shared training's (iterations: 0 = not given)
    return command_parser("pipelines.compare", __doc__, CompareConfig)


def _preset_name(argv: list[str]) -> str | None:
    """The value of ``--preset`` in ``argv`` (None when absent), read before the full parse."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default=None)
    return pre.parse_known_args(argv)[0].preset


def parse_config(argv: list[str]) -> CompareConfig:
    """The ``CompareConfig`` of a command line: the preset's values (``--preset``), then the explicit flags."""
    return config_from_args(CompareConfig, _parse(argv))


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = build_parser()
    name = _preset_name(argv)
    if name is not None:
        from recon.workflows.compare import preset_defaults  # the presets' class lists come with the library

        try:
            parser.set_defaults(**preset_defaults(name))  # explicit flags parsed below override these
        except ValueError as e:
            parser.error(str(e))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse(argv)
    cfg = config_from_args(CompareConfig, args)
    with user_errors(debug=debug_requested(args)):
        # imported after parsing: --help and flag errors answer without loading torch
        from recon.workflows.compare import run_comparison
        from recon.report import comparison_table

        with counting_progress() as progress:  # run_comparison checks every flag, then the files, before training
            record = run_comparison(cfg, train_hooks=lambda plan: TrainProgress(),
                                    progress=lambda encoder, done, total: progress(done, total, f"eval {encoder}"),
                                    note=lambda text: console.print(escape(text), highlight=False),
                                    command=f"python -m pipelines.compare {shlex.join(argv)}")
        wide_print(comparison_table(record))
        console.print(f"wrote {escape(cfg.out)}/table.json, table.md, curves.png, report.html and "
                      f"{', '.join(f'{e}_predictions.png' for e in cfg.encoder_names())}")
        return record


if __name__ == "__main__":
    main()
