"""The main job end to end (``make demo``): build the default dataset -> train for a time budget ->
evaluate.

The training runs for a wall-clock budget (``--budget-minutes``), not a fixed step count that
would overrun on a slower machine: ``calibrate`` fixes the thread count and the precision, times a
few of the demo's own training steps and one validation on a throwaway run, and sets a first
number of steps (and with it the lr/sigma decay point, ``decay_at`` x steps). As training goes,
``recon.budget.BudgetSteer`` re-plans both from the measured rate (every 20 s and after every
validation), so a step that slows down or speeds up mid-run moves the end, not the deadline. The
run's config.json records the final steps, decay step, precision and threads: ``--iterations N
--decay-step D --precision P --threads T`` reproduces the run exactly (``--iterations N`` skips the
calibration and the steering).

Existing outputs are reused: the dataset when it validates, the training when the run directory
holds a run (finished: reused; unfinished: resumed), with the settings its config.json records.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from recon.budget import BudgetSteer, Plan
from recon.config import DemoConfig, EvalConfig, TrainConfig
from recon.data.schema import DatasetFormatError, validate
from recon.data.synthetic import build_synthetic, split_sizes
from recon.distributed import resolve_device
from recon.io import check_output_dir
from recon.workflows.eval import evaluate_run
from recon.runs import step_checkpoints
from recon.runtime import flush_denormals
from recon.training import Trainer, TrainHooks, train

__all__ = ["DEMO_BATCH", "VALIDATIONS", "Calibration", "demo_train_config", "calibrate", "run_demo"]

DEMO_BATCH = {"cpu": 16, "cuda": 64}  # batch size per device type (--batch-size 0)
VALIDATIONS = 4  # validations (and checkpoints) per demo run
STEP_MULTIPLE = 40  # calibrated step counts are rounded down to a multiple of this (>= 1 x it)
_WARMUP_STEPS, _TIMED_STEPS = 2, 10
_MARGIN = 0.03  # of the budget, for checkpoint writes and step-time jitter


@dataclass
class Calibration:
    """How the demo's step count was fixed: measured seconds per training step and per validation,
    the calibration's own seconds, the budget, and the resulting settings (``reason``: how the
    precision and the threads were chosen)."""

    step_s: float
    val_s: float
    seconds: float
    budget_s: float
    iterations: int
    precision: str
    threads: int
    reason: str


def demo_train_config(cfg: DemoConfig, device_type: str, iterations: int, precision: str | None = None,
                      threads: int | None = None, decay_step: int | None = None) -> TrainConfig:
    """The demo's training (``cfg.train``) of ``iterations`` steps: the device's batch (unless
    ``--batch-size``), validation ``VALIDATIONS`` times per run, resumed when the run directory
    holds checkpoints; ``decay_step`` (None: ``--decay-step``) as a saved run recorded it."""
    tc = cfg.train
    return dataclasses.replace(tc, iterations=iterations, batch_size=tc.batch_size or DEMO_BATCH[device_type],
                               decay_step=tc.decay_step if decay_step is None else decay_step,
                               val_every=max(iterations // VALIDATIONS, 1), precision=precision or tc.precision,
                               threads=tc.threads if threads is None else threads,
                               resume=bool(step_checkpoints(tc.out)))


def calibrate(cfg: DemoConfig, device: torch.device, budget_s: float) -> Calibration:
    """Build the demo's training (a ``Trainer`` on a temporary run directory: it fixes threads and
    precision as the real run would), time ``_TIMED_STEPS`` of its training steps (loading the
    batch, the step, the finiteness check, Adam) after ``_WARMUP_STEPS`` and one of its periodic
    validations, and fit the steps into what is left of ``budget_s`` after the calibration itself,
    ``VALIDATIONS`` validations and a small margin (a multiple of ``STEP_MULTIPLE``, at least one).
    Nothing is written outside the temporary directory."""
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="recon-calibrate-") as tmp:
        tc = dataclasses.replace(demo_train_config(cfg, device.type, iterations=1 << 30), out=tmp, resume=False,
                                 tensorboard=False)
        with Trainer(tc) as trainer:
            batches = iter(trainer.batches())
            for _ in range(_WARMUP_STEPS):
                trainer.train_step(next(batches))
            t = time.perf_counter()
            for _ in range(_TIMED_STEPS):
                trainer.train_step(next(batches))
            step_s = (time.perf_counter() - t) / _TIMED_STEPS
            t = time.perf_counter()
            trainer.validate()
            val_s = time.perf_counter() - t
            precision, threads, note = trainer.cfg.precision, trainer.cfg.threads, trainer.runtime_note
    seconds = time.time() - t0
    left = budget_s * (1 - _MARGIN) - seconds - VALIDATIONS * val_s
    iterations = max(int(left / step_s) // STEP_MULTIPLE * STEP_MULTIPLE, STEP_MULTIPLE)
    return Calibration(step_s, val_s, seconds, budget_s, iterations, precision, threads, note)


class SteeredHooks(TrainHooks):
    """``hooks`` (the caller's: progress, messages) plus ``steer``'s plan after every step; a plan that
    moves the end by more than 2 % is announced with ``say``."""

    def __init__(self, hooks: TrainHooks, steer: BudgetSteer, say: Callable[[str], None]):
        self.hooks, self.steer, self.say = hooks, steer, say

    def on_start(self, trainer: Trainer) -> None:
        self.hooks.on_start(trainer)
        self.steer.start()

    def plan(self, step: int, validated: bool) -> Plan | None:
        old = self.steer.plan
        new = self.steer.after_step(step, validated)
        if new is not None and abs(new.iterations - old.iterations) > 0.02 * old.iterations:
            self.say(f"      step {step}: {1e3 * self.steer.step_s():.0f} ms/step now -> {new.iterations} steps, "
                     f"decay at step {new.decay_step} (was {old.iterations}, {old.decay_step})")
        return new

    def on_step(self, step: int, info: dict[str, float]) -> None:
        self.hooks.on_step(step, info)

    def on_message(self, text: str, level: str = "") -> None:
        self.hooks.on_message(text, level)

    def on_end(self, trainer: Trainer, summary: dict[str, Any] | None) -> None:
        self.hooks.on_end(trainer, summary)


def _saved_run(out: str) -> dict[str, Any] | None:
    """The config.json of the run in ``out`` when it holds checkpoints (a run to reuse or resume)."""
    path = Path(out) / "config.json"
    if not step_checkpoints(out) or not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) and isinstance(saved.get("iterations"), int) else None


def run_demo(cfg: DemoConfig, note: Callable[[str], None] | None = None, train_hooks: TrainHooks | None = None,
             progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run the three stages; return the test eval record plus ``minutes`` (the whole demo's wall
    time), ``train_minutes`` and ``training`` (``iterations, batch_size, precision, threads, lr,
    decay_at, lr_schedule``, ``calibration``: ``Calibration`` as a dict or None, ``reproduce``: the flags that rerun
    the training exactly).

    Args:
        note: one line per stage.
        train_hooks / progress: passed to ``recon.training.train`` / ``recon.workflows.eval.evaluate_run``.
    """
    cfg.validate()
    tc = cfg.train
    flush_denormals(tc.flush_denormal)  # before the first parallel op (recon.runtime)
    say = note or (lambda text: None)
    t0 = time.time()
    device = resolve_device(tc.device)
    check_output_dir(tc.out, "--out")
    try:
        validate(tc.data, require_splits=("train", "val", "test"))
        say(f"[1/3] dataset: reusing {tc.data}")
    except DatasetFormatError:
        sizes = split_sizes(cfg.per_category)
        say(f"[1/3] dataset: building the default synthetic dataset at {tc.data} "
            f"({sizes['train']}/{sizes['val']}/{sizes['test']} objects per category)")
        build_synthetic(Path(tc.data), per_category=sizes, seed=tc.seed)
    t_train = time.time()
    deadline = time.monotonic() + cfg.budget_minutes * 60 * (1 - _MARGIN)  # calibration included
    calibration = steer = None
    saved = _saved_run(tc.out) if not tc.iterations else None
    if tc.iterations:
        tc = demo_train_config(cfg, device.type, tc.iterations)
    elif saved is not None:
        tc = demo_train_config(cfg, device.type, saved["iterations"], saved.get("precision"), saved.get("threads"),
                               saved.get("decay_step", 0))
        say(f"[2/3] {tc.out} holds a demo run of {tc.iterations} steps: continuing it with its recorded settings")
    else:
        say(f"[2/3] calibrating the training to a {cfg.budget_minutes:g}-minute budget")
        calibration = calibrate(cfg, device, cfg.budget_minutes * 60)
        tc = demo_train_config(cfg, device.type, calibration.iterations, calibration.precision, calibration.threads)
        decay_step = int(tc.decay_at * tc.iterations)
        say(f"      {1e3 * calibration.step_s:.0f} ms/step, {calibration.val_s:.1f} s/validation "
            f"({calibration.reason}) -> {tc.iterations} steps, "
            f"{'lr/sigma' if tc.lr_schedule == 'step' else 'sigma'} decay at step {decay_step}"
            + ("; re-planned from the measured rate as it trains" if tc.lr_schedule == "step" else ""))
        if tc.lr_schedule == "step":  # cosine's lr depends on the steps at every step: no exact rerun if they move
            steer = BudgetSteer(Plan(tc.iterations, decay_step), deadline, tc.val_every, tc.decay_at, calibration.val_s,
                                floor=STEP_MULTIPLE)
            train_hooks = SteeredHooks(train_hooks or TrainHooks(), steer, say)
    say(f"[2/3] training {tc.encoder} for {tc.iterations} steps x batch {tc.batch_size} on {device}")
    train(tc, train_hooks)
    saved = _saved_run(tc.out) or {}
    train_minutes = (time.time() - t_train) / 60
    say("[3/3] evaluating on the test split (every view of every object)")
    record = evaluate_run(EvalConfig(checkpoint=tc.out, data=tc.data, split="test", device=tc.device),
                          progress=progress, note=say)
    settings = {k: saved.get(k, getattr(tc, k)) for k in ("iterations", "decay_step", "batch_size", "precision",
                                                          "threads", "lr", "decay_at", "lr_schedule")}
    record["training"] = {**settings, "calibration": asdict(calibration) if calibration else None,
                          "replans": steer.history if steer else [],
                          "reproduce": " ".join(f"--{k.replace('_', '-')} {v}" for k, v in settings.items())}
    record["train_minutes"] = train_minutes
    record["minutes"] = (time.time() - t0) / 60
    return record
