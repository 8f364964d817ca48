"""The denormal benchmark: the training step at initialisation vs after a few hundred steps, with
and without flush-to-zero (``recon.runtime.flush_denormals``).

Subnormal floats (below ~1.2e-38) appear as training goes on, in Adam's moments, activations and
gradients; x86 CPUs compute with them in microcode. The setting reaches OpenMP's worker threads
only when it is made before they start, so each setting is measured in its own process:

* flushing **off** (as recon trained before it flushed): time ``timed`` steps at initialisation,
  train ``steps`` steps, count the subnormal values in the weights and Adam's state, save that
  state, time ``timed`` steps from it;
* flushing **on**: time the same steps at initialisation (same seed: same weights and batches),
  load the saved state, time the same steps from it.

Each timing is the median step over the same batches, restarted from the same state.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

__all__ = ["DenormalRecord", "count_subnormals", "bench_denormals", "denormal_rows"]


@dataclass
class DenormalRecord:
    """Median ms per training step at one point of training, flushing off and on."""

    point: str           # "init" or "after N steps"
    step: int
    off_ms: float
    on_ms: float
    subnormals: int      # subnormal values in weights + optimizer state at this point (flushing off)
    values: int          # all values counted

    @property
    def speedup(self) -> float:
        return self.off_ms / self.on_ms


def count_subnormals(tensors: list[torch.Tensor]) -> tuple[int, int]:
    """(subnormal values, all values) over the floating-point ``tensors``."""
    sub = total = 0
    for t in tensors:
        if t.is_floating_point():
            tiny = torch.finfo(t.dtype).tiny
            sub += int(((t != 0) & (t.abs() < tiny)).sum())
            total += t.numel()
    return sub, total


def _state_tensors(trainer: Any) -> list[torch.Tensor]:
    opt = [v for s in trainer.optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    return [p.detach() for p in trainer.model.parameters()] + opt


def _time_steps(trainer: Any, batches: list[dict[str, torch.Tensor]]) -> float:
    """Median ms of one step over ``batches`` (the first one untimed) from the trainer's current
    state, which is restored afterwards."""
    model, opt = copy.deepcopy(trainer.model.state_dict()), copy.deepcopy(trainer.optimizer.state_dict())
    step = trainer.step
    times = []
    try:
        for i, batch in enumerate(batches):
            t = time.perf_counter()
            trainer.train_step(batch)
            if i:
                times.append(time.perf_counter() - t)
    finally:
        trainer.model.load_state_dict(model)
        trainer.optimizer.load_state_dict(opt)
        trainer.step = step
    times.sort()
    return 1e3 * times[len(times) // 2]


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    """One setting's measurements in this process (see the module docstring)."""
    from recon.config import TrainConfig
    from recon.training import Trainer

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="recon-denormal-") as tmp:
        cfg = TrainConfig(data=spec["data"], out=tmp, iterations=1 << 30, batch_size=spec["batch_size"],
                          lr=spec["lr"], threads=spec["threads"], precision=spec["precision"], tensorboard=False,
                          flush_denormal=spec["flush"])
        with Trainer(cfg) as trainer:  # sets the flush mode first thing, before any parallel op
            out["runtime"] = trainer.runtime_note
            it = iter(trainer.batches())
            probe = [next(it) for _ in range(spec["timed"] + 1)]
            out["init_ms"] = _time_steps(trainer, probe)
            out["init_counts"] = count_subnormals(_state_tensors(trainer))
            if spec["state_in"]:
                state = torch.load(spec["state_in"], weights_only=True)
                trainer.model.load_state_dict(state["model"])
                trainer.optimizer.load_state_dict(state["optimizer"])
                trainer.step = state["step"]
            else:
                t = time.perf_counter()
                for _ in range(spec["steps"]):
                    trainer.train_step(next(it))
                    trainer.step += 1
                out["train_s"] = time.perf_counter() - t
                torch.save({"model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict(),
                            "step": trainer.step}, spec["state_out"])
            out["late_counts"] = count_subnormals(_state_tensors(trainer))
            out["late_ms"] = _time_steps(trainer, probe)
            out["step"] = trainer.step
    return out


def _run_child(spec: dict[str, Any]) -> dict[str, Any]:
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "tools.bench_denormal", json.dumps(spec)], capture_output=True,
                          text=True, env=env, cwd=root)
    if proc.returncode != 0:
        raise RuntimeError(f"denormal bench child (flush={spec['flush']}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_denormals(data: str, steps: int = 300, timed: int = 12, batch_size: int = 16, threads: int = 0,
                    precision: str = "auto", lr: float = 5e-4,
                    note: Callable[[str], None] | None = None) -> list[DenormalRecord]:
    """Time the demo's training step at initialisation and after ``steps`` steps trained with
    flushing off, flushing off and on, each setting in its own process; ``timed`` steps per timing.
    Writes nothing outside a temporary directory."""
    say = note or (lambda text: None)
    with tempfile.TemporaryDirectory(prefix="recon-denormal-") as tmp:
        spec = {"data": str(data), "steps": steps, "timed": timed, "batch_size": batch_size, "threads": threads,
                "precision": precision, "lr": lr, "state_in": None, "state_out": str(Path(tmp) / "late.pt")}
        off = _run_child({**spec, "flush": False})
        say(f"denormal bench: {off['runtime']}; batch {batch_size}; trained {steps} steps with flushing off in "
            f"{off['train_s']:.0f} s")
        on = _run_child({**spec, "flush": True, "state_in": spec["state_out"]})
    return [DenormalRecord("init", 0, off["init_ms"], on["init_ms"], *off["init_counts"]),
            DenormalRecord(f"after {steps} steps", off["step"], off["late_ms"], on["late_ms"], *off["late_counts"])]


def denormal_rows(records: list[DenormalRecord]) -> list[dict[str, Any]]:
    """JSON rows of ``records`` (with the speedup)."""
    return [{**vars(r), "speedup": r.speedup} for r in records]


if __name__ == "__main__":  # one setting's child process (bench_denormals)
    parser = argparse.ArgumentParser(description="one setting of tools.bench_denormal (internal)")
    parser.add_argument("spec")
    print(json.dumps(_child(json.loads(parser.parse_args().spec))))
