"""Up-front checks of a Ray build, so that a build Ray could never run fails in seconds with one line.

Ray itself waits for an unreachable cluster (retrying for minutes) and for a task's GPUs (forever, with no
message); these checks run before ``ray.init`` (address, local GPUs) and right after it (the cluster's GPUs),
before the table file is touched, and, while a build waits for its tasks, every :data:`RECHECK_SECONDS`
(:func:`wait_one`: nodes can leave a cluster). A local instance is watched by a reaper (:func:`start_reaper`) that
removes its processes if the driver is killed before it can shut Ray down.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
from typing import Any

#: Seconds a cluster address has to accept a connection.
CONNECT_SECONDS = 3.0
#: While no task finishes, how often the cluster is checked for the resources a task needs.
RECHECK_SECONDS = 30.0


def check_address(address: str | None, timeout: float = CONNECT_SECONDS) -> None:
    """``address`` (``HOST:PORT`` or ``ray://HOST:PORT``) accepts a TCP connection within ``timeout`` seconds;
    ``None`` (a local instance) and ``auto`` (Ray's own discovery) are not checked. ``ValueError`` otherwise."""
    if address is None or address == "auto":
        return
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--ray-address {address!r}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise ValueError(f"--ray-address {address}: no Ray cluster answers there within {timeout:g} s "
                         f"({err.strerror or type(err).__name__}); is the cluster running (`ray status`)?") from None


def check_gpus(gpus: float, available: float, where: str) -> None:
    """A task asking ``gpus`` GPUs can start where ``available`` GPUs are (Ray takes a fraction below 1 or a whole
    number); ``ValueError`` naming ``where`` otherwise, since Ray would wait for them forever."""
    if not math.isfinite(gpus) or gpus < 0 or (gpus > 1 and gpus != int(gpus)):
        raise ValueError(f"--gpus-per-task {gpus:g}: Ray takes a fraction below 1 or a whole number of GPUs")
    if gpus > available:
        raise ValueError(f"--gpus-per-task {gpus:g}: {where} has {available:g} GPU{'s' if available != 1 else ''}, so no "
                         "task could ever start (use --device cpu, or a cluster with GPUs via --ray-address)")


def local_gpus() -> int:
    """GPUs this machine offers a local Ray instance (CUDA devices torch sees)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def wait_one(ray: Any, refs: list[Any], gpus: float, every: float = RECHECK_SECONDS) -> list[Any]:
    """``ray.wait`` for one of ``refs``, checking every ``every`` seconds without a result that the cluster still
    has a CPU and the ``gpus`` a task needs; ``ValueError`` (one line) once it has not, instead of waiting forever."""
    while True:
        done, _ = ray.wait(refs, num_returns=1, timeout=every)
        if done:
            return list(done)
        resources = ray.cluster_resources()
        if resources.get("CPU", 0) < 1:
            raise ValueError("the Ray cluster has no CPU left, so no task can run (nodes left it?)")
        check_gpus(gpus, resources.get("GPU", 0), "the Ray cluster now")


#: The reaper (:func:`start_reaper`): records the driver's descendants every second; once the driver is gone
#: (reparented away from it), SIGKILLs those still alive (same start time, so a reused pid is spared).
_REAPER = r"""
import os, signal, sys, time
driver, me = int(sys.argv[1]), os.getpid()
signal.signal(signal.SIGINT, signal.SIG_IGN)
def table():
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[int(d)] = (int(fields[1]), fields[19])
    return out
seen = {}
while os.getppid() == driver:
    procs = table()
    frontier = [driver]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, start) in procs.items():
            if ppid == parent and pid != me and pid not in seen:
                seen[pid] = start
                frontier.append(pid)
    time.sleep(1.0)
procs = table()
for pid, start in seen.items():
    if pid in procs and procs[pid][1] == start:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
"""


def start_reaper() -> subprocess.Popen[bytes] | None:
    """Linux: a small process that removes the local Ray instance's processes if this driver dies without shutting
    it down (``kill -9``): Ray's dashboard and runtime-env agents otherwise outlive it. ``None`` elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    return subprocess.Popen([sys.executable, "-c", _REAPER, str(os.getpid())], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def stop_reaper(reaper: subprocess.Popen[bytes] | None) -> None:
    """End a reaper after a clean Ray shutdown (nothing left to remove)."""
    if reaper is not None and reaper.poll() is None:
        reaper.kill()
        reaper.wait()
