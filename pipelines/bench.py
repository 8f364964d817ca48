"""Benchmark the soft rasterizer implementations and the training step, side by side in ONE run.

    python -m pipelines.bench [--quick] [--device cpu|cuda] [--json OUT] [--precision all|auto|fp32|bf16]
                              [--step-batches 16,64] [--contention] [--layouts]

Prints a table of forward and forward+backward times per implementation and batch (64x64,
1280-face deformed template), the dense oracle's time per image, speedup ratios, the full training
step (loading the batch from --data, network forward+backward, render, loss, Adam) per precision and
batch with the data-loader wait, what --precision auto picks, voxelization throughput, and the
3D-IoU protocols' throughput (softras-iou, keyed softras/<impl>: C++ kernel and tensor reference; exact). --contention also
measures every training step next to a process that keeps one core busy, and training throughput
per thread count and OpenMP wait policy; --layouts the network per encoder, precision and memory
layout; --denormal the training step at initialisation and after --denormal-steps steps, with and
without flushing subnormal floats (tools.bench_denormal). Times are measured, never asserted.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.table import Table

from pipelines.cli import command_parser, console, debug_requested, require_source_tree, user_errors, wide_print
from recon.config import BenchConfig, config_from_args
from recon.io import check_writable_file, write_json


def _table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> Table:
    t = Table(title=title)
    for c in columns:
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(*r)
    return t


def _step_data(spec: str | None, stack: ExitStack) -> str:
    """The dataset training steps load from: ``--data``, else the default dataset when it exists,
    else a small synthetic one built in a temporary directory (a few seconds)."""
    from recon.data.schema import validate
    from recon.data.synthetic import build_synthetic

    if spec is not None:
        validate(spec, require_splits=("train",))
        return spec
    if Path("data/synthetic.h5").is_file():
        return "data/synthetic.h5"
    path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="recon-bench-"))) / "bench.h5"
    console.print(f"no --data and no data/synthetic.h5: building a small dataset in {path.parent}")
    build_synthetic(path, per_category=(8, 1, 1), categories=["chair", "table"], seed=0, workers=1, progress=False)
    return str(path)


def _training_steps(args: BenchConfig, device: str, data: str) -> dict[str, Any]:
    """The training-step section: auto's choice, the steps per precision and batch, their ratios."""
    import torch

    from tools.bench import auto_precision, bench_training_steps, step_ratios
    from recon.runtime import choose_threads, tune_allocator

    if device == "cpu":
        tune_allocator()  # as training does
        threads, why = choose_threads(args.threads)
        torch.set_num_threads(threads)
        console.print(f"training steps on {threads} CPU thread(s) ({why}); data from {data}")
    batches = args.batches()
    auto = {}
    if args.precision in ("all", "auto"):
        for b in batches:
            auto[b] = auto_precision(b, device)
            console.print(f"--precision auto at batch {b}: {auto[b].precision} ({auto[b].reason})")
    if args.precision == "all":
        precisions = ("fp32", "bf16")
    elif args.precision == "auto":
        precisions = tuple(dict.fromkeys(c.precision for c in auto.values()))
    else:
        precisions = (args.precision,)
    steps = bench_training_steps(data, batches, precisions, repeats=1 if args.quick else 3, device=device,
                                 workers=args.workers, contention=args.contention,
                                 note=lambda text: console.print(text, highlight=False))
    ratios = step_ratios(steps)
    busy = args.contention
    wide_print(_table(f"training step ({device}; ms, medians; total = data + network + render + loss + Adam)",
                         ("precision", "batch", "threads", "data", "network", "render", "loss", "Adam", "total",
                          "CPU time", *(("total, 1 core busy",) if busy else ())),
                         [(r.precision, str(r.batch), str(r.threads),
                           *(f"{v:.1f}" for v in (r.data_ms, r.network_ms, r.render_ms, r.loss_ms, r.optimizer_ms,
                                                  r.total_ms, r.cpu_ms)),
                           *((f"{r.busy_total_ms:.1f}",) if busy else ())) for r in steps]))
    if ratios:
        console.print(_table("bf16 speedup of the whole step", ("ratio", "x"),
                             [(k, f"{v:.2f}") for k, v in ratios.items()]))
    return {"train_step": [vars(r) for r in steps], "train_step_ratios": ratios,
            "auto_precision": {str(b): vars(c) for b, c in auto.items()}}


def build_parser() -> argparse.ArgumentParser:
    return command_parser("pipelines.bench", __doc__, BenchConfig)


