"""The main job end to end (``make demo``): build the default dataset -> train -> evaluate.

Existing outputs are reused: the dataset when it validates, the training when the run
directory holds a finished run (an unfinished one is resumed).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from recon.config import DemoConfig, EvalConfig, TrainConfig
from recon.data.schema import DatasetFormatError, validate
from recon.data.synthetic import build_synthetic, split_sizes
from recon.distributed import resolve_device
from recon.evaluate import evaluate_run
from recon.runs import step_checkpoints
from recon.training import TrainHooks, train

__all__ = ["BUDGETS", "demo_train_config", "run_demo"]

# (iterations, batch size) per device type; the CPU budget fits ~10 minutes on 2 cores.
BUDGETS = {"cpu": (1000, 16), "cuda": (20000, 64)}


def demo_train_config(cfg: DemoConfig, device_type: str) -> TrainConfig:
    """The demo's training: the device's budget (unless overridden), validation 4 times per run."""
    iterations, batch = BUDGETS[device_type]
    iterations = cfg.iterations or iterations
    return TrainConfig(data=cfg.data, out=cfg.out, encoder=cfg.encoder, iterations=iterations,
                       batch_size=cfg.batch_size or batch, lr=cfg.lr, device=cfg.device, seed=cfg.seed,
                       val_every=max(iterations // 4, 1), resume=bool(step_checkpoints(cfg.out)))


def run_demo(cfg: DemoConfig, note: Callable[[str], None] | None = None, train_hooks: TrainHooks | None = None,
             progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run the three stages; return the test eval record plus ``minutes`` (the whole demo's wall time).

    Args:
        note: one line per stage.
        train_hooks / progress: passed to ``recon.training.train`` / ``recon.evaluate.evaluate_run``.
    """
    cfg.validate()
    say = note or (lambda text: None)
    t0 = time.time()
    device = resolve_device(cfg.device)
    try:
        validate(cfg.data, require_splits=("train", "val", "test"))
        say(f"[1/3] dataset: reusing {cfg.data}")
    except DatasetFormatError:
        sizes = split_sizes(cfg.per_category)
        say(f"[1/3] dataset: building the default synthetic dataset at {cfg.data} "
            f"({sizes['train']}/{sizes['val']}/{sizes['test']} objects per category)")
        build_synthetic(Path(cfg.data), per_category=sizes, seed=cfg.seed)
    tc = demo_train_config(cfg, device.type)
    say(f"[2/3] training {tc.encoder} for {tc.iterations} steps x batch {tc.batch_size} on {device}")
    train(tc, train_hooks)
    say("[3/3] evaluating on the test split (every view of every object)")
    record = evaluate_run(EvalConfig(checkpoint=cfg.out, data=cfg.data, split="test", device=cfg.device),
                          progress=progress, note=say)
    record["minutes"] = (time.time() - t0) / 60
    return record
