"""TensorBoard logging: event files with every scalar when tensorboard is installed, and
training unaffected when it is not (it is the optional extra ``tensorboard``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from recon.config import TrainConfig
from recon.training import train


def _cfg(data: str, out: Path, **kw) -> TrainConfig:
    base = dict(data=data, out=str(out), iterations=2, batch_size=2, val_every=2, val_objects=1, val_views="1",
                log_every=1, device="cpu", tensorboard=True, encoder="attention")
    base.update(kw)
    return TrainConfig(**base)


def test_tensorboard_event_files_hold_the_scalars(tiny_dataset: str, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    train(_cfg(tiny_dataset, out))
    events = list((out / "tb").glob("events.out.tfevents.*"))
    assert events, "no event file in RUN/tb"
    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"loss", "iou_loss", "lap", "flat", "lr", "sigma", "val_iou", "val_loss"} <= tags
    assert [e.step for e in acc.Scalars("loss")] == [1, 2]
    assert [e.step for e in acc.Scalars("val_iou")] == [2]
    assert 0.0 <= acc.Scalars("val_iou")[0].value <= 1.0
    assert acc.Scalars("lr")[0].value == pytest.approx(1e-4)


def test_training_runs_without_tensorboard(tiny_dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # makes the import fail
    out = tmp_path / "run"
    summary = train(_cfg(tiny_dataset, out))
    assert summary["step"] == 2
    assert (out / "metrics.jsonl").is_file() and (out / "last.pt").exists()
    assert not (out / "tb").exists()
