"""Worker processes of the converters: an ordered parallel map that an interrupt tears down at any moment.

``with parallel_map(fn, items, workers) as results:`` yields ``fn(item)`` for every item, in
the order of ``items`` (so a file's content never depends on ``workers``). ``workers <= 1``
(or a single item) runs ``fn`` here, one item after another.

Interrupts follow ``recon.signals``: SIGINT/SIGTERM only set a flag.

* Workers ignore SIGINT and SIGTERM: a Ctrl-C or a SIGTERM sent to the process group reaches
  them too, but only the parent decides. The signals are blocked around each fork, so a new
  worker never runs a handler before it ignores them.
* The parent waits for results in slices of ``POLL_S`` seconds and calls
  ``recon.signals.check()`` between them (and between items when running here), so a stop
  raises ``Interrupted`` within ``POLL_S`` whether the pool is starting, working or finishing.
* The pool exists before its first worker starts. Leaving the ``with`` block with an exception
  kills (SIGKILL: they ignore SIGTERM) and joins every started worker, with a timeout; leaving
  it normally tells idle workers to exit and joins them.
* A worker that dies on its own (out of memory, killed) raises ``RuntimeError`` in the parent
  instead of leaving it waiting forever.

Transport: one pipe per worker, results pickled; voxel grids travel packed
(``pack_voxels`` / ``unpack_voxels``: 4 KB instead of 32 KB).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
from contextlib import contextmanager
from multiprocessing.connection import Connection, wait
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np
import torch

from recon.data.schema import VOXEL_RES
from recon.signals import STOP_SIGNALS, check, graceful_stop, ignore_stop_signals

__all__ = ["parallel_map", "default_workers", "available_memory", "pack_voxels", "unpack_voxels", "POLL_S", "JOIN_TIMEOUT_S"]

POLL_S = 0.1  # longest wait between two looks at the stop flag
JOIN_TIMEOUT_S = 5.0  # longest wait for one worker to exit
_AHEAD = 2  # tasks queued per worker: one running, one waiting in its pipe

T = TypeVar("T")
R = TypeVar("R")


def default_workers(workers: int | None) -> int:
    """``None`` -> every CPU core; anything else as given."""
    return (os.cpu_count() or 1) if workers is None else int(workers)


def available_memory() -> int | None:
    """Bytes this process may still allocate without swapping: the kernel's ``MemAvailable``, lowered
    to the cgroup v2 limit's headroom where one is set; None where neither can be read (not Linux)."""
    free = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    try:
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        used = int(open("/sys/fs/cgroup/memory.current").read())
        if limit != "max":
            headroom = max(0, int(limit) - used)
            free = headroom if free is None else min(free, headroom)
    except (OSError, ValueError):
        pass
    return free


def pack_voxels(voxels: np.ndarray) -> np.ndarray:
    """(32, 32, 32) bool -> (4096,) uint8 bits, for the trip from a worker."""
    return np.packbits(np.asarray(voxels, dtype=bool))


def unpack_voxels(packed: np.ndarray) -> np.ndarray:
    """Inverse of ``pack_voxels``: (32, 32, 32) bool."""
    return np.unpackbits(packed)[:VOXEL_RES ** 3].reshape((VOXEL_RES,) * 3).astype(bool)


