"""The ``environment`` (device, versions) and ``build`` (kernel JIT build) sections."""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch

from tools.gpucheck.plans import REPO_ROOT
from recon.ops import silhouette_ext as softras_ext

__all__ = ["environment", "build"]


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
    try:
        return version(module)
    except PackageNotFoundError:
        return "present"


def build(kind: str) -> dict[str, Any]:
    """Build (or load from the cache) the ``kind`` kernel; raises BackendUnavailable on failure."""
    t = time.perf_counter()
    module = softras_ext.load_extension(kind)
    simd = getattr(module, "cpu_simd", None)
    return {"kind": kind, "seconds": round(time.perf_counter() - t, 2), "with_cuda": bool(module.with_cuda),
            "cpu_simd": simd() if simd else None}
