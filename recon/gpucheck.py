"""The one-call GPU check behind ``python -m pipelines.gpucheck`` (``make gpu-check``).

GPU machines are lent now and then, for minutes, with no network: this runs everything that needs
one in a single command sized to finish in about 7 minutes on one H100/H200, and writes
``gpu_check.json`` and ``gpu_check.md`` to the output directory after every section (a run cut
short still leaves what it measured). Sections, in order:

1. ``environment``: device, driver, torch / CUDA / cuDNN / nvcc versions.
2. ``build``: JIT build (or cache load) of the CUDA kernel, timed.
3. ``parity``: the CUDA kernel (atomic and deterministic backward) and the C++ kernel against the
   torch reference, CUDA against C++, float32 and float64, forward values and gradients, at the
   tolerances of the CPU tests (``softras_ext.PARITY_*``); the deterministic backward run twice
   must agree bit for bit. Meshes up to 20480 faces at 256 px.
4. ``cuda_tests``: every ``@pytest.mark.cuda`` test, in a pytest subprocess.
5. ``bench``: torch reference on CUDA vs our kernel (both backward modes) at batch 1/16/64/256 and
   64/128 px, a 20480-face mesh at 128/256 px, kaolin / nvdiffrast rows when importable, their
   silhouettes against softras' (mean |difference|), and the training-step split.
6. ``train``: 300 steps on a small synthetic dataset and its evaluation, on CUDA.

Without CUDA (or with ``dry_run``) the CPU parts run instead, small: the C++ kernel's parity, a few
CPU bench rows and a 4-step training; the GPU parts are reported as skipped. The check fails
(``report["ok"]`` False, exit status 1) on any parity failure, failed CUDA test or section error.

Importing this module (and running it) needs only torch, numpy, h5py, rich, pillow and matplotlib:
no trimesh, kaolin, nvdiffrast or pytest (the CUDA tests are skipped, and said so, without pytest).
"""

from __future__ import annotations

import importlib.util
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from recon import cameras
from recon.benchmark import time_fn
from recon.io import atomic_write_bytes, check_output_dir, write_json
from recon.mesh import icosphere

__all__ = ["GpuCheckConfig", "Plan", "GPU_PLAN", "DRY_PLAN", "PARITY_CASES", "run_gpu_check", "markdown_report",
           "REPORT_JSON", "REPORT_MD"]

REPORT_JSON = "gpu_check.json"
REPORT_MD = "gpu_check.md"
REPO_ROOT = Path(__file__).resolve().parent.parent
_ERROR_TAIL = 3000


@dataclass
class GpuCheckConfig:
    """Settings of ``python -m pipelines.gpucheck``."""

    out: str = "gpu_check"          # report directory (gpu_check.json, gpu_check.md, cuda_tests.*)
    dry_run: bool = False           # CPU parts only; chosen automatically when CUDA is unavailable
    train_steps: int = 300          # GPU training length (the dry run trains 4 steps)
    tests: bool = True              # run the CUDA-marked tests (pytest subprocess)
    work: str | None = None         # scratch directory for the dataset and the run (default: a temp dir)
    budget_s: float = 420.0         # soft limit: sections that would start after it are skipped

    def validate(self) -> None:
        """One-line ValueError naming the flag for a bad value (before any work)."""
        if not self.out.strip():
            raise ValueError("--out must name a directory, got an empty string")
        check_output_dir(self.out, "--out")
        if self.work is not None:
            check_output_dir(self.work, "--work")
        if self.train_steps < 1:
            raise ValueError(f"--train-steps must be >= 1, got {self.train_steps}")
        if not (self.budget_s > 0 and math.isfinite(self.budget_s)):
            raise ValueError(f"--budget-s must be a positive number of seconds, got {self.budget_s}")


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
    eval_max_per_category: int | None
    full_metrics: bool
    expected_impl: str                             # softras implementation the training must use


GPU_PLAN = Plan(
    device="cuda", variants=(("cuda", "cuda", False), ("cuda-det", "cuda", True)),
    cpu_kind="cuda",  # the CUDA extension holds the C++ kernel too: no second build
    parity_cases=("sphere32", "sphere64", "odd24", "large128", "large256"), tests_collect_only=False,
    bench_grid=tuple((s, b, 3) for s in (64, 128) for b in (1, 16, 64, 256)) + ((128, 16, 5), (256, 16, 5)),
    bench_repeats=5, other_backends=True, step_batch=64, dataset=(24, 4, 4), categories=None, train_steps=None,
    train_batch=16, val_views="0,12", eval_views="all", eval_max_per_category=None, full_metrics=True,
    expected_impl="cuda")