@contextmanager
def _stop_signals_blocked() -> Iterator[None]:
    """Block SIGINT/SIGTERM in this thread (a fork inherits the mask; pending ones arrive afterwards)."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: spawn, nothing inherited
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _worker_main(fn: Callable, conn: Connection) -> None:
    """A worker: ignore stop signals, then run ``(index, item)`` tasks until ``None`` or the parent is gone."""
    ignore_stop_signals()
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    torch.set_num_threads(1)  # parallelism comes from the workers
    parent = os.getppid()
    while True:
        while not conn.poll(1.0):
            if os.getppid() != parent:  # orphaned (the parent was SIGKILLed): nobody will read results
                return
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if task is None:
            return
        index, item = task
        try:
            reply = (index, True, fn(item))
        except Exception as e:  # handed to the parent, which raises it
            try:
                pickle.dumps(e)
                reply = (index, False, e)
            except Exception:
                reply = (index, False, RuntimeError(f"{type(e).__name__}: {e}"))
        try:
            conn.send(reply)
        except OSError:  # the parent is gone
            return


class _WorkerPool:
    """``processes`` forked workers running ``fn``; owned from before the first one starts."""

    def __init__(self, fn: Callable[[T], R], processes: int) -> None:
        self._ctx = mp.get_context("fork" if os.name == "posix" else "spawn")
        self._fn = fn
        self._processes = processes
        self._workers: list[tuple[mp.process.BaseProcess, Connection]] = []
        self._busy: dict[int, int] = {}  # worker slot -> tasks sent, not yet answered

    def start(self) -> None:
        for slot in range(self._processes):
            check()
            parent_end, child_end = self._ctx.Pipe()
            proc = self._ctx.Process(target=_worker_main, args=(self._fn, child_end), daemon=True,
                                     name=f"recon-worker-{slot}")
            self._workers.append((proc, parent_end))  # owned before it runs: kill() finds it whatever happens
            self._busy[slot] = 0
            with _stop_signals_blocked():
                proc.start()
            child_end.close()

    def imap(self, items: Sequence[T]) -> Iterator[R]:
        """``fn(item)`` in order; checks the stop flag at least every ``POLL_S`` seconds."""
        done: dict[int, R] = {}
        sent = emitted = 0
        conns = {conn: slot for slot, (_, conn) in enumerate(self._workers)}
        sentinels = {proc.sentinel: slot for slot, (proc, _) in enumerate(self._workers)}
        while emitted < len(items):
            while sent < len(items) and sent - emitted < _AHEAD * len(self._workers):
                slot = min(self._busy, key=self._busy.__getitem__)
                if self._busy[slot] >= _AHEAD:
                    break
                try:
                    self._workers[slot][1].send((sent, items[sent]))
                except OSError:  # its end of the pipe is closed: the worker is gone
                    raise self._died(slot) from None
                self._busy[slot] += 1
                sent += 1
            while emitted in done:
                check()
                yield done.pop(emitted)
                emitted += 1
            if emitted == len(items):
                break
            ready = wait(list(conns) + list(sentinels), timeout=POLL_S)
            check()
            for obj in ready:
                if obj in conns:
                    slot = conns[obj]
                    try:
                        index, ok, value = obj.recv()
                    except (EOFError, OSError):  # closed or reset by a worker that died
                        raise self._died(slot) from None
                    self._busy[slot] -= 1
                    if not ok:
                        raise value
                    done[index] = value
                elif not self._workers[sentinels[obj]][1].poll():  # exited and said nothing more
                    raise self._died(sentinels[obj])

    def _died(self, slot: int) -> RuntimeError:
        proc = self._workers[slot][0]
        proc.join(JOIN_TIMEOUT_S)
        return RuntimeError(f"worker process {proc.pid} died (exit code {proc.exitcode}); "
                            f"out of memory? try fewer --workers")

    def close(self) -> None:
        """Idle workers exit on their own; any still busy (results nobody reads) are killed."""
        if any(self._busy.values()):
            self.kill()
            return
        for proc, conn in self._workers:
            try:
                conn.send(None)
            except OSError:
                pass
        self._join_all()

    def kill(self) -> None:
        """SIGKILL every started worker (they ignore SIGINT/SIGTERM) and join them."""
        for proc, _ in self._workers:
            if proc.pid is not None:
                proc.kill()
        self._join_all()

    def _join_all(self) -> None:
        for proc, conn in self._workers:
            if proc.pid is not None:
                proc.join(JOIN_TIMEOUT_S)
                if proc.exitcode is None:
                    proc.kill()
                    proc.join(JOIN_TIMEOUT_S)
            conn.close()
        self._workers.clear()


def _serial(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    for item in items:
        check()
        yield fn(item)


@contextmanager
def parallel_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[Iterator[R]]:
    """Yield an iterator of ``fn(item)`` in the order of ``items``, computed by ``workers`` processes.

    ``fn`` must be a module-level function (workers are forked; spawned where fork does not exist)
    and its results picklable. A stop signal raises ``recon.signals.Interrupted`` in the caller
    (within ``POLL_S`` seconds); an exception raised by ``fn`` in a worker is raised here.
    """
    items = list(items)
    processes = min(int(workers), len(items))
    with graceful_stop():
        if processes <= 1:
            yield _serial(fn, items)
            return
        pool = _WorkerPool(fn, processes)
        try:
            pool.start()
            yield pool.imap(items)
        except BaseException:
            pool.kill()
            raise
        pool.close()
