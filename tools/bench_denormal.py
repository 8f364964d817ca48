"""The denormal benchmark: the training step at initialisation vs after a few hundred steps, with
and without flush-to-zero (``recon.runtime.flush_denormals``).

Subnormal floats (below ~1.2e-38) appear as training goes on, in Adam's moments, activations and
gradients; x86 CPUs compute with them in microcode. This trains the demo's model (the real
``Trainer.train_step``) for ``steps`` steps with flushing **off** (as recon trained before it
flushed), then times ``timed`` steps from the same saved state with flushing off and on, in
alternating rounds (off, on, off, on) so that a drifting machine affects both alike; the same at
initialisation. It also counts the subnormal values in the weights and the optimizer state.
"""

from __future__ import annotations

import copy
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from recon.config import TrainConfig
from recon.runtime import flush_denormals
from recon.training import Trainer

__all__ = ["DenormalRecord", "count_subnormals", "bench_denormals", "denormal_rows"]


@dataclass
class DenormalRecord:
    """Median ms per training step at one point of training, flushing off and on."""

    point: str           # "init" or "after N steps"
    step: int
    off_ms: float
    on_ms: float
    subnormals: int      # subnormal values in weights + optimizer state at this point
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


def _state_tensors(trainer: Trainer) -> list[torch.Tensor]:
    opt = [v for s in trainer.optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    return [p.detach() for p in trainer.model.parameters()] + opt


def _time_steps(trainer: Trainer, batches: list[dict[str, torch.Tensor]], flush: bool) -> float:
    """Median ms of one step over ``batches`` (the first one untimed) from the trainer's current
    state, which is restored afterwards."""
    model, opt, step = copy.deepcopy(trainer.model.state_dict()), copy.deepcopy(trainer.optimizer.state_dict()), \
        trainer.step
    flush_denormals(flush)
    times = []
    try:
        for i, batch in enumerate(batches):
            t = time.perf_counter()
            trainer.train_step(batch)
            if i:
                times.append(time.perf_counter() - t)
    finally:
        flush_denormals(False)
        trainer.model.load_state_dict(model)
        trainer.optimizer.load_state_dict(opt)
        trainer.step = step
    times.sort()
    return 1e3 * times[len(times) // 2]


def _point(trainer: Trainer, batches: list[dict[str, torch.Tensor]], name: str, rounds: int) -> DenormalRecord:
    off, on = [], []
    for _ in range(rounds):
        off.append(_time_steps(trainer, batches, False))
        on.append(_time_steps(trainer, batches, True))
    sub, total = count_subnormals(_state_tensors(trainer))
    return DenormalRecord(name, trainer.step, sorted(off)[len(off) // 2], sorted(on)[len(on) // 2], sub, total)


def bench_denormals(data: str, steps: int = 300, timed: int = 12, rounds: int = 2, batch_size: int = 16,
                    threads: int = 0, precision: str = "auto", lr: float = 5e-4,
                    note: Callable[[str], None] | None = None) -> list[DenormalRecord]:
    """Time the demo's training step at initialisation and after ``steps`` steps trained with
    flushing off, ``timed`` steps per round, ``rounds`` rounds of (off, on). Writes nothing outside
    a temporary run directory."""
    say = note or (lambda text: None)
    with tempfile.TemporaryDirectory(prefix="recon-denormal-") as tmp:
        cfg = TrainConfig(data=data, out=tmp, iterations=1 << 30, batch_size=batch_size, lr=lr, threads=threads,
                          precision=precision, tensorboard=False, flush_denormal=False)
        with Trainer(cfg) as trainer:
            say(f"denormal bench: {trainer.runtime_note}; batch {batch_size}")
            it = iter(trainer.batches())
            probe = [next(it) for _ in range(timed + 1)]
            records = [_point(trainer, probe, "init", rounds)]
            t = time.perf_counter()
            flush_denormals(False)
            for _ in range(steps):
                trainer.train_step(next(it))
                trainer.step += 1
            say(f"trained {steps} steps with flushing off in {time.perf_counter() - t:.0f} s")
            records.append(_point(trainer, probe, f"after {steps} steps", rounds))
    flush_denormals(True)  # back to recon's default for the rest of the process
    return records


def denormal_rows(records: list[DenormalRecord]) -> list[dict[str, Any]]:
    """JSON rows of ``records`` (with the speedup)."""
    return [{**vars(r), "speedup": r.speedup} for r in records]