DRY_PLAN = Plan(
    device="cpu", variants=(("cpp", "cpp", False),), cpu_kind=None, parity_cases=("sphere32", "sphere64", "odd24"),
    tests_collect_only=True, bench_grid=((32, 1, 3), (32, 4, 3), (64, 4, 3)), bench_repeats=2, other_backends=False,
    step_batch=2, dataset=(3, 1, 1), categories=("chair", "table"), train_steps=4, train_batch=2, val_views="0,",
    eval_views="0,", eval_max_per_category=1, full_metrics=False, expected_impl="cpp")


# ----------------------------------------------------------------------------------------------
# meshes


def deformed_spheres(batch: int, subdivisions: int, device: torch.device | str, seed: int = 0,
                     dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Smoothly deformed icospheres of radius ~0.3-0.45 (``subdivisions`` 3: 1280 faces, 5: 20480).

    Returns:
        verts (B, V, 3), faces (F, 3) int64, on ``device``.
    """
    g = torch.Generator().manual_seed(seed)
    v, f = icosphere(subdivisions)
    v = v.to(torch.float64)
    scale = 0.3 + 0.15 * torch.rand(batch, 1, 3, generator=g, dtype=torch.float64)
    bumps = 1 + 0.15 * torch.sin(3 * v[None] @ torch.randn(batch, 3, 3, generator=g, dtype=torch.float64))
    return (v[None] * scale * bumps).to(device=device, dtype=dtype), f.to(device)


def projected(batch: int, subdivisions: int, device: torch.device | str, seed: int = 0,
              dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """``deformed_spheres`` seen from views ``0, 1, 2, ...``: (B, V, 3) NDC vertices and faces."""
    verts, faces = deformed_spheres(batch, subdivisions, "cpu", seed, torch.float64)
    az = cameras.view_azimuths(torch.arange(batch) % cameras.NUM_VIEWS).to(torch.float64)
    return cameras.project(verts, az).to(device=device, dtype=dtype), faces.to(device)


def odd_faces(device: torch.device | str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Random triangles with a zero-area face, a repeated-vertex face and one behind the camera."""
    g = torch.Generator().manual_seed(7)
    xy = torch.rand(2, 12, 2, generator=g, dtype=torch.float64) * 1.6 - 0.8
    z = 1.0 + torch.rand(2, 12, 1, generator=g, dtype=torch.float64)
    verts = torch.cat([xy, z], dim=-1)
    verts[:, 9, :2] = 0.5 * (verts[:, 10, :2] + verts[:, 11, :2])
    verts[:, 8, 2] = -0.5
    faces = torch.tensor([[0, 1, 2], [3, 4, 5], [2, 6, 7], [4, 4, 5], [8, 6, 1]])
    return verts.to(device=device, dtype=dtype), faces.to(device)


# ----------------------------------------------------------------------------------------------
# sections


def environment() -> dict[str, Any]:
    """Versions and the device."""
    info: dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(), "nvcc": _first_line_with(["nvcc", "--version"], "release"),
        "driver": _first_line_with(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], ""),
        "git_commit": _first_line_with(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], ""),
        "git_dirty": _first_line_with(["git", "-C", str(REPO_ROOT), "status", "--porcelain"], "") is not None,
        "packages": {m: _version_of(m) for m in ("numpy", "h5py", "kaolin", "nvdiffrast", "pytest", "trimesh")},
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(device=props.name, capability=f"{props.major}.{props.minor}",
                    memory_gib=round(props.total_memory / 2**30, 1), device_count=torch.cuda.device_count())
    return info


def _first_line_with(cmd: list[str], needle: str) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [ln.strip() for ln in res.stdout.splitlines() if needle in ln and ln.strip()]
    return lines[0] if res.returncode == 0 and lines else None


def _version_of(module: str) -> str | None:
    try:
        if importlib.util.find_spec(module) is None:
            return None
    except (ImportError, ValueError):
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return "present"


