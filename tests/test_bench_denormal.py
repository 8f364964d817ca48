"""The denormal benchmark (tools.bench_denormal) counts subnormal values and times both settings."""

from __future__ import annotations

import torch

from tools.bench_denormal import bench_denormals, count_subnormals, denormal_rows


def test_count_subnormals():
    t = torch.tensor([0.0, 1e-39, -1e-40, 1e-30, 1.0])  # two float32 subnormals
    half = torch.tensor([1e-6, 1.0], dtype=torch.float16)  # 1e-6 is subnormal in fp16 (tiny ~6.1e-5)
    assert count_subnormals([t, half, torch.arange(3)]) == (3, 7)


def test_bench_denormals_measures_both_settings_at_two_points(tiny_dataset):
    records = bench_denormals(tiny_dataset, steps=2, timed=2, batch_size=2, threads=1, precision="fp32")
    assert [r.point for r in records] == ["init", "after 2 steps"] and [r.step for r in records] == [0, 2]
    assert all(r.off_ms > 0 and r.on_ms > 0 and 0 <= r.subnormals <= r.values for r in records)
    assert records[0].values > 1_000_000  # the weights (and, later, Adam's moments) are counted
    assert records[1].values > records[0].values  # Adam's moments exist after training steps
    assert denormal_rows(records)[0]["speedup"] == records[0].speedup
