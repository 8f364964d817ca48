"""Mixed precision (recon.models.precision) and the CPU runtime choices (recon.runtime): bf16 agrees
with the fp32 reference in values and gradients, weights/optimizer/outputs stay fp32, ``auto``
resolves as documented, runs record their precision, bf16 runs are bitwise reproducible and
resumable, and checkpoints evaluate in either precision."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from recon.checkpoint import load_checkpoint
from recon.config import EvalConfig, TrainConfig
from recon.models import ENCODERS, Reconstructor
from recon.models import precision as prec
from recon.runtime import busy_cores, choose_threads, tune_allocator
from recon.training import Trainer, TrainHooks, align_optimizer_state, make_optimizer, train


def _cfg(data: str, out: Path, **kw) -> TrainConfig:
    base = dict(data=data, out=str(out), iterations=4, batch_size=2, val_every=2, val_objects=1, val_views="1",
                log_every=1, device="cpu", tensorboard=False, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def _losses(run: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


# -- the precision of the networks ---------------------------------------------------------

@pytest.mark.parametrize("name", list(ENCODERS))
def test_bf16_agrees_with_fp32_in_values_and_gradients(name: str) -> None:
    """bf16 autocast is the fast path, fp32 its reference: same weights, same inputs -> vertices and
    weight gradients agree to bf16 accuracy; outputs, weights and gradients stay float32."""
    torch.manual_seed(0)
    ref = Reconstructor(name).train()
    fast = Reconstructor(name).train()
    fast.load_state_dict(ref.state_dict())
    fast.set_precision("bf16")
    images = torch.rand(4, 4, 64, 64, generator=torch.Generator().manual_seed(1))
    target = torch.rand(4, 642, 3, generator=torch.Generator().manual_seed(2)) - 0.5
    outs = {}
    for label, model in (("fp32", ref), ("bf16", fast)):
        verts = model(images)
        assert verts.dtype == torch.float32
        ((verts - target) ** 2).mean().backward()
        outs[label] = verts.detach()
    assert not torch.equal(outs["fp32"], outs["bf16"])  # the comparison below can fail: bf16 really ran
    assert (outs["fp32"] - outs["bf16"]).abs().max() < 0.02
    pairs = [(n, a.grad.flatten(), b.grad) for (n, a), b in zip(ref.named_parameters(), fast.parameters())]
    for pname, _, g in pairs:
        assert g.dtype == torch.float32 and torch.isfinite(g).all(), pname
    assert all(p.dtype == torch.float32 for p in fast.parameters())
    whole = torch.nn.functional.cosine_similarity(torch.cat([a for _, a, _ in pairs]),
                                                  torch.cat([b.flatten() for *_, b in pairs]), 0)
    assert whole > 0.99, whole
    largest = max(a.norm() for _, a, _ in pairs)
    for pname, a, b in pairs:  # conv biases before BatchNorm have a zero gradient in exact arithmetic: skipped
        if a.norm() > 1e-4 * largest:
            assert torch.nn.functional.cosine_similarity(a, b.flatten(), 0) > 0.9, pname


def test_set_precision_keeps_values_and_round_trips_bitwise() -> None:
    torch.manual_seed(0)
    model = Reconstructor("baseline").eval()
    images = torch.rand(2, 4, 64, 64)
    before = model(images)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.set_precision("bf16")
    assert model.precision == "bf16"
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())  # only the layout moved
    assert torch.equal(model.set_precision("fp32")(images), before)


def test_bad_precision_is_a_one_line_error_naming_the_flag() -> None:
    with pytest.raises(ValueError, match="--precision 'fp16' unknown; expected one of auto, fp32, bf16"):
        TrainConfig(precision="fp16").check_flags()
    with pytest.raises(ValueError, match="--precision"):
        EvalConfig(checkpoint="x", precision="half").validate()
    with pytest.raises(ValueError, match="fp32, bf16"):
        Reconstructor("baseline").set_precision("auto")


def test_native_bf16_names_a_reason_or_none() -> None:
    why = prec.native_bf16("cpu")
    assert why is None or "AVX512-BF16" in why


def test_auto_is_fp32_unmeasured_where_bf16_is_not_native(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prec, "native_bf16", lambda device: "this CPU has neither AVX512-BF16 nor AMX")

    def no_timing(*args, **kwargs):
        raise AssertionError("measured although bf16 is not native")

    monkeypatch.setattr(prec, "time_precisions", no_timing)
    model = Reconstructor("baseline")
    choice = prec.choose_training_precision("auto", model, 4, 64, torch.device("cpu"))
    assert choice.precision == "fp32" and "neither AVX512-BF16" in choice.reason and choice.fp32_ms is None
    assert prec.choose_training_precision("bf16", model, 4, 64, torch.device("cpu")).precision == "bf16"
    assert prec.inference_precision("auto", "bf16", torch.device("cpu")).precision == "fp32"


def test_auto_follows_the_measurement_where_bf16_is_native(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prec, "native_bf16", lambda device: None)
    model = Reconstructor("baseline")
    for fp32_ms, bf16_ms, want in ((10.0, 5.0, "bf16"), (5.0, 10.0, "fp32")):
        monkeypatch.setattr(prec, "time_precisions", lambda *a, f=fp32_ms, b=bf16_ms, **k: {"fp32": f, "bf16": b})
        choice = prec.choose_training_precision("auto", model, 4, 64, torch.device("cpu"))
        assert choice.precision == want and choice.fp32_ms == fp32_ms and choice.bf16_ms == bf16_ms
    assert prec.inference_precision("auto", "bf16", torch.device("cpu")).precision == "bf16"
    assert prec.inference_precision("auto", None, torch.device("cpu")).precision == "fp32"  # older checkpoints
    assert prec.inference_precision("fp32", "bf16", torch.device("cpu")).precision == "fp32"


def test_timing_leaves_model_buffers_and_rng_untouched() -> None:
    torch.manual_seed(0)
    model = Reconstructor("baseline").train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    ms = prec.time_precisions(model, 2, 64, torch.device("cpu"), repeats=1)
    assert set(ms) == {"fp32", "bf16"} and all(v > 0 for v in ms.values())
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert model.precision == "fp32" and all(p.grad is None for p in model.parameters())


# -- runs record, reproduce and resume their precision ---------------------------------------

def test_bf16_run_is_bitwise_reproducible_and_records_its_precision(tiny_dataset: str, tmp_path: Path) -> None:
    for name in ("a", "b"):
        train(_cfg(tiny_dataset, tmp_path / name, iterations=3, val_every=3, precision="bf16"))
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["precision"] == "bf16" and a["config"]["precision"] == "bf16" and a["config"]["threads"] == 1
    assert json.loads((tmp_path / "a" / "config.json").read_text())["precision"] == "bf16"
    assert load_checkpoint(tmp_path / "a" / "best.pt")["precision"] == "bf16"
    train(_cfg(tiny_dataset, tmp_path / "c", iterations=3, val_every=3, precision="fp32"))
    assert _losses(tmp_path / "c")[0] != _losses(tmp_path / "a")[0]  # the precision does change the numbers


def test_auto_is_resolved_before_the_run_and_recorded(tiny_dataset: str, tmp_path: Path) -> None:
    with Trainer(_cfg(tiny_dataset, tmp_path / "run", iterations=1, threads=0)) as t:
        assert t.cfg.precision in ("fp32", "bf16") and t.model.precision == t.cfg.precision
        assert t.cfg.threads >= 1 and torch.get_num_threads() == t.cfg.threads
        assert t.precision is not None and t.precision.reason.startswith("auto")


def test_resume_in_bf16_is_bitwise_and_auto_keeps_the_checkpoint_precision(tiny_dataset: str, tmp_path: Path) -> None:
    # decay_at 1: the schedule does not depend on --iterations, so stopping at 2 of 4 changes nothing
    train(_cfg(tiny_dataset, tmp_path / "whole", iterations=4, precision="bf16", decay_at=1.0))
    train(_cfg(tiny_dataset, tmp_path / "split", iterations=2, precision="bf16", decay_at=1.0))
    notes: list[str] = []

    class Hooks(TrainHooks):
        def on_message(self, text: str, level: str = "") -> None:
            notes.append(text)

    train(_cfg(tiny_dataset, tmp_path / "split", iterations=4, precision="auto", threads=0, resume=True,
               decay_at=1.0), Hooks())
    assert any("precision bf16 (auto: as the resumed checkpoint)" in n for n in notes), notes
    assert not any("changed settings" in n for n in notes), notes
    assert _losses(tmp_path / "whole") == _losses(tmp_path / "split")
    a, b = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(tmp_path / "split" / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


@pytest.mark.parametrize("trained, evaluated", [("fp32", "bf16"), ("bf16", "fp32")])
def test_checkpoint_evaluates_in_the_other_precision(tiny_dataset: str, tmp_path: Path, trained: str,
                                                     evaluated: str) -> None:
    from recon.workflows.eval import evaluate_run

    run = tmp_path / "run"
    train(_cfg(tiny_dataset, run, iterations=2, precision=trained))
    records = {}
    for p in (evaluated, "auto"):
        records[p] = evaluate_run(EvalConfig(checkpoint=str(run), data=tiny_dataset, views="2", device="cpu",
                                             precision=p, figures=0, full_metrics=False,
                                             json=str(tmp_path / f"eval_{p}.json")))
    assert records[evaluated]["precision"] == evaluated
    assert records["auto"]["precision"] in (trained, "fp32")  # fp32 where bf16 is not native here
    assert abs(records[evaluated]["mean_iou"] - records["auto"]["mean_iou"]) < 0.05


def test_predict_takes_a_precision(tiny_dataset: str, tmp_path: Path) -> None:
    from recon.workflows.predict import Predictor

    run = tmp_path / "run"
    train(_cfg(tiny_dataset, run, iterations=1, val_every=1, precision="bf16"))
    predictor = Predictor.load(run, "cpu", "fp32")
    assert predictor.model.precision == "fp32" and "precision fp32" in predictor.description
    with pytest.raises(ValueError, match="--precision"):
        Predictor.load(run, "cpu", "int8")


# -- the CPU runtime ---------------------------------------------------------------------------

def test_threads_requested_win_and_auto_is_within_the_usable_cores() -> None:
    assert choose_threads(3) == (3, "requested")
    threads, why = choose_threads(0)
    assert 1 <= threads <= (os.cpu_count() or 1) and why.startswith("auto")
    assert choose_threads(0, processes=64)[0] == 1
    busy = busy_cores(0.05)
    assert busy is None or busy >= 0


def test_tune_allocator_is_idempotent() -> None:
    first = tune_allocator()
    assert tune_allocator() is first


def test_optimizer_moments_follow_the_parameter_layout() -> None:
    """torch's fused CPU Adam pairs elements by memory position: a channels_last weight with
    contiguous moments (a checkpoint written before channels_last) must be realigned first."""
    torch.manual_seed(0)
    w, g = torch.randn(8, 4, 5, 5), torch.randn(8, 4, 5, 5)
    moments = {"exp_avg": torch.randn(8, 4, 5, 5), "exp_avg_sq": torch.rand(8, 4, 5, 5)}

    def adam_step(channels_last: bool, align: bool) -> torch.Tensor:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        p = torch.nn.Parameter(w.clone().contiguous(memory_format=fmt))
        opt = make_optimizer(torch.nn.ParameterList([p]), 1e-3)
        state = {"step": torch.tensor(1.0), **{k: v.clone() for k, v in moments.items()}}
        opt.load_state_dict({"state": {0: state}, "param_groups": opt.state_dict()["param_groups"]})
        if align:
            assert align_optimizer_state(opt) == (2 if channels_last else 0)
        p.grad = g.clone().contiguous(memory_format=fmt)
        opt.step()
        return p.detach().contiguous()

    ref = adam_step(channels_last=False, align=True)
    assert torch.equal(adam_step(channels_last=True, align=True), ref)
