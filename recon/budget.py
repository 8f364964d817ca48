"""A training budget steered by the clock: re-plan the remaining steps and the decay point from the
measured rate as training goes.

A step count frozen from a short calibration overruns its budget by the factor the step slows down
later (subnormal floats, a neighbour process, thermal limits: the demo once took 18 min for a
10-minute budget). ``BudgetSteer`` measures the step time over the recent steps and, every
``every_s`` seconds and after every validation, asks ``plan_budget`` how many steps still fit
before the deadline, counting the validations (and checkpoints) still to come. The decay point
(``decay_at`` x steps) moves with the plan until it is reached; from then on it is fixed, so that
the run ends as one with ``--iterations N --decay-step D`` would: the step schedule is piecewise
constant, so a rerun with the final ``N`` and ``D`` repeats the same computation (the lr/sigma
of every step, the data of every step; validations do not touch the training's state).

``plan_budget`` is a pure function of the clock readings it is given; ``BudgetSteer`` takes the
clock as an argument, so both are tested with synthetic clocks (tests/test_budget.py).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Plan", "plan_budget", "validations_between", "BudgetSteer"]


@dataclass(frozen=True)
class Plan:
    """Train to step ``iterations``; lr/sigma decay from step ``decay_step`` on."""

    iterations: int
    decay_step: int


def validations_between(step: int, iterations: int, val_every: int) -> int:
    """Validations a run still makes after ``step`` up to ``iterations``: one at every multiple of
    ``val_every`` in ``(step, iterations]`` and one at the end when it is not such a multiple."""
    if iterations <= step:
        return 0
    periodic = iterations // val_every - step // val_every
    return periodic + (iterations % val_every != 0)


def plan_budget(plan: Plan, step: int, seconds_left: float, step_s: float, val_s: float, val_every: int,
                decay_at: float, floor: int = 0) -> Plan:
    """The plan that ends the run when ``seconds_left`` are spent.

    Args:
        plan: the current plan (its ``decay_step`` is kept once ``step`` reached it).
        step: steps done so far.
        seconds_left: time until the deadline (negative: past it).
        step_s: expected seconds per training step (the recent rate).
        val_s: expected seconds per validation + checkpoint.
        val_every: validation period in steps (the run validates at its last step as well).
        decay_at: where the decay goes, as a fraction of the planned steps (until it is reached).
        floor: train at least this many steps, whatever the clock says (the demo's minimum).
    Returns:
        ``iterations >= step``: as many steps as fit with the validations they bring; ``step`` itself
        when none fits (the run then validates, checkpoints and stops at once); at least ``floor``.
    """
    if not (step_s > 0 and math.isfinite(step_s)):
        raise ValueError(f"step_s must be a positive finite number of seconds, got {step_s}")

    def cost(n: int) -> float:  # seconds of n more steps with the validations they bring
        return n * step_s + validations_between(step, step + n, val_every) * val_s

    low, high = 0, max(int(seconds_left / step_s), 0)  # cost is non-decreasing in n: bisect
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if cost(mid) <= seconds_left else (low, mid - 1)
    steps = low
    iterations = max(step + steps, floor)
    if step >= plan.decay_step:
        return Plan(iterations, plan.decay_step)
    return Plan(iterations, max(int(decay_at * iterations), step))


class BudgetSteer:
    """Re-plans a training to end by ``deadline`` (a ``clock()`` reading): call ``after_step`` after
    every step; it returns a new ``Plan`` when the plan changes, else None.

    Args:
        plan: the calibrated plan the run starts with.
        deadline: ``clock()`` value by which the last step, validation and checkpoint are done.
        val_every: the run's validation period (steps).
        decay_at: the decay point as a fraction of the planned steps.
        val_s: first estimate of a validation's seconds (the calibration's); replaced by measurements.
        every_s: re-plan at most this often between validations.
        window: steps the rate is measured over (the most recent, validations excluded).
        floor: never plan fewer steps than this.
        clock: seconds, monotonic (``time.monotonic``; tests pass a synthetic clock).
    """

    def __init__(self, plan: Plan, deadline: float, val_every: int, decay_at: float, val_s: float,
                 every_s: float = 20.0, window: int = 50, floor: int = 0,
                 clock: Callable[[], float] = time.monotonic):
        self.plan, self.deadline, self.val_every, self.decay_at, self.floor = plan, deadline, val_every, decay_at, floor
        self.val_s, self.every_s, self.clock = val_s, every_s, clock
        self._durations: deque[float] = deque(maxlen=window)
        self._last: float | None = None
        self._last_plan_t = -math.inf
        self.history: list[dict[str, Any]] = []

    def start(self) -> None:
        """The first step begins now."""
        self._last = self.clock()
        self._last_plan_t = self._last

    def after_step(self, step: int, validated: bool) -> Plan | None:
        """Step ``step`` (1-based count) just ended, including its validation and checkpoint when
        ``validated``. Returns the new plan when it differs from the current one."""
        now = self.clock()
        if self._last is None:
            self._last, self._last_plan_t = now, now
            return None
        took, self._last = now - self._last, now
        if validated:
            step_s = self.step_s()
            self.val_s = max(took - (step_s or 0.0), 0.0)
        else:
            self._durations.append(took)
        if not self._durations or (not validated and now - self._last_plan_t < self.every_s):
            return None
        self._last_plan_t = now
        new = plan_budget(self.plan, step, self.deadline - now, self.step_s(), self.val_s, self.val_every,
                          self.decay_at, self.floor)
        if new == self.plan:
            return None
        self.history.append({"step": step, "step_ms": round(1e3 * self.step_s(), 1), "val_s": round(self.val_s, 2),
                             "iterations": new.iterations, "decay_step": new.decay_step})
        self.plan = new
        return new

    def step_s(self) -> float:
        """Mean seconds per step over the window (0 before the first measured step)."""
        return sum(self._durations) / len(self._durations) if self._durations else 0.0
