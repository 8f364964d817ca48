"""Benchmark the soft rasterizer implementations and one training step, side by side in ONE run.

    python -m pipelines.bench [--quick] [--device cpu|cuda] [--json OUT]

Prints a table of forward and forward+backward times per implementation and batch (64x64,
1280-face deformed template), the dense oracle's time per image, speedup ratios, a training step
(the real objective and optimizer, TrainConfig defaults) split into network / render / loss, and
voxelization throughput. Times are measured, never asserted.
"""

from __future__ import annotations

import argparse

from rich.table import Table

from pipelines.cli import OneLineParser, console, user_errors
from recon.benchmark import bench_renderers, bench_train_step, bench_voxelize, records_as_dicts, renderer_ratios
from recon.distributed import resolve_device
from recon.io import check_writable_file, write_json
from recon.render.softras import available_impls


def _table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> Table:
    t = Table(title=title)
    for c in columns:
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(*r)
    return t


def main(argv: list[str] | None = None) -> dict:
    p = OneLineParser(prog="python -m pipelines.bench", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repeats and batches 1/16 only (a smoke run)")
    p.add_argument("--device", default="cpu", help="cpu | cuda (default: %(default)s)")
    p.add_argument("--json", default=None, help="write records + ratios here")
    p.add_argument("--impls", default=None, help="comma list to restrict implementations (torch,cpp,cuda)")
    p.add_argument("--step-batch", type=int, default=64, help="batch of the training-step benchmark")
    args = p.parse_args(argv)
    with user_errors():
        if args.json:
            check_writable_file(args.json, "--json")
        if args.step_batch < 1:
            raise ValueError(f"--step-batch must be >= 1, got {args.step_batch}")
        device = str(resolve_device(args.device))
        for impl, why in available_impls(device).items():
            console.print(f"softras/{impl}: " + ("available" if why is None else f"[yellow]unavailable[/] ({why})"))
        step_batch = 8 if args.quick else args.step_batch
        records = bench_renderers((1, 16) if args.quick else (1, 16, 64), device, 2 if args.quick else 5,
                                  impls=tuple(args.impls.split(",")) if args.impls else None)
        ratios = renderer_ratios(records)
        step = bench_train_step(batch=step_batch, device=device, repeats=1 if args.quick else 3)
        vox = bench_voxelize(batch=16 if args.quick else 64, repeats=1 if args.quick else 3)
        console.print(_table(f"soft rasterizer, 64x64, 1280 faces ({device})",
                             ("impl", "batch", "fwd ms", "fwd+bwd ms", "fwd+bwd ms / image"),
                             [(r.impl, str(r.batch), f"{r.fwd_ms:.2f}", f"{r.fwdbwd_ms:.2f}",
                               f"{r.per_image_fwdbwd_ms:.3f}") for r in records]))
        console.print(_table("speedups (forward+backward)", ("ratio", "x"), [(k, f"{v:.1f}") for k, v in ratios.items()]))
        console.print(_table(f"training step, batch {step_batch} ({device}, impl {step['impl']})",
                             ("network", "render", "loss", "optimizer", "total", "render share"),
                             [(*(f"{step[k]:.1f} ms" for k in ("network", "render", "loss", "optimizer", "total")),
                               f"{100 * step['render_fraction']:.1f}%")]))
        console.print(f"voxelization (32^3, 1280 faces): {vox:.0f} meshes/s")
        out = {"device": device, "records": records_as_dicts(records), "ratios": ratios, "train_step": step,
               "voxelize_meshes_per_s": vox}
        if args.json:
            write_json(out, args.json)
            console.print(f"wrote {args.json}")
        return out


if __name__ == "__main__":
    main()
