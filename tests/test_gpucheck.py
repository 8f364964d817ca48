"""The one-call GPU check (pipelines.gpucheck): its dry run on CPU, and its GPU plan's code run on CPU
with the C++ kernel standing in for the CUDA one, so the command cannot rot between GPU loans."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tools import gpucheck
from tools.gpucheck.cuda_testrun import cuda_test_files, cuda_tests
from recon.ops import silhouette_ext as softras_ext
from recon.render import BackendUnavailable

REPO = Path(__file__).resolve().parent.parent


def _cpp_or_skip() -> None:
    try:
        softras_ext.load_extension("cpp")
    except BackendUnavailable as e:
        pytest.skip(str(e))


def test_dry_run_cli_without_trimesh_kaolin_nvdiffrast(tmp_path):
    """What `make gpu-check` runs on a CPU machine, with the GPU machine's missing packages blocked."""
    _cpp_or_skip()
    out = tmp_path / "check"
    code = textwrap.dedent(f"""
        import sys
        for name in ("trimesh", "kaolin", "nvdiffrast", "scipy", "hypothesis"):
            sys.modules[name] = None  # importing them now raises ImportError, as on the bare GPU machine
        from pipelines.gpucheck import main
        main(["--out", {str(out)!r}, "--dry-run"])
    """)
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "dry run: GPU parts skipped" in res.stdout
    report = json.loads((out / gpucheck.REPORT_JSON).read_text())
    assert report["dry_run"] and report["ok"]
    sections = report["sections"]
    assert list(sections) == ["environment", "build", "parity", "cuda_tests", "bench", "train"]
    assert all(s["status"] == "passed" for s in sections.values()), sections
    assert len(sections["parity"]["rows"]) == 6 and all(r["passed"] for r in sections["parity"]["rows"])
    if sections["cuda_tests"].get("collected") is not None:
        assert sections["cuda_tests"]["collected"] > 0
    assert {r["impl"] for r in sections["bench"]["rows"]} == {"torch", "cpp"}
    train = sections["train"]
    assert train["steps"] == 4 and train["impl"] == "cpp" and train["test_mean_iou"] is not None
    md = (out / gpucheck.REPORT_MD).read_text()
    assert "DRY RUN" in md and "SKIPPED" in md and "| parity | passed |" in md


def _stand_in_plan(**over) -> gpucheck.Plan:
    """GPU_PLAN's shape on CPU: the two CUDA variants served by the CUDA source emulated on CPU
    threads (softras_ext.EMULATION), small sizes."""
    emu = softras_ext.EMULATION
    base = replace(gpucheck.GPU_PLAN, device="cpu", variants=(("cuda", emu, False), ("cuda-det", emu, True)),
                   cpu_kind="cpp", parity_cases=("odd24",), tests_collect_only=True, bench_grid=((32, 2, 3),),
                   bench_repeats=1, step_batch=2, dataset=(3, 1, 1), categories=("chair", "table"), train_steps=2,
                   train_batch=2, val_views="0,", eval_views="0,", eval_max_per_category=1, expected_impl="cpp")
    return replace(base, **over)


def test_gpu_plan_code_runs_with_cpu_stand_in(tmp_path):
    _cpp_or_skip()
    try:
        softras_ext.load_extension(softras_ext.EMULATION)
    except BackendUnavailable as e:
        pytest.skip(str(e))
    lines: list[str] = []
    cfg = gpucheck.GpuCheckConfig(out=str(tmp_path / "out"), tests=False, work=str(tmp_path / "work"))
    report = gpucheck.run_gpu_check(cfg, say=lines.append, plan=_stand_in_plan())
    assert report["ok"], report["sections"]
    checks = {(r["dtype"], r["check"]) for r in report["sections"]["parity"]["rows"]}
    for dtype in ("float32", "float64"):
        assert {(dtype, "cpp vs torch (cpu)"), (dtype, "cuda vs torch (cpu)"), (dtype, "cuda-det vs torch (cpu)"),
                (dtype, "cuda-det run twice: bitwise equal"), (dtype, "cuda vs cpp")} <= checks
    bench = report["sections"]["bench"]
    assert {r["impl"] for r in bench["rows"]} == {"torch", "cuda", "cuda-det"}
    assert set(bench["ratios"]) == {"torch/cuda 32px B2 F1280", "torch/cuda-det 32px B2 F1280"}
    agreement = {r["backend"]: r for r in bench["agreement"]}
    assert agreement["softras/cpp"]["mean_abs_diff"] < 1e-5
    assert not agreement["kaolin"]["available"] and not agreement["nvdiffrast"]["available"]
    assert report["sections"]["train"]["steps"] == 2
    assert report["sections"]["cuda_tests"]["status"] == "skipped"
    assert (tmp_path / "work" / "run").is_dir()  # --work is kept
    md = (tmp_path / "out" / gpucheck.REPORT_MD).read_text()
    assert "## Backends vs softras" in md and "softras/cpp" in md


def test_parity_failure_fails_the_check(tmp_path, monkeypatch):
    """Exit status 1 and a FAILED report when a kernel misses the tolerance; later sections still run."""
    _cpp_or_skip()
    from pipelines.gpucheck import main

    monkeypatch.setattr(softras_ext, "PARITY_FWD_ATOL", {torch.float32: -1.0, torch.float64: -1.0})
    monkeypatch.setattr(gpucheck.plans, "DRY_PLAN", replace(gpucheck.DRY_PLAN, parity_cases=("odd24",), bench_grid=(),
                                                            train_steps=1))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        main(["--out", str(out), "--dry-run", "--no-tests"])
    assert e.value.code == 1
    report = json.loads((out / gpucheck.REPORT_JSON).read_text())
    assert not report["ok"] and report["sections"]["parity"]["status"] == "failed"
    assert report["sections"]["train"]["status"] == "passed"
    assert "**FAILED**" in (out / gpucheck.REPORT_MD).read_text()


def test_cuda_tests_skipped_without_pytest(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pytest" else real(name, *a))
    rec = cuda_tests(tmp_path, collect_only=False, timeout_s=60)
    assert rec["status"] == "skipped" and "pytest" in rec["reason"]


def test_cuda_test_files_are_found():
    names = {p.name for p in cuda_test_files()}
    assert {"test_render_ext.py", "test_render_backends.py"} <= names


@pytest.mark.parametrize("argv,words", [(["--train-steps", "0"], "--train-steps"), (["--budget-s", "0"], "--budget-s"),
                                        (["--out", ""], "--out")])
def test_bad_flags_are_one_line_errors(argv, words, capsys):
    from pipelines.gpucheck import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and words in err and len(err.splitlines()) == 1
