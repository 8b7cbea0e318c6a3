"""Where work items run: in this process, in a local process pool, or as Ray tasks.

Every executor maps a module-level function ``fn(item: dict) -> list[dict]`` over plain-data items and
yields ``(item, result)`` pairs as they finish (any order). Workers send back plain dicts and arrays;
the driver, which consumes the iterator, stays the only process that writes the table.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any, Callable, Iterable, Iterator, Protocol

Work = Callable[[dict[str, Any]], list[dict[str, Any]]]
EXECUTORS = ("local", "ray")


class Executor(Protocol):
    def run(self, fn: Work, items: Iterable[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


def _die_with_parent() -> None:
    """Linux: this process gets SIGTERM when its parent (the build driver) dies, even by ``kill -9``."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
            if os.getppid() == 1:  # the parent died before the call: no signal will come
                os._exit(1)


def _init_worker() -> None:
    """One torch thread per worker process (the pool supplies the parallelism); no orphans; a thread lock for
    tqdm (workers draw no bars, and its default multiprocessing lock leaks a semaphore when a worker is
    terminated mid-item)."""
    _die_with_parent()
    import torch
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())

    torch.set_num_threads(1)
    if torch.get_num_interop_threads() != 1:
        with contextlib.suppress(RuntimeError):  # only settable before the first parallel work of a process
            torch.set_num_interop_threads(1)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the body runs, then deliver them to the handlers in place before.

    ``ProcessPoolExecutor.submit`` starts worker processes on demand; an interrupt (Ctrl-C, or `kill` turned into
    one) raised in the middle of a ``spawn`` leaves a child reading a half-written start message, which prints a
    traceback of its own after the build has stopped. Deferring makes a start all or nothing. Signal handlers are
    the main thread's: elsewhere this changes nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = [sig for sig in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(sig) is not None]  # None: not ours to restore
    previous = {sig: signal.signal(sig, lambda signum, _frame: caught.append(signum)) for sig in held}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)  # runs the restored handler (KeyboardInterrupt under a build)


class WorkerDied(RuntimeError):
    """A worker process died more often than retries allow on the same work."""


