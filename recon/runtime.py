"""How a CPU job uses the machine: intra-op threads, the OpenMP wait policy and the allocator.

* **Wait policy.** By default OpenMP threads that finish their share of a parallel region spin
  at its barrier. When a core is shared with another busy process, the thread on it is often
  descheduled while its partner spins on the other core until it comes back: a 2-thread bf16
  training run kept 36 % of its throughput next to one busy process (a 1-thread run 90 %).
  ``OMP_WAIT_POLICY=PASSIVE`` makes waiting threads sleep: 48 %, for 10-16 % less on an idle
  machine (``python -m pipelines.bench --contention``). OpenMP reads it once, when torch is
  imported, so ``pipelines/__init__.py`` calls ``set_openmp_env()`` before any pipeline imports
  torch (an explicit setting in the environment wins).
* **Threads.** ``choose_threads(0)`` ("auto") uses the cores that are idle when the job starts
  (``/proc/stat`` over 0.3 s), at least one: on a busy machine barriers cost more than a
  second thread gains. The count is fixed for the whole run (CPU results are bitwise
  reproducible for a fixed thread count, not across counts); ``--threads N`` overrides it.
* **Small tensors.** ``one_thread()`` runs a block on one intra-op thread and restores the count
  (one small mesh gains nothing from more threads and, on a busy machine, loses much).
* **Denormals.** Values below ~1.2e-38 (subnormal floats) appear as training goes on (Adam's
  second moments, small activations and gradients); x86 CPUs compute with them in microcode, up
  to ~100x slower per operation. On a 2-core machine the demo's step went from 177 to ~310 ms
  after ~600 steps. ``flush_denormals()`` sets flush-to-zero / denormals-are-zero (the MXCSR
  bits) so they are computed as 0: training, evaluation, prediction and the benchmarks call it
  (``TrainConfig.flush_denormal``, recorded in config.json; ``--no-flush-denormal`` turns it off),
  first thing, before any parallel op: OpenMP's worker threads start with the floating-point
  mode of the thread that starts them and keep it, so a setting made after the first parallel
  region reaches the main thread only (measured: an elementwise op on subnormals took 0.17 s on
  2 threads flushed late vs 0.08 s on one flushed thread).
  Results stay bitwise reproducible for a fixed thread count, precision and flush setting; they
  differ in the last bits from a run without it. ``python -m pipelines.bench --denormal`` measures
  the step early vs late in training, with and without.
* **Allocator.** glibc returns large blocks (the weight, gradient and bf16 copies of a
  26M-parameter model) to the kernel on every free, so every training step page-faults them
  back in: 15-35 % of the network's CPU time (fp32 220 -> 183 ms, bf16 165 -> 106 ms at batch 16).
  ``tune_allocator()`` raises glibc's mmap and trim thresholds
  so that freed blocks are reused instead (``mallopt``; no effect on other C libraries).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
import os
import time
from collections.abc import Iterator

__all__ = ["OPENMP_ENV", "set_openmp_env", "flush_denormals", "one_thread", "tune_allocator", "usable_cores", "busy_cores",
           "choose_threads"]

OPENMP_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)
_KEEP_BYTES = 1 << 30
_tuned: bool | None = None


def set_openmp_env() -> None:
    """Set ``OPENMP_ENV`` in ``os.environ`` unless already set. Effective only before torch (and so
    OpenMP) is first imported in this process; child processes inherit it."""
    for key, value in OPENMP_ENV.items():
        os.environ.setdefault(key, value)


def flush_denormals(on: bool = True) -> bool:
    """Flush subnormal floats to zero in CPU arithmetic (``on``), or compute them exactly. Call it
    before the first parallel torch op of the process: OpenMP worker threads are created with the
    floating-point environment of the thread that starts them, and a later call changes only the
    calling thread. Returns whether the CPU supports it (x86 with
    SSE3: yes; elsewhere ``torch.set_flush_denormal`` returns False and nothing changes)."""
    import torch  # here, not at the top: this module loads before torch (see set_openmp_env)

    return bool(torch.set_flush_denormal(on))


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread inside, then restore the count. One small mesh gains nothing from
    more, and on a busy machine loses much: 8 coloured turntable views took 7.2 s on 2 threads vs 0.15 s
    on 1 (grey: 0.97 vs 0.05 s) with other processes on both cores."""
    import torch  # here, not at the top: this module loads before torch (see set_openmp_env)

    threads = torch.get_num_threads()
    if threads > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if threads > 1:
            torch.set_num_threads(threads)


def tune_allocator() -> bool:
    """Keep freed blocks of up to 1 GiB in the heap for reuse (glibc ``mallopt``). Idempotent.
    Returns whether it took effect (False on a non-glibc C library)."""
    global _tuned
    if _tuned is None:
        _tuned = False
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):
            return False
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        _tuned = bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))
    return _tuned


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat, or None where unreadable."""
    try:
        with open("/proc/stat") as f:
            values = [float(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
    return sum(values[:8]) - idle, sum(values[:8])


def busy_cores(seconds: float = 0.3) -> float | None:
    """How many cores other processes kept busy over the next ``seconds`` (this process sleeps
    meanwhile), from /proc/stat; None where it cannot be read (not Linux)."""
    before = _cpu_times()
    if before is None:
        return None
    own = time.process_time()
    time.sleep(seconds)
    after = _cpu_times()
    if after is None or after[1] <= before[1]:
        return None
    cores = os.cpu_count() or 1
    busy = (after[0] - before[0]) / (after[1] - before[1]) * cores
    own_cores = (time.process_time() - own) / seconds
    return max(busy - own_cores, 0.0)


def choose_threads(requested: int, processes: int = 1) -> tuple[int, str]:
    """The intra-op thread count for a CPU job and why: ``requested`` when > 0, else the idle cores
    among those this process may use, shared by ``processes`` processes of one job (DDP ranks on
    this machine), at least 1. A core counts as busy from a third of its time on: a thread that
    has to share its core stalls every barrier of its partners."""
    if requested > 0:
        return requested, "requested"
    cores = usable_cores()
    busy = busy_cores()
    if busy is None:
        return max(1, cores // processes), f"auto: {cores} usable cores (load unknown)"
    idle = cores - min(math.ceil(busy - 1 / 3), cores)
    threads = max(1, idle // max(processes, 1))
    return threads, f"auto: {cores} usable cores, {busy:.1f} kept busy by other processes"
