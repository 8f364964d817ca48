"""DDP on CPU (gloo) under torchrun: ranks stay identical, read disjoint data, only rank 0 writes,
and --resume works under torchrun (reaching the same parameters as an uninterrupted DDP run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recon.checkpoint import load_checkpoint
from recon.runs import CKPT_DIR, step_checkpoints
from recon.training import step_items

REPO = Path(__file__).resolve().parents[1]
BATCH, WORLD = 2, 2


def _torchrun(data: str, out: Path, dump: Path, iterations: int, *extra: str) -> subprocess.CompletedProcess:
    # tests/ddp_worker.py is pipelines.train plus a record of each rank's items and final parameters
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
           str(REPO / "tests" / "ddp_worker.py"), str(dump), "--data", data, "--out", str(out),
           "--iterations", str(iterations),
           "--batch-size", str(BATCH), "--val-every", "4", "--val-objects", "1", "--val-views", "1",
           "--log-every", "1", "--device", "cpu", "--no-tensorboard", "--threads", "1", "--seed", "1",
           "--decay-at", "1", "--encoder", "attention", *extra]
    # decay-at 1: the schedule does not depend on --iterations; attention: the smallest encoder (fast)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _dumps(dump: Path) -> list[dict]:
    return [torch.load(dump / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def _params(d: dict) -> dict[str, torch.Tensor]:
    # BatchNorm running statistics are per rank by design (DDP broadcasts rank 0's before each forward)
    return {k: v for k, v in d["params"].items() if "running_" not in k and "num_batches" not in k}


def _assert_ranks_identical(dumps: list[dict]) -> None:
    p0, p1 = _params(dumps[0]), _params(dumps[1])
    assert p0.keys() == p1.keys() and len(p0) > 10
    for k in p0:
        assert torch.equal(p0[k], p1[k]), f"rank 1 differs from rank 0 in {k}"


def _metrics(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(set(lines)), "duplicated metrics lines"
    return [json.loads(x) for x in lines]


@pytest.fixture(scope="module")
def ddp_runs(tiny_dataset: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 4-step run of 2 ranks, then the same run resumed under torchrun up to step 6."""
    tmp = tmp_path_factory.mktemp("ddp")
    out, dump = tmp / "run", tmp / "dump"
    first = _torchrun(tiny_dataset, out, dump / "a", 4)
    first_dumps, first_files = _dumps(dump / "a"), sorted(p.name for p in (out / CKPT_DIR).iterdir())
    first_metrics = _metrics(out)
    resumed = _torchrun(tiny_dataset, out, dump / "b", 6, "--resume", "--val-every", "2")
    return dict(tmp=tmp, out=out, first=first, first_dumps=first_dumps, first_files=first_files,
                first_metrics=first_metrics, resumed=resumed, resumed_dumps=_dumps(dump / "b"))


def test_torchrun_ranks_agree_read_disjoint_data_and_only_rank0_writes(ddp_runs: dict) -> None:
    dumps = ddp_runs["first_dumps"]
    assert [d["rank"] for d in dumps] == [0, 1] and all(d["world"] == WORLD and d["step"] == 4 for d in dumps)
    _assert_ranks_identical(dumps)
    # disjoint streams: rank r read exactly the items the sampler contract gives it, and no item twice
    for r, d in enumerate(dumps):
        assert d["items"].tolist() == [step_items(s, BATCH, r, WORLD) for s in range(4)]
    seen = [set(d["items"].flatten().tolist()) for d in dumps]
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(4 * BATCH * WORLD))
    # one writer: a single step checkpoint for the single val point, one metrics line per step
    assert ddp_runs["first_files"] == ["step-00000004.pt"]
    recs = ddp_runs["first_metrics"]
    assert [r["step"] for r in recs if "loss" in r] == [1, 2, 3, 4]
    assert [r["step"] for r in recs if "val_iou" in r] == [4]
    ck = load_checkpoint(ddp_runs["out"] / CKPT_DIR / "step-00000004.pt")
    assert ck["world_size"] == WORLD and ck["step"] == 4
    for k, v in _params(dumps[0]).items():
        assert torch.equal(ck["model"][k], v)


def test_torchrun_resume(ddp_runs: dict) -> None:
    out, proc = ddp_runs["out"], ddp_runs["resumed"]
    assert "resumed from" in proc.stdout and "at step 4" in " ".join(proc.stdout.split())
    dumps = ddp_runs["resumed_dumps"]
    _assert_ranks_identical(dumps)
    for r, d in enumerate(dumps):
        assert d["items"].tolist() == [step_items(s, BATCH, r, WORLD) for s in (4, 5)]
    assert [s for s, _ in step_checkpoints(out)] == [6, 4]
    assert [r["step"] for r in _metrics(out) if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert load_checkpoint(out / "last.pt")["step"] == 6


@pytest.mark.slow
def test_torchrun_resumed_equals_uninterrupted(tiny_dataset: str, ddp_runs: dict) -> None:
    tmp = ddp_runs["tmp"]
    _torchrun(tiny_dataset, tmp / "full", tmp / "dump" / "c", 6, "--val-every", "2")
    full, resumed = _params(_dumps(tmp / "dump" / "c")[0]), _params(ddp_runs["resumed_dumps"][0])
    for k, v in full.items():
        assert torch.equal(v, resumed[k]), f"resumed DDP run differs in {k}"
