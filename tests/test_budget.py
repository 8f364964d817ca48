"""The clock-steered training budget (recon.budget): the pure planner, the steer under synthetic
clocks (steps that slow down or speed up mid-run), and a steered Trainer that a rerun with its final
flags repeats bit for bit."""

from __future__ import annotations

import json
import pytest
import torch

from recon.budget import BudgetSteer, Plan, plan_budget, validations_between


def test_validations_between_counts_periodic_and_final():
    assert validations_between(0, 100, 25) == 4  # 25, 50, 75, 100
    assert validations_between(0, 110, 25) == 5  # ... + the end at 110
    assert validations_between(30, 100, 25) == 3  # 50, 75, 100
    assert validations_between(100, 100, 25) == 0
    assert validations_between(100, 90, 25) == 0


def test_plan_fits_steps_and_validations_in_the_time_left():
    plan = plan_budget(Plan(1000, 600), step=0, seconds_left=100.0, step_s=0.1, val_s=5.0, val_every=250,
                       decay_at=0.6)
    cost = plan.iterations * 0.1 + validations_between(0, plan.iterations, 250) * 5.0
    assert cost <= 100.0 < cost + 0.1 + 5.0  # the most that fits: one step more would not
    assert plan.decay_step == int(0.6 * plan.iterations)


def test_plan_keeps_a_reached_decay_and_never_goes_back():
    plan = plan_budget(Plan(1000, 600), step=700, seconds_left=10.0, step_s=0.1, val_s=1.0, val_every=250,
                       decay_at=0.6)
    assert plan.decay_step == 600 and 700 < plan.iterations < 800
    late = plan_budget(Plan(1000, 600), step=700, seconds_left=-5.0, step_s=0.1, val_s=1.0, val_every=250,
                       decay_at=0.6)
    assert late.iterations == 700  # out of time: stop at the current (clean, checkpointed) step
    early = plan_budget(Plan(1000, 600), step=500, seconds_left=1.0, step_s=0.1, val_s=0.5, val_every=250,
                        decay_at=0.6)
    assert early.decay_step == 500  # the decay point would lie in the past: it comes now


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _simulate(step_time, budget_s: float, calibrated_step_s: float, val_s: float = 3.0, validations: int = 4,
              decay_at: float = 0.6):
    """A training loop as Trainer.run drives the steer: each step advances the clock by
    ``step_time(step)``, a validation (every val_every steps and at the end) by ``val_s``."""
    clock = FakeClock()
    first = int((budget_s - validations * val_s) / calibrated_step_s)
    val_every = max(first // validations, 1)
    steer = BudgetSteer(Plan(first, int(decay_at * first)), deadline=budget_s, val_every=val_every,
                        decay_at=decay_at, val_s=val_s, every_s=20.0, clock=clock)
    plan, step, validated, decays = steer.plan, 0, False, []
    steer.start()
    while step < plan.iterations:
        clock.t += step_time(step)
        step += 1
        new = steer.after_step(step, validated)
        plan = new or plan
        decays.append(plan.decay_step)
        validated = step % val_every == 0 or step == plan.iterations
        if validated:
            clock.t += val_s
    return clock.t, step, plan, first, steer


@pytest.mark.parametrize("slow_factor", [2.0, 3.0])
def test_steps_slowing_down_halfway_do_not_overrun(slow_factor):
    budget = 600.0
    end, steps, plan, first, steer = _simulate(lambda s: 0.1 if s < 2500 else 0.1 * slow_factor, budget, 0.1)
    assert end <= 1.05 * budget, f"overran: {end:.0f} s for a {budget:.0f} s budget"
    assert end >= 0.9 * budget  # and the budget is used
    assert steps < first and steps == plan.iterations and steer.history
    # a frozen step count would have taken about this long:
    frozen = 2500 * 0.1 + (first - 2500) * 0.1 * slow_factor + 4 * 3.0
    assert frozen > 1.25 * budget


def test_steps_getting_faster_use_the_time_left():
    budget = 600.0
    end, steps, plan, first, _ = _simulate(lambda s: 0.2 if s < 1000 else 0.1, budget, 0.2)
    assert 0.9 * budget <= end <= 1.05 * budget
    assert steps > 1.3 * first


def test_the_decay_point_moves_until_reached_then_stays():
    budget = 600.0
    clock_end, steps, plan, first, steer = _simulate(lambda s: 0.1 if s < 1000 else 0.2, budget, 0.1)
    assert plan.decay_step != int(0.6 * first)  # it moved with the plan
    reached = [h for h in steer.history if h["step"] >= h["decay_step"]]
    assert all(h["decay_step"] == plan.decay_step for h in reached)


def test_noisy_clock_stays_within_budget():
    gen = torch.Generator().manual_seed(0)
    noise = (0.5 + torch.rand(20000, generator=gen)).tolist()  # 0.5x .. 1.5x per step
    end, *_ = _simulate(lambda s: 0.1 * noise[s], 300.0, 0.1)
    assert 0.9 * 300 <= end <= 1.05 * 300


def test_steered_trainer_is_repeated_by_its_final_flags(tiny_dataset, tmp_path):
    from recon.checkpoint import load_checkpoint
    from recon.config import TrainConfig
    from recon.training import TrainHooks, train

    class Moves(TrainHooks):  # a plan that grows the run at step 2 and moves its decay
        def plan(self, step, validated):
            return Plan(6, 3) if step == 2 else None

    common = dict(data=tiny_dataset, batch_size=2, threads=1, precision="fp32", val_every=3, val_objects=1,
                  val_views="0,", tensorboard=False, lr=1e-3, seed=3)
    train(TrainConfig(out=str(tmp_path / "steered"), iterations=4, **common), Moves())
    saved = json.loads((tmp_path / "steered" / "config.json").read_text())
    assert (saved["iterations"], saved["decay_step"]) == (6, 3)
    train(TrainConfig(out=str(tmp_path / "rerun"), iterations=6, decay_step=3, **{**common, "val_every": 2}))

    def weights(run: str):
        state = load_checkpoint(tmp_path / run / "last.pt")
        assert state["step"] == 6
        return state["model"]

    a, b = weights("steered"), weights("rerun")
    assert all(torch.equal(a[k], b[k]) for k in a)
