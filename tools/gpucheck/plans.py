"""What a GPU check runs: the GPU and dry-run plans (its settings, ``GpuCheckConfig``, are the
command's flags: ``recon.config``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from recon.config import GpuCheckConfig

__all__ = ["GpuCheckConfig", "Plan", "GPU_PLAN", "DRY_PLAN", "REPO_ROOT", "ERROR_TAIL"]

REPO_ROOT = Path(__file__).resolve().parents[2]
ERROR_TAIL = 3000  # characters of an error message or log kept in the report


@dataclass(frozen=True)
class Plan:
    """What a run measures; the GPU run and the dry run differ only here. (Tests run the GPU plan's
    code on CPU by swapping the device and the kernel kinds.)"""

    device: str                                    # device of the kernels under test
    variants: tuple[tuple[str, str, bool], ...]    # (label, extension kind, deterministic backward)
    cpu_kind: str | None                           # kind for the C++ kernel on CPU tensors, checked against
                                                   # the variants too (None: the variants are the CPU kernel)
    parity_cases: tuple[str, ...]                  # keys of PARITY_CASES
    tests_collect_only: bool                       # only collect the CUDA tests (no device to run them)
    bench_grid: tuple[tuple[int, int, int], ...]   # (image size, batch, icosphere subdivisions)
    bench_repeats: int
    other_backends: bool                           # kaolin / nvdiffrast rows and silhouette agreement
    step_batch: int                                # training-step split batch
    dataset: tuple[int, int, int]                  # objects per category (train, val, test)
    categories: tuple[str, ...] | None             # None: all
    train_steps: int | None                        # None: GpuCheckConfig.train_steps
    train_batch: int
    val_views: str
    eval_views: str
    eval_max_per_category: int  # 0: all
    full_metrics: bool
    expected_impl: str                             # softras implementation the training must use


GPU_PLAN = Plan(
    device="cuda", variants=(("cuda", "cuda", False), ("cuda-det", "cuda", True)),
    cpu_kind="cuda",  # the CUDA extension holds the C++ kernel too: no second build
    parity_cases=("sphere32", "sphere64", "odd24", "large128", "large256"), tests_collect_only=False,
    bench_grid=tuple((s, b, 3) for s in (64, 128) for b in (1, 16, 64, 256)) + ((128, 16, 5), (256, 16, 5)),
    bench_repeats=5, other_backends=True, step_batch=64, dataset=(24, 4, 4), categories=None, train_steps=None,
    train_batch=16, val_views="0,12", eval_views="all", eval_max_per_category=0, full_metrics=True,
    expected_impl="cuda")
DRY_PLAN = Plan(
    device="cpu", variants=(("cpp", "cpp", False),), cpu_kind=None, parity_cases=("sphere32", "sphere64", "odd24"),
    tests_collect_only=True, bench_grid=((32, 1, 3), (32, 4, 3), (64, 4, 3)), bench_repeats=2, other_backends=False,
    step_batch=2, dataset=(3, 1, 1), categories=("chair", "table"), train_steps=4, train_batch=2, val_views="0,",
    eval_views="0,", eval_max_per_category=1, full_metrics=False, expected_impl="cpp")
