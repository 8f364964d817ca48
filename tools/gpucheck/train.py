"""The ``train`` section: a short training on a small synthetic dataset and its evaluation."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from recon.config import EvalConfig, TrainConfig
from recon.data.synthetic import build_synthetic
from recon.workflows.eval import evaluate_run
from tools.gpucheck.plans import Plan
from recon.runs import read_metrics
from recon.training import TrainHooks, train

__all__ = ["train_and_eval"]


def train_and_eval(plan: Plan, work: Path, steps: int) -> dict[str, Any]:
    """A short training on a small synthetic dataset and its evaluation (library API only)."""
    device = plan.device
    data, run = work / "synthetic.h5", work / "run"
    t = time.perf_counter()
    build_synthetic(data, per_category=plan.dataset, categories=list(plan.categories) if plan.categories else None,
                    seed=0, workers=min(8, os.cpu_count() or 1) if plan.device == "cuda" else 1, progress=False)
    data_s = time.perf_counter() - t
    steps = plan.train_steps or steps
    cfg = TrainConfig(data=str(data), out=str(run), iterations=steps, batch_size=plan.train_batch, lr=5e-4,
                      device=device, impl="auto", val_every=steps, val_objects=2, val_views=plan.val_views,
                      log_every=max(1, min(10, steps // 4)), tensorboard=False, seed=0)

    class Watch(TrainHooks):
        """Remembers the trainer, to read which softras implementation it rendered with."""
        trainer = None

        def on_start(self, trainer) -> None:
            self.trainer = trainer

    watch = Watch()
    t = time.perf_counter()
    summary = train(cfg, watch)
    train_s = time.perf_counter() - t
    impl = getattr(getattr(watch.trainer, "renderer", None), "impl", None)
    losses = [m["loss"] for m in read_metrics(run) if "loss" in m]
    ecfg = EvalConfig(checkpoint=str(run), data=str(data), split="test", views=plan.eval_views, device=device,
                      max_per_category=plan.eval_max_per_category, full_metrics=plan.full_metrics, figures=0,
                      json=str(work / "eval_test.json"))
    t = time.perf_counter()
    record = evaluate_run(ecfg)
    eval_s = time.perf_counter() - t
    baselines = record.get("baselines", {})
    rec = {"device": device, "dataset_seconds": round(data_s, 1), "steps": summary.get("step"),
           "batch_size": cfg.batch_size, "train_seconds": round(train_s, 1),
           "steps_per_second": round(steps / train_s, 2) if train_s > 0 else None, "impl": impl,
           "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
           "best_val_iou": summary.get("best_val_iou"), "eval_seconds": round(eval_s, 1),
           "test_mean_iou": record.get("mean_iou"), "test_mean_loss": record.get("mean_loss"),
           "template_iou": baselines.get("template", {}).get("mean_iou"),
           "mean_shape_iou": baselines.get("mean_shape", {}).get("mean_iou")}
    finite = all(isinstance(x, (int, float)) and math.isfinite(x) for x in losses) and bool(losses)
    problems = []
    if rec["steps"] != steps:
        problems.append(f"trained {rec['steps']} of {steps} steps")
    if not finite:
        problems.append("non-finite or missing losses")
    if rec["impl"] != plan.expected_impl:
        problems.append(f"trained with softras impl {rec['impl']!r}, expected {plan.expected_impl!r}")
    rec["status"] = "failed" if problems else "passed"
    if problems:
        rec["reason"] = "; ".join(problems)
    return rec
