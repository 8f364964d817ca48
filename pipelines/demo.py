"""The main job, end to end: build the default dataset -> train the baseline -> evaluate -> report.

    python -m pipelines.demo --data data/synthetic.h5 --out runs/demo     (what `make demo` runs)

The training budget is sized for about 10 minutes on 2 CPU cores and grows automatically on a GPU.
Existing outputs are reused: the dataset when it validates, training when RUN holds a finished run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pipelines.cli import OneLineParser, console, user_errors

# (iterations, batch size) per device type; the CPU budget fits ~10 minutes on 2 cores.
BUDGETS = {"cpu": (1000, 16), "cuda": (20000, 64)}


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m pipelines.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/synthetic.h5", help="dataset path, built if missing (default: %(default)s)")
    p.add_argument("--out", default="runs/demo", help="run directory (default: %(default)s)")
    p.add_argument("--encoder", default="baseline", help="baseline | resnet | attention (default: %(default)s)")
    p.add_argument("--per-category", type=int, default=300, help="train objects per category when building the data")
    p.add_argument("--iterations", type=int, default=None, help="override the training budget (steps)")
    p.add_argument("--batch-size", type=int, default=None, help="override the batch size")
    p.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate for the short demo run (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    with user_errors():
        from pipelines import eval as eval_pipeline
        from pipelines import train as train_pipeline
        from recon.data.schema import DatasetFormatError, validate
        from recon.data.synthetic import build_synthetic
        from recon.training import resolve_device

        t0 = time.time()
        device = resolve_device(args.device)
        data = Path(args.data)
        try:
            validate(data, require_splits=("train", "val", "test"))
            console.print(f"[1/3] dataset: reusing {data}")
        except DatasetFormatError:
            console.print(f"[1/3] dataset: building the default synthetic dataset at {data}")
            n = args.per_category
            build_synthetic(data, per_category=(n, max(1, round(n * 2 / 15)), max(1, round(n * 2 / 15))),
                            seed=args.seed)
        iters, batch = BUDGETS[device.type]
        iters = args.iterations or iters
        batch = args.batch_size or batch
        out = Path(args.out)
        console.print(f"[2/3] training {args.encoder} for {iters} steps x batch {batch} on {device}")
        train_args = ["--data", str(data), "--out", str(out), "--encoder", args.encoder, "--iterations", str(iters),
                      "--batch-size", str(batch), "--lr", str(args.lr), "--device", str(device),
                      "--seed", str(args.seed), "--val-every", str(max(iters // 4, 1))]
        if (out / "checkpoints").is_dir():
            train_args.append("--resume")
        train_pipeline.main(train_args)
        console.print("[3/3] evaluating on the test split (every view of every object)")
        record = eval_pipeline.main(["--checkpoint", str(out), "--data", str(data), "--split", "test",
                                     "--device", str(device)])
        gain = record["mean_iou"] - record["baselines"]["mean_shape"]["iou"]
        console.print(f"[bold green]demo done in {(time.time() - t0) / 60:.1f} min[/]: test IoU {record['mean_iou']:.3f}, "
                      f"{gain:+.3f} over the category-mean shape. Report: {out}/eval_test.json, "
                      f"figures: {out}/eval_test/predictions.png")
        return record


if __name__ == "__main__":
    main()
