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



def _sleep_item(item: dict) -> list[dict]:
    import time

    time.sleep(item["s"])
    return [item]


def test_abort_returns_after_the_pools_manager_thread_ends() -> None:
    """Ctrl-C mid-item, then ``abort``: when it returns, the pool's manager thread has ended, so none can close the
    pool's wake-up pipe while the interpreter exits (the race behind an ``OSError: Bad file descriptor``
    traceback printed after an interrupted build's one-line message)."""
    import threading

    from snnbench.builders.executors import LocalExecutor

    ex = LocalExecutor(workers=2)
    timer = threading.Timer(3.0, os.kill, (os.getpid(), signal.SIGINT))  # workers are mid-item by then
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        for _ in ex.run(_sleep_item, ({"s": 60} for _ in range(4))):
            pass
    assert ex._left is not None  # the run was left early: its pool shut, its processes kept for abort
    workers, manager = ex._left
    assert manager is not None and manager.is_alive() and all(w.is_alive() for w in workers)
    ex.abort()
    assert not manager.is_alive() and not any(w.is_alive() for w in workers)


def test_workers_dying_after_the_run_is_left_leave_no_thread_traceback(monkeypatch) -> None:
    """A signal to the whole process group (Ctrl-C, a scheduler's stop) interrupts the driver and kills its workers;
    the workers may die after ``run`` is left and before ``abort``. Queued items must then have been dropped through
    the pool (its manager thread), not by cancelling their futures from outside: CPython 3.11's broken-pool handler
    fails on a future cancelled that way (an ``InvalidStateError`` traceback after the build's one-line message)."""
    import threading

    from snnbench.builders.executors import LocalExecutor

    errors: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    ex = LocalExecutor(workers=1)  # 4 items in flight: 1 running, 2 in the pool's call queue, 1 queued
    timer = threading.Timer(3.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        for _ in ex.run(_sleep_item, ({"s": 60} for _ in range(6))):
            pass
    assert ex._left is not None
    workers, manager = ex._left  # the pool forgets them once shut
    assert manager is not None and workers
    for w in workers:  # the same signal reached the workers: they die before the driver aborts
        os.kill(w.pid, signal.SIGKILL)
        w.join()
    manager.join(timeout=30)
    ex.abort()
    assert not manager.is_alive() and errors == []
