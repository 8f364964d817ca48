"""Shared fixtures: tiny datasets built once per session in a temp dir."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors (dataset building): intra-op threads only add contention on shared CPUs."""
    from recon.runtime import one_thread as single_thread

    with single_thread():
        yield


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> str:
    """Two synthetic categories, 6/2/2 objects each (about a second to build)."""
    from recon.data.synthetic import build_synthetic

    path = tmp_path_factory.mktemp("data") / "tiny.h5"
    build_synthetic(path, per_category=(6, 2, 2), categories=["03001627", "04379243"], seed=0, workers=1,
                    progress=False)
    return str(path)


@pytest.fixture(scope="session")
def app_run(tiny_dataset: str, tmp_path_factory) -> str:
    """A run trained a few steps on ``tiny_dataset``, evaluated on views 0, 6, 12 of its test split
    (``RUN/eval_test.json`` and one saved mesh per category): what ``pipelines.app`` serves in tests."""
    from pipelines import eval as eval_pipeline
    from recon.config import TrainConfig
    from recon.training import train

    run = tmp_path_factory.mktemp("app") / "run"
    train(TrainConfig(data=tiny_dataset, out=str(run), iterations=4, batch_size=2, val_every=4, val_objects=1,
                      val_views="1", log_every=1, device="cpu", tensorboard=False))
    eval_pipeline.main(["--checkpoint", str(run), "--data", tiny_dataset, "--views", "0,6,12", "--device", "cpu",
                        "--figures", "1", "--no-full-metrics"])
    return str(run)


@pytest.fixture(autouse=True)
def _exact_denormals():
    """Training, evaluation and prediction flush subnormal floats for the rest of their process
    (recon.runtime.flush_denormals); restore exact arithmetic after each test so that tests in the
    same worker (hypothesis refuses to run under flush-to-zero) see the process as it started."""
    yield
    torch.set_flush_denormal(False)
