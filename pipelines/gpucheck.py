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

from pipelines.cli import OneLineParser, console, user_errors
from tools.gpucheck import REPORT_JSON, REPORT_MD, GpuCheckConfig, run_gpu_check


def main(argv: list[str] | None = None) -> dict:
    p = OneLineParser(prog="python -m pipelines.gpucheck", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="gpu_check", help="report directory (default: %(default)s)")
    p.add_argument("--dry-run", action="store_true",
                   help="CPU parts only (chosen automatically when CUDA is not available)")
    p.add_argument("--train-steps", type=int, default=300, help="GPU training steps (default: %(default)s)")
    p.add_argument("--no-tests", dest="tests", action="store_false", help="skip the CUDA-marked pytest run")
    p.add_argument("--work", default=None, help="keep the dataset and training run here (default: a temp dir, "
                                                "removed at the end)")
    p.add_argument("--budget-s", type=float, default=420.0,
                   help="sections that would start after this many seconds are skipped (default: %(default)s)")
    args = p.parse_args(argv)
    with user_errors():
        cfg = GpuCheckConfig(out=args.out, dry_run=args.dry_run, train_steps=args.train_steps, tests=args.tests,
                             work=args.work, budget_s=args.budget_s)
        cfg.validate()
        report = run_gpu_check(cfg, say=lambda line: console.print(line, markup=False, highlight=False))
    verdict = "[green]PASSED[/]" if report["ok"] else "[red]FAILED[/]"
    console.print(f"gpu check {verdict} in {report['elapsed_s']} s"
                  + (" (dry run: GPU parts skipped)" if report["dry_run"] else "")
                  + f"; wrote {args.out}/{REPORT_JSON} and {args.out}/{REPORT_MD}")
    if not report["ok"]:
        raise SystemExit(1)
    return report


if __name__ == "__main__":
    main()
