"""The driver: every section in order, the report written after each (see the package doc)."""

from __future__ import annotations

import shutil
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch

from recon.io import check_output_dir
from tools.gpucheck import plans
from tools.gpucheck.bench import bench
from tools.gpucheck.cuda_testrun import cuda_tests
from tools.gpucheck.environment import build, environment
from tools.gpucheck.parity import parity
from tools.gpucheck.plans import ERROR_TAIL, GpuCheckConfig, Plan
from tools.gpucheck.report import write_report
from tools.gpucheck.train import train_and_eval

__all__ = ["run_gpu_check"]


def run_gpu_check(cfg: GpuCheckConfig, say: Callable[[str], None] = print, plan: Plan | None = None
                  ) -> dict[str, Any]:
    """Run every section (see the package doc), writing the report after each; returns it.

    ``plan`` defaults to ``GPU_PLAN``, or ``DRY_PLAN`` for a dry run / without CUDA.
    ``report["ok"]`` is False when a parity check or a CUDA test failed or a section raised.
    """
    cfg.validate()
    check_output_dir(cfg.out, "--out")
    if cfg.work is not None:
        check_output_dir(cfg.work, "--work")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    dry = cfg.dry_run or not torch.cuda.is_available()
    plan = plan or (plans.DRY_PLAN if dry else plans.GPU_PLAN)
    start = time.time()
    deadline = start + cfg.budget_s
    report: dict[str, Any] = {"dry_run": dry, "config": asdict(cfg), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                              "sections": {}, "ok": True}
    if dry:
        why = "--dry-run" if cfg.dry_run else "CUDA is not available here"
        report["note"] = (f"DRY RUN ({why}): CPU parts only (C++ kernel parity, small CPU bench, 4-step training); "
                          f"the GPU parts (CUDA build, CUDA parity, CUDA tests, CUDA bench, CUDA training) were "
                          f"SKIPPED")
        say(report["note"])
    scratch = Path(cfg.work) if cfg.work else Path(tempfile.mkdtemp(prefix="recon-gpucheck-"))
    scratch.mkdir(parents=True, exist_ok=True)

    def section(name: str, fn: Callable[[], dict[str, Any]], optional: bool = True) -> None:
        if optional and time.time() > deadline:
            rec: dict[str, Any] = {"status": "skipped", "reason": f"time budget of {cfg.budget_s:.0f} s used up"}
        else:
            say(f"[gpucheck] {name} ...")
            t = time.perf_counter()
            try:
                rec = fn()
                rec.setdefault("status", "passed")
            except Exception as e:  # noqa: BLE001 - every failure is reported, the other sections still run
                rec = {"status": "error", "reason": f"{type(e).__name__}: {e}"[-ERROR_TAIL:],
                       "traceback": traceback.format_exc()[-ERROR_TAIL:]}
            rec["seconds"] = round(time.perf_counter() - t, 1)
        report["sections"][name] = rec
        report["ok"] = all(s["status"] in ("passed", "skipped") for s in report["sections"].values())
        report["elapsed_s"] = round(time.time() - start, 1)
        say(f"[gpucheck] {name}: {rec['status']}" + (f" ({rec['reason'].splitlines()[0][:200]})"
                                                     if rec.get("reason") else "") + f" [{rec['seconds']} s]")
        write_report(report, out)

    try:
        section("environment", environment, optional=False)
        kinds = sorted({kind for _, kind, _ in plan.variants} | ({plan.cpu_kind} if plan.cpu_kind else set()))
        section("build", lambda: {"kernels": [build(kind) for kind in kinds]}, optional=False)
        section("parity", lambda: parity(plan), optional=False)
        if not cfg.tests:
            report["sections"]["cuda_tests"] = {"status": "skipped", "reason": "--no-tests", "seconds": 0}
        else:
            section("cuda_tests", lambda: cuda_tests(out, collect_only=plan.tests_collect_only,
                                                     timeout_s=max(60.0, min(300.0, deadline - time.time()))))
        section("bench", lambda: bench(plan, deadline))
        section("train", lambda: train_and_eval(plan, scratch, cfg.train_steps))
    finally:
        if not cfg.work:
            shutil.rmtree(scratch, ignore_errors=True)
    report["elapsed_s"] = round(time.time() - start, 1)
    write_report(report, out)
    return report
