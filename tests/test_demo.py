"""The time-budgeted demo: the calibration fixes the steps up front, config.json records them, and
the printed flags rerun the same training exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from recon.workflows import demo
from recon.config import DemoConfig


def _losses(run: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def test_calibration_fits_the_budget(tiny_dataset: str, tmp_path: Path) -> None:
    cfg = DemoConfig.of(data=tiny_dataset, out=str(tmp_path / "run"), batch_size=2, device="cpu", threads=1,
                        precision="fp32")
    small = demo.calibrate(cfg, torch.device("cpu"), budget_s=1.0)
    assert small.iterations == demo.STEP_MULTIPLE  # the floor: a budget too small still trains
    assert small.precision == "fp32" and small.threads == 1 and small.step_s > 0 and small.val_s > 0
    budget = small.seconds + demo.VALIDATIONS * small.val_s + 200 * small.step_s
    big = demo.calibrate(cfg, torch.device("cpu"), budget_s=budget / (1 - demo._MARGIN))
    assert big.iterations % demo.STEP_MULTIPLE == 0 and big.iterations >= demo.STEP_MULTIPLE
    # what it plans (steps, validations, the calibration itself) fits the budget, or is the floor
    planned = big.iterations * big.step_s + demo.VALIDATIONS * big.val_s + big.seconds
    assert planned <= big.budget_s or big.iterations == demo.STEP_MULTIPLE
    assert not (tmp_path / "run").exists()  # calibrating writes nothing


def test_budget_run_records_its_steps_and_the_flags_reproduce_it(tiny_dataset: str, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "STEP_MULTIPLE", 8)  # a short run: 8 steps is the calibration's floor
    from recon.ranges import RANGES, Range  # and a budget below the documented minimum (1 minute) to reach it

    monkeypatch.setitem(RANGES["DemoConfig"], "budget_minutes", Range(0.001, 60, integer=False))
    common = dict(data=tiny_dataset, batch_size=2, device="cpu")
    first = demo.run_demo(DemoConfig.of(out=str(tmp_path / "budget"), budget_minutes=0.01, **common))
    training = first["training"]
    assert training["calibration"]["iterations"] == training["iterations"] == 8
    saved = json.loads((tmp_path / "budget" / "config.json").read_text())
    assert saved["iterations"] == 8 and saved["val_every"] == 2
    assert saved["precision"] == training["precision"] in ("fp32", "bf16") and saved["threads"] == training["threads"]
    assert training["reproduce"] == (f"--iterations 8 --decay-step {saved['decay_step']} --batch-size 2 --precision "
                                     f"{saved['precision']} --threads {saved['threads']} --lr 0.0005 --decay-at 0.6 "
                                     "--lr-schedule step")
    again = demo.run_demo(DemoConfig.of(out=str(tmp_path / "again"), iterations=8, precision=saved["precision"],
                                        threads=saved["threads"], decay_step=saved["decay_step"], **common))
    assert again["training"]["calibration"] is None
    assert _losses(tmp_path / "again") == _losses(tmp_path / "budget")
    assert again["mean_iou"] == first["mean_iou"]
    # rerunning the demo on its run directory reuses the run with its recorded settings: no new calibration
    rerun = demo.run_demo(DemoConfig.of(out=str(tmp_path / "budget"), budget_minutes=5, **common))
    assert rerun["training"]["calibration"] is None and rerun["training"]["iterations"] == 8
    assert _losses(tmp_path / "budget") == _losses(tmp_path / "again")


def test_bad_budget_is_a_one_line_error() -> None:
    with pytest.raises(ValueError, match="--budget-minutes must be a positive number"):
        DemoConfig(budget_minutes=0).validate()