def main(argv: list[str] | None = None) -> dict:
    parsed = build_parser().parse_args(argv)
    args = config_from_args(BenchConfig, parsed)
    with user_errors(debug=debug_requested(parsed)), ExitStack() as stack:
        require_source_tree("pipelines.bench", "tools.bench")
        args.validate()
        if args.json:
            check_writable_file(args.json, "--json")
        # imported after the checks: --help and flag errors answer without loading torch
        from recon.runtime import flush_denormals

        flush_denormals()  # as training does, before the first parallel op (recon.runtime)
        from recon.distributed import resolve_device
        from recon.render.softras import available_impls
        from tools.bench import (bench_contention, bench_layouts, bench_protocols, bench_renderers, bench_voxelize,
                                 records_as_dicts, renderer_ratios)

        device = str(resolve_device(args.device))
        data = _step_data(args.data, stack)
        for impl, why in available_impls(device).items():
            console.print(f"softras/{impl}: " + ("available" if why is None else f"[yellow]unavailable[/] ({why})"))
        records = bench_renderers((1, 16) if args.quick else (1, 16, 64), device, 2 if args.quick else 5,
                                  impls=tuple(args.impls.split(",")) if args.impls else None)
        ratios = renderer_ratios(records)
        load = os.getloadavg()
        steps = _training_steps(args, device, data)
        vox = bench_voxelize(batch=16 if args.quick else 64, repeats=1 if args.quick else 3)
        protocols = bench_protocols(batch=16 if args.quick else 64, repeats=1 if args.quick else 3)
        console.print(_table(f"soft rasterizer, 64x64, 1280 faces ({device})",
                             ("impl", "batch", "fwd ms", "fwd+bwd ms", "fwd+bwd ms / image"),
                             [(r.impl, str(r.batch), f"{r.fwd_ms:.2f}", f"{r.fwdbwd_ms:.2f}",
                               f"{r.per_image_fwdbwd_ms:.3f}") for r in records]))
        console.print(_table("speedups (forward+backward)", ("ratio", "x"), [(k, f"{v:.1f}") for k, v in ratios.items()]))
        console.print(f"voxelization (32^3, 1280 faces): {vox:.0f} meshes/s")
        console.print(_table("3D-IoU protocols (32^3, 1280 faces, CPU)", ("protocol / impl", "meshes/s"),
                             [(k, f"{v:.0f}" if isinstance(v, float) else f"unavailable ({v})")
                              for k, v in protocols.items()]))
        out = {"device": device, "records": records_as_dicts(records), "ratios": ratios, **steps,
               "voxelize_meshes_per_s": vox, "protocol_meshes_per_s": protocols}
        if args.contention:
            out["contention"] = bench_contention(seconds=2.0 if args.quick else 6.0,
                                                 note=lambda text: console.print(text, highlight=False))
            console.print(_table("training throughput next to a busy process (batch 16, bf16, random data)",
                                 ("threads", "OpenMP wait", "alone it/s", "1 core busy it/s", "kept"),
                                 [(str(r["threads"]), r["policy"], f"{r['quiet_it_s']:.2f}", f"{r['busy_it_s']:.2f}",
                                   f"{100 * r['kept']:.0f}%") for r in out["contention"]]))
        if args.layouts:
            out["layouts"] = bench_layouts(batches=args.batches(), repeats=1 if args.quick else 3,
                                           device=device)
            wide_print(_table("network forward+backward+Adam by memory layout (ms, CPU ms)",
                                 ("encoder", "batch", "precision", "layout", "ms", "CPU ms"),
                                 [(r["encoder"], str(r["batch"]), r["precision"], r["layout"], f"{r['ms']:.1f}",
                                   f"{r['cpu_ms']:.1f}") for r in out["layouts"]]))
        if args.denormal:
            from tools.bench_denormal import bench_denormals, denormal_rows

            rows = bench_denormals(data, steps=args.denormal_steps, threads=args.threads,
                                   note=lambda text: console.print(text, highlight=False))
            out["denormal"] = denormal_rows(rows)
            console.print(_table("training step (batch 16), subnormal floats computed (off) or flushed to zero (on)",
                                 ("point", "off ms", "on ms", "off / on", "subnormal values"),
                                 [(r.point, f"{r.off_ms:.0f}", f"{r.on_ms:.0f}", f"{r.speedup:.2f}",
                                   f"{r.subnormals:,} of {r.values:,}") for r in rows]))
        out["load_average"] = [load, os.getloadavg()]  # (1, 5, 15 min) before the training steps and at the end
        console.print(f"load average before the training steps {load[0]:.1f}, at the end "
                      f"{out['load_average'][1][0]:.1f} "
                      f"({os.cpu_count()} cores): other processes slow every measurement alike")
        if args.json:
            write_json(out, args.json)
            console.print(f"wrote {args.json}")
        return out


if __name__ == "__main__":
    main()
