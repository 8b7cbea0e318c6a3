"""The local executor's signal handling: an interrupt never cuts a worker's start in half."""

from __future__ import annotations

import os
import signal

import pytest

from snnbench.builders.executors import _signals_deferred


def test_signals_are_held_while_a_worker_starts_then_delivered_once() -> None:
    seen: list[int] = []

    def handler(signum, _frame) -> None:
        seen.append(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        with _signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            assert seen == []  # held: the body runs on
            assert signal.getsignal(signal.SIGTERM) is not handler
        assert seen == [signal.SIGTERM]  # delivered to the handler in place before, once
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_held_ctrl_c_raises_after_the_body() -> None:
    done = []
    with pytest.raises(KeyboardInterrupt):
        with _signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            done.append(True)
    assert done == [True] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