class LocalExecutor:
    """A pool of ``workers`` processes (``spawn``; torch threads = 1 each); ``workers=0`` runs in this process.

    A worker process that dies (killed, out of memory) breaks the pool: a fresh pool takes over and the
    items in flight are submitted again, each at most ``max_retries`` times (then :class:`WorkerDied`).
    """

    def __init__(self, workers: int | None = None, max_retries: int = 3) -> None:
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        if self.workers < 0:
            raise ValueError(f"workers: expected >= 0, got {self.workers}")
        self.max_retries = max_retries
        self._pool: ProcessPoolExecutor | None = None
        self._left: tuple[list[Any], threading.Thread | None] | None = None  # a pool shut by a run left early: its
        # processes and manager thread (the pool forgets them when shut), for close() and abort(); never reused

    def _new_pool(self) -> ProcessPoolExecutor:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"), initializer=_init_worker)
        self._left = None
        return self._pool

    @staticmethod
    def _internals(pool: ProcessPoolExecutor) -> tuple[list[Any], threading.Thread | None]:
        """The pool's worker processes and manager thread (no public handle before Python 3.14)."""
        return list((getattr(pool, "_processes", None) or {}).values()), getattr(pool, "_executor_manager_thread", None)

    def run(self, fn: Work, items: Iterable[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
        if self.workers == 0:
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # the same arithmetic as a pool worker, hence the same numbers
            try:
                for item in items:
                    yield item, fn(item)
            finally:
                torch.set_num_threads(threads)
            return
        pool = self._pool if self._pool is not None and self._left is None else self._new_pool()
        pending: dict[Future[list[dict[str, Any]]], dict[str, Any]] = {}
        backlog: list[dict[str, Any]] = []  # items to (re)submit before new ones
        tries: dict[int, int] = {}  # id(item) -> resubmissions after a worker death
        queue = iter(items)
        limit = 4 * self.workers  # bounded in flight: a kill loses at most these, memory stays flat
        try:
            while True:
                broken = False
                while len(pending) < limit:
                    job: dict[str, Any] | None = backlog.pop() if backlog else next(queue, None)
                    if job is None:
                        break
                    try:
                        with _signals_deferred():  # submit may start a worker process
                            future = pool.submit(fn, job)
                        pending[future] = job
                    except BrokenProcessPool:
                        backlog.append(job)
                        broken = True
                        break
                if not pending and not backlog:
                    return
                if not broken:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        try:
                            result = fut.result()
                        except BrokenProcessPool:
                            broken = True
                            continue
                        item = pending.pop(fut)
                        tries.pop(id(item), None)
                        yield item, result
                if broken:  # every future of a broken pool fails: run them all again on a fresh pool
                    backlog += pending.values()
                    pending = {}
                    for item in backlog:
                        tries[id(item)] = tries.get(id(item), 0) + 1
                        if tries[id(item)] > self.max_retries:
                            raise WorkerDied(f"a worker process died {self.max_retries + 1} times running the same work "
                                             "(out of memory?); the rows stored so far are kept")
                    pool = self._new_pool()
        finally:
            if pending:  # left early (an interrupt): the pool's manager thread drops the queued items itself; a
                # future cancelled from here fails CPython 3.11's broken-pool handler when the workers die next (a
                # signal to the whole process group), printing an InvalidStateError traceback
                self._left = self._internals(pool)
                pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Let the items in flight finish, then end the workers."""
        if self._pool is not None:
            processes, manager = self._left or ([], None)
            self._pool.shutdown(wait=True, cancel_futures=True)
            for proc in processes:
                proc.join()
            if manager is not None:
                manager.join()
            self._pool, self._left = None, None

    def abort(self) -> None:
        """Stop now (an interrupted build): cancel queued items and terminate the workers mid-item. Returns once
        the pool's manager thread has ended: one still closing its wake-up pipe while the interpreter exits races
        the exit hook that writes to it (CPython gh-83279: an ``OSError: Bad file descriptor`` traceback after
        the one-line message)."""
        if self._pool is not None:
            processes, manager = self._left or self._internals(self._pool)
            self._pool.shutdown(wait=False, cancel_futures=True)
            for proc in processes:
                proc.terminate()
            for proc in processes:
                proc.join(timeout=10)
            if manager is not None:
                manager.join(timeout=10)
            self._pool, self._left = None, None


class RayExecutor:
    """Ray tasks (1 CPU each, ``gpus`` GPUs each); a task whose worker dies is retried ``max_retries`` times.

    Connects to ``address`` (a running cluster) or starts a local instance with ``num_cpus`` CPUs (default: all
    cores); ``num_cpus=0`` is refused, before Ray starts: no task (1 CPU each) could ever run.
    """

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None, gpus: float = 0.0,
                 max_retries: int = 3, in_flight: int | None = None) -> None:
        if num_cpus is not None and num_cpus < 1:
            raise ValueError(f"workers: {num_cpus} (run in this process) is for --executor local only; Ray tasks need "
                             "CPUs: give >= 1 or leave it out (all cores)")
        try:
            import ray
        except ImportError:
            raise ValueError("executor: ray is not installed; pip install 'snnbench[ray]'") from None
        from snnbench.builders.ray_checks import check_address, check_gpus, local_gpus, start_reaper

        check_address(address)
        if address is None and not ray.is_initialized():
            check_gpus(gpus, local_gpus(), "this machine")
        self._ray = ray
        self._started = False
        self._reaper: Any = None  # the local instance's reaper process (builders.ray_checks.start_reaper)
        if not ray.is_initialized():
            env_vars = {k: os.environ[k] for k in ("SNNBENCH_DATA_DIR",) if k in os.environ}
            kwargs: dict[str, Any] = {"address": address, "include_dashboard": False, "log_to_driver": False,
                                      "runtime_env": {"env_vars": env_vars} if env_vars else None}
            if address is None:
                kwargs["num_cpus"] = num_cpus
            try:
                ray.init(**kwargs)
            except ConnectionError as err:
                raise ValueError(f"executor: cannot reach the Ray cluster at {address}: {err}") from None
            self._started = True
            self._reaper = start_reaper() if address is None else None
        self.gpus, self.max_retries = gpus, max_retries
        try:
            check_gpus(gpus, ray.cluster_resources().get("GPU", 0), "the Ray cluster")
        except ValueError:
            self.close()
            raise
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.in_flight = in_flight or max(2, 2 * cpus)

    def run(self, fn: Work, items: Iterable[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
        from snnbench.builders.ray_checks import wait_one

        ray = self._ray
        remote = ray.remote(num_cpus=1, num_gpus=self.gpus, max_retries=self.max_retries, retry_exceptions=False)(
            _ray_task(fn))
        pending: dict[Any, dict[str, Any]] = {}
        queue = iter(items)
        try:
            while True:
                for item in queue:
                    pending[remote.remote(item)] = item
                    if len(pending) >= self.in_flight:
                        break
                if not pending:
                    return
                try:
                    done = wait_one(ray, list(pending), self.gpus)
                except ValueError as err:
                    raise WorkerDied(f"{err}; rows finished so far are stored") from None
                for ref in done:
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayError as err:  # its worker died max_retries + 1 times, or the node
                        raise WorkerDied(f"a Ray task failed {self.max_retries + 1} times running the same work item "
                                         f"({type(err).__name__}); rows finished so far are stored") from None
                    yield pending.pop(ref), result
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._started:
            from snnbench.builders.ray_checks import stop_reaper

            self._ray.shutdown()
            stop_reaper(self._reaper)
            self._started = False

    def abort(self) -> None:
        """Stop now: the tasks in flight were cancelled (force) when ``run`` was left."""
        self.close()


def _ray_task(fn: Work) -> Work:
    """Wrap ``fn`` so each Ray worker process uses one torch thread."""

    def task(item: dict[str, Any]) -> list[dict[str, Any]]:
        _init_worker()
        return fn(item)

    task.__name__ = getattr(fn, "__name__", "task")
    return task


def make_executor(name: str, *, workers: int | None = None, address: str | None = None, gpus: float = 0.0) -> Executor:
    """The executor named ``name`` (``local`` or ``ray``)."""
    if name == "local":
        return LocalExecutor(workers)
    if name == "ray":
        return RayExecutor(address, num_cpus=workers, gpus=gpus)
    raise ValueError(f"executor: expected one of {EXECUTORS}, got {name!r}")
