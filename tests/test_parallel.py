"""recon.data._parallel: ordered results whatever the finishing order, worker errors and deaths raised in
the parent, and a stop signal that kills the pool and leaves no process behind."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time

import numpy as np
import pytest

from recon.data._parallel import pack_voxels, parallel_map, unpack_voxels
from recon.signals import Interrupted, graceful_stop


def _slow_square(x: int) -> int:
    time.sleep(0.02 * ((7 * x) % 5))  # finish out of order
    return x * x


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"bad item {x}")
    return x


def _die_on_two(x: int) -> int:
    if x == 2:
        os._exit(7)  # as the out-of-memory killer would end it
    return x


def _signals_ignored(_: int) -> tuple[object, object]:
    return signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)


def _stop_parent_on_four(x: int) -> int:
    if x == 4:
        os.kill(os.getppid(), signal.SIGTERM)
    time.sleep(0.05)
    return x


@pytest.mark.parametrize("workers", [1, 3])
def test_results_in_order(workers):
    with parallel_map(_slow_square, range(12), workers) as results:
        assert list(results) == [x * x for x in range(12)]
    assert mp.active_children() == []


def test_worker_state():
    with parallel_map(_signals_ignored, range(4), 2) as results:
        assert set(results) == {(signal.SIG_IGN, signal.SIG_IGN)}  # the parent alone decides when to stop


def test_worker_exception_is_raised_here():
    with pytest.raises(ValueError, match="bad item 3"):
        with parallel_map(_fail_on_three, range(8), 2) as results:
            list(results)
    assert mp.active_children() == []


def test_dead_worker_raises_instead_of_hanging():
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"worker process \d+ died \(exit code 7\)"):
        with parallel_map(_die_on_two, range(8), 2) as results:
            list(results)
    assert time.monotonic() - t0 < 10 and mp.active_children() == []


def test_stop_signal_kills_the_pool():
    """SIGTERM reaches the parent while the pool works: Interrupted at the next poll, every worker gone."""
    got = []
    t0 = time.monotonic()
    with pytest.raises(Interrupted) as e:
        with graceful_stop(), parallel_map(_stop_parent_on_four, range(200), 2) as results:
            for x in results:
                got.append(x)
    assert e.value.signum == signal.SIGTERM and time.monotonic() - t0 < 5
    assert got == list(range(len(got))) and len(got) < 200
    assert mp.active_children() == []


def test_pack_round_trip():
    v = np.random.default_rng(0).random((32, 32, 32)) < 0.3
    packed = pack_voxels(v)
    assert packed.dtype == np.uint8 and packed.shape == (4096,)
    np.testing.assert_array_equal(unpack_voxels(packed), v)
