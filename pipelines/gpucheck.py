"""One command that checks everything GPU users rely on, and writes the figures (``make gpu-check``).

    python -m pipelines.gpucheck --out gpu_check [--dry-run] [--train-steps 300] [--no-tests]

On a CUDA machine (about 7 minutes on one H100/H200): device and versions, the CUDA kernel's JIT
build, its parity with the torch reference and the C++ kernel (float32/float64, values and
gradients, both backward modes, bitwise reproducibility of the deterministic one), every
CUDA-marked test, a CUDA benchmark (kaolin / nvdiffrast rows when installed) and a 300-step
training + evaluation. Without CUDA, or with --dry-run, only the CPU parts run (and say so).

Writes OUT/gpu_check.json and OUT/gpu_check.md (after every section). Exit status 0 when every
check passed, 1 on any parity failure, failed CUDA test or section error, 2 on bad flags.
On a bare machine without an install: PYTHONPATH=. python -m pipelines.gpucheck --out $OUT/gpu_check
"""

from __future__ import annotations

import argparse

from pipelines.cli import command_parser, console, debug_requested, require_source_tree, user_errors
from recon.config import GpuCheckConfig, config_from_args


def build_parser() -> argparse.ArgumentParser:
    return command_parser("pipelines.gpucheck", __doc__, GpuCheckConfig)


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(GpuCheckConfig, args)
    with user_errors(debug=debug_requested(args)):
        require_source_tree("pipelines.gpucheck", "tools.gpucheck")
        # imported after parsing: --help and flag errors answer without loading torch
        from tools.gpucheck import REPORT_JSON, REPORT_MD, run_gpu_check

        report = run_gpu_check(cfg, say=lambda line: console.print(line, markup=False, highlight=False))
    verdict = "[green]PASSED[/]" if report["ok"] else "[red]FAILED[/]"
    console.print(f"gpu check {verdict} in {report['elapsed_s']} s"
                  + (" (dry run: GPU parts skipped)" if report["dry_run"] else "")
                  + f"; wrote {cfg.out}/{REPORT_JSON} and {cfg.out}/{REPORT_MD}")
    if not report["ok"]:
        raise SystemExit(1)
    return report


if __name__ == "__main__":
    main()
