"""Numeric precision of the networks: fp32, or bf16 autocast where the hardware does bf16 natively.

Only the encoder and decoder layers run in bf16 (``torch.autocast``); their weights (the master
copy the optimizer updates), the optimizer state, the vertices they output, the renderer, the
losses and the metrics stay fp32 (``Reconstructor`` casts its output back).

``auto`` is resolved once per job:

* training and benchmarks (``choose_training_precision``): bf16 only where it is native
  (``native_bf16``: a CPU with AVX512-BF16 or AMX, detected at run time; CUDA with compute
  capability >= 8.0) *and* a short timing of the network's forward + backward at the job's batch,
  fp32 and bf16 interleaved on a copy of the model, finds it faster. Elsewhere fp32, unmeasured.
* inference (``inference_precision``): the precision the checkpoint was trained in when this device
  runs it natively, else fp32; no timing, so an evaluation gives the same numbers every time.
"""

from __future__ import annotations

import copy
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import torch

from recon.choices import COMPUTE_PRECISIONS, PRECISION_HELP, PRECISIONS, check_precision

__all__ = ["PRECISIONS", "COMPUTE_PRECISIONS", "PRECISION_HELP", "check_precision", "native_bf16", "autocast",
           "PrecisionChoice", "time_precisions", "choose_training_precision", "inference_precision"]


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_bf16(device: torch.device | str) -> str | None:
    """None when ``device`` computes bf16 matrix products and convolutions natively, else the reason
    it does not (bf16 still *works* there, emulated, but is slower than fp32)."""
    device = torch.device(device)
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if major >= 8:
            return None
        return f"{torch.cuda.get_device_name(device)} (compute capability {major}.{minor} < 8.0) has no native bf16"
    if device.type == "cpu":
        probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        if any(p() for p in probes if p is not None):
            return None
        if not any(p is not None for p in probes) and _cpu_flags() & {"avx512_bf16", "amx_bf16"}:
            return None
        return "this CPU has neither AVX512-BF16 nor AMX"
    return f"device type {device.type!r} is not supported for bf16"


def autocast(device_type: str, precision: str) -> AbstractContextManager:
    """The autocast region of ``precision`` on ``device_type`` ("cpu" | "cuda"): bf16 or disabled."""
    check_precision(precision, allow_auto=False)
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16")


@dataclass
class PrecisionChoice:
    """What ``auto`` (or an explicit flag) resolved to, and why (for the log and config.json)."""

    precision: str
    reason: str
    fp32_ms: float | None = None  # measured network forward+backward (None: not measured)
    bf16_ms: float | None = None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_precisions(model: torch.nn.Module, batch: int, image_size: int, device: torch.device,
                    repeats: int = 3) -> dict[str, float]:
    """Milliseconds of one forward + backward of a *copy* of ``model`` (a ``Reconstructor``) on
    ``batch`` random RGBA images, per precision: the fastest of ``repeats`` rounds, fp32 and bf16
    interleaved so that a busy machine slows both alike. ``model`` itself, its BatchNorm
    statistics and the global RNG are left untouched (a resumed or repeated run is unchanged)."""
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 4, image_size, image_size, generator=gen).to(device)
    copies = {p: copy.deepcopy(model).train().set_precision(p) for p in COMPUTE_PRECISIONS}
    best = {p: float("inf") for p in copies}
    for rnd in range(repeats + 1):  # round 0 warms up (oneDNN primitive creation, allocator)
        for p, net in copies.items():
            _sync(device)
            t = time.perf_counter()
            net(images).square().mean().backward()
            net.zero_grad(set_to_none=True)
            _sync(device)
            if rnd:
                best[p] = min(best[p], (time.perf_counter() - t) * 1e3)
    return best


def choose_training_precision(requested: str, model: torch.nn.Module, batch: int, image_size: int,
                              device: torch.device) -> PrecisionChoice:
    """Resolve ``--precision`` for training ``model`` at ``batch`` images per forward (see module doc)."""
    check_precision(requested)
    if requested != "auto":
        return PrecisionChoice(requested, "requested")
    why_not = native_bf16(device)
    if why_not is not None:
        return PrecisionChoice("fp32", f"auto: {why_not}")
    ms = time_precisions(model, batch, image_size, device)
    faster = ms["bf16"] < ms["fp32"]
    return PrecisionChoice("bf16" if faster else "fp32",
                           f"auto: network forward+backward at {batch} images: fp32 {ms['fp32']:.0f} ms, "
                           f"bf16 {ms['bf16']:.0f} ms", ms["fp32"], ms["bf16"])


def inference_precision(requested: str, trained: str | None, device: torch.device) -> PrecisionChoice:
    """Resolve ``--precision`` for evaluating/predicting with a checkpoint trained in ``trained``
    (None: a checkpoint from before precisions were recorded, i.e. fp32)."""
    check_precision(requested)
    if requested != "auto":
        return PrecisionChoice(requested, "requested")
    trained = trained if trained in COMPUTE_PRECISIONS else "fp32"
    if trained == "bf16":
        why_not = native_bf16(device)
        if why_not is not None:
            return PrecisionChoice("fp32", f"auto: trained in bf16, but {why_not}")
    return PrecisionChoice(trained, f"auto: the precision the checkpoint was trained in ({trained})")
