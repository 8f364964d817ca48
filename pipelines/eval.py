r"""Evaluate a trained reconstructor under a 3D-IoU protocol (every view of every object).

    python -m pipelines.eval --backend softras --checkpoint runs/baseline --data data/synthetic.h5 \
        --split test --views all --json runs/baseline/eval_test.json

Prints a per-category table (silhouette loss, 3D IoU, Chamfer, F-score) with the reference rows
(template sphere, category-mean shape and, for datasets with GT meshes, the GT-mesh oracle), writes
the JSON (with every scored prediction in per_object), Fig. 2-style PNGs and .obj meshes.
--protocol softras-iou (default; old name softras) scores like SoftRas/NMR's evaluate_iou, the published numbers;
--protocol exact uses ray parity at the cell centres of [-0.5, 0.5]^3 (the first release's metric).
Runs trained with --colour are also scored on colour (PSNR / L1 of the rendered RGB vs the images at
the input and at novel views, with a mean-colour-per-object baseline; see recon.colour) and their
meshes and 3D page carry the predicted vertex colours.
Checks that the JSON and figures can be written before computing anything.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape

from pipelines.cli import command_parser, console, counting_progress, debug_requested, user_errors, wide_print
from recon.config import EvalConfig, config_from_args


def build_parser() -> argparse.ArgumentParser:
    return command_parser("pipelines.eval", __doc__, EvalConfig)


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(EvalConfig, args)
    with user_errors(debug=debug_requested(args)):
        # imported after parsing: --help and flag errors answer without loading torch
        from recon.workflows.eval import evaluate_run
        from recon.report import colour_table, results_table

        with counting_progress() as progress:  # evaluate_run checks flags, checkpoint, data, outputs first
            record = evaluate_run(cfg, progress=progress,
                                  note=lambda text: console.print(escape(text), highlight=False, soft_wrap=True))
        data = escape(Path(cfg.data).name)  # table titles are markup
        wide_print(results_table(record, title=f"{record['encoder']} on {data}:{cfg.split}"))
        if "colour_baselines" in record:  # a coloured run (--colour): PSNR / L1 of its colours
            wide_print(colour_table(record, title=f"{record['encoder']} colours on {data}:{cfg.split}"))
        base = record["baselines"]
        oracle = f", oracle {base['oracle']['mean_iou']:.4f}" if "oracle" in base else ""
        retrieval = f", retrieval {base['retrieval']['mean_iou']:.4f}" if "retrieval" in base else ""
        console.print(f"mean 3D IoU {record['mean_iou']:.4f} under protocol {record['protocol']} (template "
                      f"{base['template']['mean_iou']:.4f}, mean shape {base['mean_shape']['mean_iou']:.4f}{retrieval}"
                      f"{oracle}) "
                      f"in {record['seconds']:.0f}s")
        console.print("wrote " + ", ".join(escape(p) for p in record["outputs"].values() if p))
        return record


if __name__ == "__main__":
    main()
