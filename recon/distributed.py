"""Devices and multi-process (DDP) plumbing: which device, which rank, and the few collectives
training needs. Every collective is a no-op in a single process, so callers never branch on it.

Under ``torchrun`` the rank, world size and local rank come from the environment; the process
group uses gloo on CPU and nccl on CUDA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from recon.errors import ConfigError

__all__ = ["DistInfo", "dist_info", "resolve_device", "init_distributed", "close_distributed", "all_reduce",
           "any_rank", "all_ranks", "barrier"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0


def dist_info() -> DistInfo:
    """Rank, world size and local rank from torchrun's environment (a single process without it)."""
    return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                    int(os.environ.get("LOCAL_RANK", 0)))


def resolve_device(spec: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu. Raises ValueError (naming ``--device``) for anything
    that is not ``cpu``, ``cuda`` or ``cuda:N`` usable on this machine."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"--device {spec!r}: not a device; expected auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {spec!r}: unsupported device type {dev.type!r}; expected auto, cpu, cuda or "
                          "cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {spec}: CUDA is not available on this machine (use cpu or auto)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def init_distributed(device: torch.device, info: DistInfo) -> torch.device:
    """Join the process group when ``info.world_size > 1`` (nccl on CUDA, gloo on CPU).

    Returns:
        The device this rank computes on (``cuda:<local_rank>`` for multi-process CUDA runs).
    """
    if info.world_size > 1 and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if info.world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def close_distributed() -> None:
    """Leave the process group (if this process joined one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce(values: list[float], device: torch.device, op: str = "sum") -> list[float]:
    """Element-wise ``sum`` / ``max`` / ``min`` of ``values`` over ranks (``values`` itself in one process)."""
    if not _active():
        return list(values)
    ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=ops[op])
    return t.tolist()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on at least one."""
    return all_reduce([float(flag)], device, "max")[0] > 0


def all_ranks(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on all of them."""
    return all_reduce([float(flag)], device, "min")[0] > 0


def barrier(device: torch.device) -> None:
    """Wait for every rank (no-op in one process)."""
    if _active():
        dist.barrier(device_ids=[device.index]) if device.type == "cuda" else dist.barrier()
