"""Evaluate a trained reconstructor under the SoftRas protocol (every view of every object).

    python -m pipelines.eval --backend softras --checkpoint runs/baseline --data data/synthetic.h5 \
        --split test --views all --json runs/baseline/eval_test.json

Prints a per-category table (silhouette loss, 3D IoU, Chamfer, F-score) with two reference
rows (template sphere, category-mean shape), writes the JSON, Fig. 2-style PNGs and .obj meshes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pipelines.cli import OneLineParser, console, make_progress, user_errors


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m pipelines.eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="run directory (uses best.pt) or checkpoint file")
    p.add_argument("--data", default="data/synthetic.h5", help="HDF5 dataset (default: %(default)s)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="split (default: %(default)s)")
    p.add_argument("--views", default="all", help="all | N (evenly spaced) | comma list (default: %(default)s)")
    p.add_argument("--backend", default="softras", help="renderer for the silhouette loss: softras | kaolin | nvdiffrast")
    p.add_argument("--impl", default="auto", help="softras implementation: auto | torch | cpp | cuda")
    p.add_argument("--encoder", default=None, help="expected encoder; error if the checkpoint differs")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--max-per-category", type=int, default=None, help="evaluate only the first N objects per category")
    p.add_argument("--no-full-metrics", action="store_true", help="skip Chamfer / F-score (faster)")
    p.add_argument("--json", default=None, help="write results here (default: RUN/eval_<split>.json)")
    p.add_argument("--figures", type=int, default=2, help="Fig. 2 rows per category (0 = none; default: %(default)s)")
    p.add_argument("--out", default=None, help="figure/mesh directory (default: RUN/eval_<split>)")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    with user_errors():
        from recon.checkpoint import resolve_checkpoint
        from recon.data.schema import validate
        from recon.evaluate import evaluate, mean_shape_iou, parse_views, template_iou
        from recon.render import get_renderer
        from recon.report import eval_record, figure_predictions, results_table, save_prediction_meshes, write_json
        from recon.training import load_model, resolve_device

        if not args.checkpoint.strip():
            raise ValueError("--checkpoint must name a run directory or a checkpoint file, got an empty string")
        if args.json and Path(args.json).is_dir():
            raise ValueError(f"--json {args.json}: is a directory, expected a file path")
        if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
            raise ValueError(f"--out {args.out}: exists and is not a directory")
        if args.figures < 0:
            raise ValueError(f"--figures must be >= 0, got {args.figures}")
        device = resolve_device(args.device)
        ckpt = resolve_checkpoint(args.checkpoint)
        info = validate(args.data, require_splits=(args.split,))
        views = parse_views(args.views, info.num_views)
        if args.max_per_category is not None and args.max_per_category < 1:
            raise ValueError("--max-per-category must be >= 1")
        model, state = load_model(ckpt, device, encoder=args.encoder)
        opts = {"impl": args.impl} if args.backend == "softras" else {}
        renderer = get_renderer(args.backend, image_size=info.image_size, device=str(device), **opts)
        run_dir = ckpt.parent if ckpt.parent.name != "checkpoints" else ckpt.parent.parent
        json_path = Path(args.json) if args.json else run_dir / f"eval_{args.split}.json"
        fig_dir = Path(args.out) if args.out else run_dir / f"eval_{args.split}"
        n_obj = sum(min(n, args.max_per_category or n) for n in info.objects(args.split).values())
        console.print(f"[bold]recon eval[/] {ckpt} (encoder={state['config'].get('encoder')}, step {state['step']}) "
                      f"on {args.data}:{args.split}, {n_obj} objects x {len(views)} views, backend={args.backend}")
        t0 = time.time()
        with make_progress() as bar:
            task = bar.add_task("eval", total=n_obj)
            result = evaluate(model, renderer, args.data, args.split, views=views,
                              max_per_category=args.max_per_category, device=device,
                              full_metrics=not args.no_full_metrics, keep_predictions=args.figures,
                              progress=lambda k: bar.advance(task, k))
        template = template_iou(model.decoder.template_mesh().cpu(), model.faces.cpu(), args.data, args.split,
                                args.max_per_category)
        mean_shape = mean_shape_iou(args.data, args.split, args.max_per_category)
        elapsed = time.time() - t0
        console.print(results_table(result, template, mean_shape,
                                    title=f"{state['config'].get('encoder')} on {Path(args.data).name}:{args.split}"))
        record = eval_record(result, template, mean_shape, extra={
            "checkpoint": str(ckpt), "encoder": state["config"].get("encoder"), "step": state["step"],
            "split": args.split, "views": views, "backend": args.backend, "seconds": elapsed})
        write_json(record, json_path)
        written = [str(json_path)]
        if result.predictions:
            fig = fig_dir / "predictions.png"
            figure_predictions(result.predictions, model.faces.cpu(), fig,
                               title=f"{record['encoder']}: input, prediction from 3 views, GT voxels")
            save_prediction_meshes(result.predictions, model.faces.cpu(), fig_dir / "meshes")
            written += [str(fig), str(fig_dir / "meshes")]
        console.print(f"mean 3D IoU {record['mean_iou']:.4f} (template {record['baselines']['template']['iou']:.4f}, "
                      f"mean shape {record['baselines']['mean_shape']['iou']:.4f}) in {elapsed:.0f}s")
        console.print("wrote " + ", ".join(written))
        return record


if __name__ == "__main__":
    main()
