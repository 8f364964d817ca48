"""recon.signals: a signal inside ``graceful_stop`` only sets a flag; ``check()`` raises ``Interrupted``
carrying it; handlers come back on exit; a signal is never lost; other threads are left alone."""

from __future__ import annotations

import os
import pickle
import signal
import threading

import pytest

from recon.signals import Interrupted, check, graceful_stop, stop_requested


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_sets_flag_and_check_raises(sig, code):
    before = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
    reached = False
    with pytest.raises(Interrupted) as e:
        with graceful_stop() as flag:
            os.kill(os.getpid(), sig)
            reached = True  # the handler raised nothing
            assert flag and flag.signum == sig and stop_requested()
            check()
    assert reached and e.value.signum == sig and e.value.exit_code == code
    assert str(e.value) == f"interrupted ({sig.name})" and isinstance(e.value, KeyboardInterrupt)
    assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == before
    assert not stop_requested()
    copy = pickle.loads(pickle.dumps(e.value))
    assert (type(copy), copy.signum, copy.exit_code) == (Interrupted, sig, code)


def test_signal_is_never_lost():
    """A block that ends normally after a signal raises as it exits; the first signal is the one kept."""
    with pytest.raises(Interrupted) as e:
        with graceful_stop():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)
    assert e.value.signum == signal.SIGTERM
    with graceful_stop() as flag:  # no signal: nothing raised
        pass
    assert not flag


def test_nested_blocks_and_other_exceptions():
    with pytest.raises(Interrupted):
        with graceful_stop():
            with graceful_stop() as inner:
                os.kill(os.getpid(), signal.SIGINT)
                assert inner
            raise AssertionError("the inner block must have raised")
    with pytest.raises(ValueError):  # an error in flight wins over a pending stop (it still unwinds everything)
        with graceful_stop():
            os.kill(os.getpid(), signal.SIGTERM)
            raise ValueError("boom")
    assert not stop_requested()


def test_no_op_outside_the_main_thread():
    seen = {}

    def work():
        before = signal.getsignal(signal.SIGTERM)
        with graceful_stop() as flag:
            seen["installed"] = signal.getsignal(signal.SIGTERM) is not before
            seen["flag"] = bool(flag)
            check()

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen == {"installed": False, "flag": False}
