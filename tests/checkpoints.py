"""An untrained but valid checkpoint, for tests whose plumbing does not need a trained model
(predict's, the names', the bounds', the README figure's, the fuzzed inputs')."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from recon.checkpoint import save_checkpoint
from recon.config import TrainConfig
from recon.models import Reconstructor


def untrained_checkpoint(path: Path, encoder: str = "attention", step: int = 0) -> Path:
    """Write ``path``: seed-0 weights of ``encoder``, its config naming a dataset that is absent."""
    torch.manual_seed(0)
    config = asdict(TrainConfig(encoder=encoder, data=str(path.parent / "absent.h5")))
    save_checkpoint({"version": 1, "model": Reconstructor(encoder).state_dict(), "step": step, "config": config}, path)
    return path