def build(kind: str) -> dict[str, Any]:
    """Build (or load from the cache) the ``kind`` kernel; raises BackendUnavailable on failure."""
    from recon.render import softras_ext

    t = time.perf_counter()
    module = softras_ext.load_extension(kind)
    simd = getattr(module, "cpu_simd", None)
    return {"kind": kind, "seconds": round(time.perf_counter() - t, 2), "with_cuda": bool(module.with_cuda),
            "cpu_simd": simd() if simd else None}


def _grad_of(fn: Callable[[torch.Tensor], torch.Tensor], verts: torch.Tensor, weight: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    v = verts.detach().clone().requires_grad_(True)
    out = fn(v)
    grad, = torch.autograd.grad((out * weight).sum(), v)
    return out.detach(), grad


# name -> (description, mesh maker (device, dtype) -> (verts_ndc, faces), image size, sigma)
PARITY_CASES: dict[str, tuple[str, Callable[[str, torch.dtype], tuple[torch.Tensor, torch.Tensor]], int, float]] = {
    "sphere32": ("1280 faces, B3, 32 px, sigma 1e-3", lambda d, t: projected(3, 3, d, 1, t), 32, 1e-3),
    "sphere64": ("1280 faces, B3, 64 px, sigma 1e-4", lambda d, t: projected(3, 3, d, 2, t), 64, 1e-4),
    "odd24": ("odd faces, B2, 24 px, sigma 3e-3", odd_faces, 24, 3e-3),
    "large128": ("20480 faces, B2, 128 px, sigma 1e-4", lambda d, t: projected(2, 5, d, 3, t), 128, 1e-4),
    "large256": ("20480 faces, B2, 256 px, sigma 1e-4", lambda d, t: projected(2, 5, d, 4, t), 256, 1e-4),
}


def parity(plan: Plan) -> dict[str, Any]:
    """Every kernel variant against the torch reference on its device, the C++ kernel on CPU too
    (``plan.cpu_kind``) and the first variant against it; deterministic variants run twice."""
    from recon.render import RasterSettings, softras_ext
    from recon.render.softras_torch import soft_silhouette_torch

    fwd_tol, grad_rtol = softras_ext.PARITY_FWD_ATOL, softras_ext.PARITY_GRAD_RTOL
    runs = [(plan.device, plan.variants)]
    if plan.cpu_kind is not None:
        runs.insert(0, ("cpu", (("cpp", plan.cpu_kind, False),)))
    rows: list[dict[str, Any]] = []
    for key in plan.parity_cases:
        name, make, size, sigma = PARITY_CASES[key]
        st = RasterSettings(image_size=size, sigma=sigma)
        for dtype in (torch.float32, torch.float64):
            results: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
            for device, variants in runs:
                verts, faces = make(device, dtype)
                weight = torch.randn(verts.shape[0], size, size, generator=torch.Generator().manual_seed(0),
                                     dtype=dtype).to(device)
                ref = _grad_of(lambda v: soft_silhouette_torch(v, faces, size, sigma, st.cutoff_sq), verts, weight)
                for label, kind, det in variants:
                    def kernel(v: torch.Tensor, kind: str = kind, det: bool = det) -> torch.Tensor:
                        return softras_ext.soft_silhouette_ext(v, faces, size, sigma, st.cutoff_sq, kind=kind,
                                                               deterministic=det)

                    out = _grad_of(kernel, verts, weight)
                    results[label] = (out[0].cpu(), out[1].cpu())
                    rows.append(_parity_row(name, dtype, f"{label} vs torch ({device})", out, ref, fwd_tol, grad_rtol))
                    if det:
                        again = _grad_of(kernel, verts, weight)
                        same = torch.equal(again[0], out[0]) and torch.equal(again[1], out[1])
                        rows.append({"case": name, "dtype": str(dtype).replace("torch.", ""),
                                     "check": f"{label} run twice: bitwise equal", "passed": bool(same)})
            if plan.cpu_kind is not None:
                first = plan.variants[0][0]
                rows.append(_parity_row(name, dtype, f"{first} vs cpp", results[first], results["cpp"], fwd_tol,
                                        grad_rtol))
    failed = [r for r in rows if not r["passed"]]
    return {"rows": rows, "failed": len(failed), "status": "failed" if failed else "passed",
            "tolerances": {"fwd_max_abs": {str(k).replace("torch.", ""): v for k, v in fwd_tol.items()},
                           "grad_rel_l2": grad_rtol}}


def _parity_row(case: str, dtype: torch.dtype, check: str, out: tuple[torch.Tensor, torch.Tensor],
                ref: tuple[torch.Tensor, torch.Tensor], fwd_tol: dict, grad_rtol: float) -> dict[str, Any]:
    (s, g), (s_ref, g_ref) = (t.cpu() for t in out), (t.cpu() for t in ref)
    fwd = float((s - s_ref).abs().max()) if s.numel() else 0.0
    rel = float((g - g_ref).norm() / g_ref.norm().clamp(min=1e-30))
    z_zero = bool((g[..., 2] == 0).all())
    ok = fwd <= fwd_tol[dtype] and rel <= grad_rtol and z_zero and bool(torch.isfinite(g).all())
    return {"case": case, "dtype": str(dtype).replace("torch.", ""), "check": check, "fwd_max_abs": fwd,
            "grad_rel_l2": rel, "passed": ok}


def cuda_test_files() -> list[Path]:
    """Test files with a ``pytest.mark.cuda`` test."""
    return sorted(p for p in (REPO_ROOT / "tests").glob("test_*.py") if "mark.cuda" in p.read_text())


def cuda_tests(out_dir: Path, collect_only: bool, timeout_s: float) -> dict[str, Any]:
    """Run (or, for the dry run, collect) the CUDA-marked tests in a pytest subprocess."""
    if importlib.util.find_spec("pytest") is None:
        return {"status": "skipped", "reason": "pytest is not installed here (carry it in: `make gpu-bundle`, "
                                               "then put .gpu_vendor on PYTHONPATH; scripts/gpu_check.sh does)"}
    files = [str(p.relative_to(REPO_ROOT)) for p in cuda_test_files()]
    xml = out_dir / "cuda_tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", *files]
    cmd += ["--collect-only"] if collect_only else [f"--junitxml={xml}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    t = time.perf_counter()
    try:
        res = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        atomic_write_bytes(out_dir / "cuda_tests.log", out.encode())
        return {"status": "error", "reason": f"pytest did not finish within {timeout_s:.0f} s", "files": files}
    log = res.stdout + res.stderr
    atomic_write_bytes(out_dir / "cuda_tests.log", log.encode())
    rec: dict[str, Any] = {"files": files, "command": " ".join(cmd[1:]), "returncode": res.returncode,
                           "seconds": round(time.perf_counter() - t, 1)}
    if collect_only:
        m = re.search(r"(\d+)(?:/\d+)? tests? collected", log) or re.search(r"(\d+) selected", log)
        rec.update(status="passed" if res.returncode == 0 else "error", collected=int(m.group(1)) if m else None)
        if res.returncode != 0:
            rec["reason"] = log[-_ERROR_TAIL:]
        return rec
    counts = _junit_counts(xml)
    rec.update(counts)
    bad = counts.get("failures", 0) + counts.get("errors", 0)
    if res.returncode not in (0, 5) and not bad:  # 5: nothing collected
        rec.update(status="error", reason=log[-_ERROR_TAIL:])
    else:
        rec["status"] = "failed" if bad else "passed"
    return rec


def _junit_counts(xml: Path) -> dict[str, Any]:
    if not xml.is_file():
        return {}
    root = ET.parse(xml).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    counts["failed_tests"] = [f"{c.get('classname')}::{c.get('name')}" for s in suites for c in s.iter("testcase")
                              if c.find("failure") is not None or c.find("error") is not None]
    return counts


def _bench_pair(fn: Callable[[torch.Tensor], torch.Tensor], ndc: torch.Tensor, device: torch.device,
                repeats: int) -> tuple[float, float]:
    """(forward ms, forward+backward ms), medians."""
    fwd = time_fn(lambda: fn(ndc), device, repeats)

    def fb() -> None:
        x = ndc.clone().requires_grad_(True)
        fn(x).sum().backward()

    return fwd, time_fn(fb, device, repeats)


def bench(plan: Plan, deadline: float) -> dict[str, Any]:
    """Renderer timings, backend agreement and the training-step split (see module doc)."""
    from recon.benchmark import bench_train_step
    from recon.render import RasterSettings, softras_ext
    from recon.render.softras_torch import soft_silhouette_torch

    device = torch.device(plan.device)
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for size, batch, sub in plan.bench_grid:
        if time.time() > deadline:
            skipped.append(f"{size} px, batch {batch}, {20 * 4 ** sub} faces (time budget)")
            continue
        ndc, faces = projected(batch, sub, device, seed=batch)
        st = RasterSettings(image_size=size)

        def reference(v: torch.Tensor) -> torch.Tensor:
            return soft_silhouette_torch(v, faces, size, st.sigma, st.cutoff_sq)

        impls: list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = [("torch", reference)]
        for label, kind, det in plan.variants:
            def kernel(v: torch.Tensor, kind: str = kind, det: bool = det) -> torch.Tensor:
                return softras_ext.soft_silhouette_ext(v, faces, size, st.sigma, st.cutoff_sq, kind=kind,
                                                       deterministic=det)

            impls.append((label, kernel))
        for label, fn in impls:
            fwd, fb = _bench_pair(fn, ndc, device, plan.bench_repeats)
            rows.append({"impl": label, "device": device.type, "size": size, "batch": batch, "faces": faces.shape[0],
                         "fwd_ms": fwd, "fwdbwd_ms": fb, "per_image_fwdbwd_ms": fb / batch})
    agreement: list[dict[str, Any]] = []
    if plan.other_backends:
        rows += _other_backend_rows(device, plan.bench_repeats)
        agreement = backend_agreement(device)
    step = None
    if time.time() < deadline:
        step = bench_train_step(batch=plan.step_batch, device=device.type, repeats=3 if plan.bench_repeats > 2 else 1)
    else:
        skipped.append("training step (time budget)")
    return {"rows": rows, "ratios": _bench_ratios(rows), "train_step": step, "agreement": agreement,
            "skipped": skipped, "status": "passed"}


def _other_backend_rows(device: torch.device, repeats: int) -> list[dict[str, Any]]:
    from recon.render import BackendUnavailable, get_renderer

    rows = []
    for name in ("kaolin", "nvdiffrast"):
        try:
            r = get_renderer(name, image_size=64, device=str(device))
        except BackendUnavailable:
            continue
        for batch in (16, 64):
            ndc, faces = projected(batch, 3, device, seed=batch)
            fwd, fb = _bench_pair(lambda v: r.rasterize_ndc(v, faces), ndc, device, repeats)
            rows.append({"impl": name, "device": device.type, "size": 64, "batch": batch, "faces": faces.shape[0],
                         "fwd_ms": fwd, "fwdbwd_ms": fb, "per_image_fwdbwd_ms": fb / batch})
    return rows


def _bench_ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    """torch / kernel forward+backward time at equal size, batch and mesh."""
    by = {(r["impl"], r["size"], r["batch"], r["faces"]): r["fwdbwd_ms"] for r in rows}
    out = {}
    for (impl, size, batch, nf), ms in by.items():
        ref = by.get(("torch", size, batch, nf))
        if impl not in ("torch", "kaolin", "nvdiffrast") and ref:
            out[f"torch/{impl} {size}px B{batch} F{nf}"] = ref / ms
    return out


def backend_agreement(device: torch.device, batch: int = 16, size: int = 64) -> list[dict[str, Any]]:
    """Each usable backend's silhouettes against softras' (torch reference) on the same deformed
    spheres, 64 px, sigma 1e-4: mean |difference| over all pixels and IoU of the > 0.5 masks."""
    from recon.render import BackendUnavailable, get_renderer

    verts, faces = deformed_spheres(batch, 3, device, seed=11)
    az = cameras.view_azimuths(torch.arange(batch) % cameras.NUM_VIEWS).to(device)
    ref = get_renderer("softras", impl="torch", image_size=size, device=str(device)).silhouettes(verts, faces, az)
    rows = []
    kernel = "cuda" if device.type == "cuda" else "cpp"
    for name, opts in (("softras", {"impl": kernel}), ("kaolin", {}), ("nvdiffrast", {})):
        try:
            sil = get_renderer(name, image_size=size, device=str(device), **opts).silhouettes(verts, faces, az)
        except BackendUnavailable as e:
            rows.append({"backend": name, "available": False, "reason": str(e).splitlines()[0][:300]})
            continue
        hard, hard_ref = sil > 0.5, ref > 0.5
        rows.append({"backend": f"softras/{kernel}" if name == "softras" else name, "available": True,
                     "mean_abs_diff": float((sil - ref).abs().mean()),
                     "iou_vs_softras": float((hard & hard_ref).sum() / (hard | hard_ref).sum().clamp(min=1)),
                     "mean_silhouette": float(sil.mean()), "mean_silhouette_softras": float(ref.mean())})
    return rows


def train_and_eval(plan: Plan, work: Path, steps: int) -> dict[str, Any]:
    """A short training on a small synthetic dataset and its evaluation (library API only)."""
    from recon.config import EvalConfig, TrainConfig
    from recon.data.synthetic import build_synthetic
    from recon.evaluate import evaluate_run
    from recon.runs import read_metrics
    from recon.training import TrainHooks, train

    device = plan.device
    data, run = work / "synthetic.h5", work / "run"
    t = time.perf_counter()
    build_synthetic(data, per_category=plan.dataset, categories=list(plan.categories) if plan.categories else None,
                    seed=0, workers=min(8, os.cpu_count() or 1) if plan.device == "cuda" else 1, progress=False)
    data_s = time.perf_counter() - t
    steps = plan.train_steps or steps
    cfg = TrainConfig(data=str(data), out=str(run), iterations=steps, batch_size=plan.train_batch, lr=5e-4,
                      device=device, impl="auto", val_every=steps, val_objects=2, val_views=plan.val_views,
                      log_every=max(1, min(10, steps // 4)), tensorboard=False, seed=0)

    class Watch(TrainHooks):
        """Remembers the trainer, to read which softras implementation it rendered with."""
        trainer = None

        def on_start(self, trainer) -> None:
            self.trainer = trainer

    watch = Watch()
    t = time.perf_counter()
    summary = train(cfg, watch)
    train_s = time.perf_counter() - t
    impl = getattr(getattr(watch.trainer, "renderer", None), "impl", None)
    losses = [m["loss"] for m in read_metrics(run) if "loss" in m]
    ecfg = EvalConfig(checkpoint=str(run), data=str(data), split="test", views=plan.eval_views, device=device,
                      max_per_category=plan.eval_max_per_category, full_metrics=plan.full_metrics, figures=0,
                      json=str(work / "eval_test.json"))
    t = time.perf_counter()
    record = evaluate_run(ecfg)
    eval_s = time.perf_counter() - t
    baselines = record.get("baselines", {})
    rec = {"device": device, "dataset_seconds": round(data_s, 1), "steps": summary.get("step"),
           "batch_size": cfg.batch_size, "train_seconds": round(train_s, 1),
           "steps_per_second": round(steps / train_s, 2) if train_s > 0 else None, "impl": impl,
           "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
           "best_val_iou": summary.get("best_val_iou"), "eval_seconds": round(eval_s, 1),
           "test_mean_iou": record.get("mean_iou"), "test_mean_loss": record.get("mean_loss"),
           "template_iou": baselines.get("template", {}).get("mean_iou"),
           "mean_shape_iou": baselines.get("mean_shape", {}).get("mean_iou")}
    finite = all(isinstance(x, (int, float)) and math.isfinite(x) for x in losses) and bool(losses)
    problems = []
    if rec["steps"] != steps:
        problems.append(f"trained {rec['steps']} of {steps} steps")
    if not finite:
        problems.append("non-finite or missing losses")
    if rec["impl"] != plan.expected_impl:
        problems.append(f"trained with softras impl {rec['impl']!r}, expected {plan.expected_impl!r}")
    rec["status"] = "failed" if problems else "passed"
    if problems:
        rec["reason"] = "; ".join(problems)
    return rec


# ----------------------------------------------------------------------------------------------
# driver and report


def run_gpu_check(cfg: GpuCheckConfig, say: Callable[[str], None] = print, plan: Plan | None = None
                  ) -> dict[str, Any]:
    """Run every section (see module doc), writing the report after each; returns it.

    ``plan`` defaults to ``GPU_PLAN``, or ``DRY_PLAN`` for a dry run / without CUDA.
    ``report["ok"]`` is False when a parity check or a CUDA test failed or a section raised.
    """
    cfg.validate()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    dry = cfg.dry_run or not torch.cuda.is_available()
    plan = plan or (DRY_PLAN if dry else GPU_PLAN)
    start = time.time()
    deadline = start + cfg.budget_s
    report: dict[str, Any] = {"dry_run": dry, "config": asdict(cfg), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                              "sections": {}, "ok": True}
    if dry:
        why = "--dry-run" if cfg.dry_run else "CUDA is not available here"
        report["note"] = (f"DRY RUN ({why}): CPU parts only (C++ kernel parity, small CPU bench, 4-step training); "
                          f"the GPU parts (CUDA build, CUDA parity, CUDA tests, CUDA bench, CUDA training) were "
                          f"SKIPPED")
        say(report["note"])
    scratch = Path(cfg.work) if cfg.work else Path(tempfile.mkdtemp(prefix="recon-gpucheck-"))
    scratch.mkdir(parents=True, exist_ok=True)

    def section(name: str, fn: Callable[[], dict[str, Any]], optional: bool = True) -> None:
        if optional and time.time() > deadline:
            rec: dict[str, Any] = {"status": "skipped", "reason": f"time budget of {cfg.budget_s:.0f} s used up"}
        else:
            say(f"[gpucheck] {name} ...")
            t = time.perf_counter()
            try:
                rec = fn()
                rec.setdefault("status", "passed")
            except Exception as e:  # noqa: BLE001 - every failure is reported, the other sections still run
                rec = {"status": "error", "reason": f"{type(e).__name__}: {e}"[-_ERROR_TAIL:],
                       "traceback": traceback.format_exc()[-_ERROR_TAIL:]}
            rec["seconds"] = round(time.perf_counter() - t, 1)
        report["sections"][name] = rec
        report["ok"] = all(s["status"] in ("passed", "skipped") for s in report["sections"].values())
        report["elapsed_s"] = round(time.time() - start, 1)
        say(f"[gpucheck] {name}: {rec['status']}" + (f" ({rec['reason'].splitlines()[0][:200]})"
                                                     if rec.get("reason") else "") + f" [{rec['seconds']} s]")
        write_report(report, out)

    try:
        section("environment", environment, optional=False)
        kinds = sorted({kind for _, kind, _ in plan.variants} | ({plan.cpu_kind} if plan.cpu_kind else set()))
        section("build", lambda: {"kernels": [build(kind) for kind in kinds]}, optional=False)
        section("parity", lambda: parity(plan), optional=False)
        if not cfg.tests:
            report["sections"]["cuda_tests"] = {"status": "skipped", "reason": "--no-tests", "seconds": 0}
        else:
            section("cuda_tests", lambda: cuda_tests(out, collect_only=plan.tests_collect_only,
                                                     timeout_s=max(60.0, min(300.0, deadline - time.time()))))
        section("bench", lambda: bench(plan, deadline))
        section("train", lambda: train_and_eval(plan, scratch, cfg.train_steps))
    finally:
        if not cfg.work:
            shutil.rmtree(scratch, ignore_errors=True)
    report["elapsed_s"] = round(time.time() - start, 1)
    write_report(report, out)
    return report


def write_report(report: dict[str, Any], out: Path) -> None:
    """``gpu_check.json`` and ``gpu_check.md`` in ``out``, each written atomically."""
    write_json(report, out / REPORT_JSON)
    atomic_write_bytes(out / REPORT_MD, markdown_report(report).encode())


def _f(x: Any, digits: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1e-2 and x != 0 else f"{x:.{digits}f}"
    return str(x)


def markdown_report(report: dict[str, Any]) -> str:
    """The report as Markdown (what the README's GPU tables are copied from)."""
    s = report["sections"]
    lines = [f"# GPU check ({'DRY RUN, CPU only' if report['dry_run'] else 'CUDA'})", "",
             f"Started {report['started']}, {report.get('elapsed_s', 0)} s; overall: "
             f"**{'PASSED' if report['ok'] else 'FAILED'}**", ""]
    if report.get("note"):
        lines += [f"> {report['note']}", ""]
    lines += ["| section | status | seconds | note |", "|---|---|---:|---|"]
    for name, rec in s.items():
        note = (rec.get("reason") or "").splitlines()[0][:160] if rec.get("reason") else ""
        lines.append(f"| {name} | {rec['status']} | {rec.get('seconds', '')} | {note} |")
    env = s.get("environment", {})
    if env.get("status") == "passed":
        lines += ["", "## Environment", ""]
        for k in ("device", "capability", "memory_gib", "driver", "torch", "torch_cuda", "cudnn", "nvcc", "python",
                  "cpus", "git_commit"):
            if k in env:
                lines.append(f"- {k}: {env[k]}")
        lines.append(f"- packages: {env.get('packages')}")
    for k in s.get("build", {}).get("kernels", []):
        lines += ["", f"Kernel build ({k['kind']}, CPU SIMD {k['cpu_simd']}): {k['seconds']} s (JIT build, or a "
                      f"load from the cache)."]
    p = s.get("parity", {})
    if p.get("rows"):
        tol = p["tolerances"]
        lines += ["", "## Parity", "", f"Tolerances: max |forward difference| {tol['fwd_max_abs']}, relative L2 "
                  f"gradient difference {tol['grad_rel_l2']}.", "",
                  "| case | dtype | check | max abs fwd | rel grad | ok |", "|---|---|---|---:|---:|---|"]
        for r in p["rows"]:
            lines.append(f"| {r['case']} | {r['dtype']} | {r['check']} | {_f(r.get('fwd_max_abs'))} | "
                         f"{_f(r.get('grad_rel_l2'))} | {'yes' if r['passed'] else '**NO**'} |")
    t = s.get("cuda_tests", {})
    if t.get("status") in ("passed", "failed"):
        lines += ["", "## CUDA tests", "", f"`{t.get('command', '')}`: " + (
            f"{t.get('collected')} collected (dry run)" if "collected" in t else
            f"{t.get('tests')} tests, {t.get('failures')} failures, {t.get('errors')} errors, "
            f"{t.get('skipped')} skipped")]
        for name in t.get("failed_tests", []):
            lines.append(f"- FAILED {name}")
    bn = s.get("bench", {})
    if bn.get("rows"):
        lines += ["", "## Bench (median ms)", "", "| impl | device | size | batch | faces | fwd | fwd+bwd | fwd+bwd / image |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in bn["rows"]:
            lines.append(f"| {r['impl']} | {r['device']} | {r['size']} | {r['batch']} | {r['faces']} | "
                         f"{r['fwd_ms']:.2f} | {r['fwdbwd_ms']:.2f} | {r['per_image_fwdbwd_ms']:.3f} |")
        if bn.get("ratios"):
            lines += ["", "| speedup (fwd+bwd) | x |", "|---|---:|"]
            lines += [f"| {k} | {v:.1f} |" for k, v in bn["ratios"].items()]
        if bn.get("train_step"):
            ts = bn["train_step"]
            lines += ["", f"Training step (impl {ts.get('impl')}): " + ", ".join(
                f"{k} {ts[k]:.1f} ms" for k in ("network", "render", "loss", "optimizer", "total")) +
                f", render share {100 * ts['render_fraction']:.1f}%."]
        if bn.get("agreement"):
            lines += ["", "## Backends vs softras (same meshes, 64 px, sigma 1e-4)", "",
                      "| backend | mean abs diff vs softras | IoU (>0.5) vs softras | mean silhouette (softras) |",
                      "|---|---:|---:|---:|"]
            for r in bn["agreement"]:
                if r["available"]:
                    lines.append(f"| {r['backend']} | {r['mean_abs_diff']:.4f} | {r['iou_vs_softras']:.4f} | "
                                 f"{r['mean_silhouette']:.4f} ({r['mean_silhouette_softras']:.4f}) |")
                else:
                    lines.append(f"| {r['backend']} | not available: {r['reason'][:120]} | | |")
        for item in bn.get("skipped", []):
            lines.append(f"- skipped: {item}")
    tr = s.get("train", {})
    if tr.get("status") in ("passed", "failed"):
        lines += ["", "## Training and evaluation", "",
                  f"{tr['steps']} steps x batch {tr['batch_size']} on {tr['device']} (softras impl {tr['impl']}) in "
                  f"{tr['train_seconds']} s ({tr['steps_per_second']} steps/s); loss {_f(tr['first_loss'], 4)} -> "
                  f"{_f(tr['last_loss'], 4)}; test mean IoU {_f(tr['test_mean_iou'], 4)} (template "
                  f"{_f(tr['template_iou'], 4)}, mean shape {_f(tr['mean_shape_iou'], 4)}); eval {tr['eval_seconds']} s."]
    return "\n".join(lines) + "\n"
