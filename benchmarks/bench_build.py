"""Scoring throughput of the build pipeline, extrapolated to a whole cell space.

Scores a seeded sample of a kind's cells through ``builders.build.build`` (the real pipeline: planning,
executor, journal, folds) into a temporary table, for each worker count given, and prints seconds per
cell, cells per second and the time the whole space would take at that rate. Example::

    python benchmarks/bench_build.py --kind backward --cells 200 --workers 1,2 --device cpu
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import tempfile
import time
from pathlib import Path

from snnbench.builders.build import build
from snnbench.builders.request import BuildRequest
from snnbench.builders.executors import LocalExecutor
from snnbench.builders.plan import select_cells
from snnbench.builders.stages import run_item


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", default="backward", choices=["forward", "backward"])
    ap.add_argument("--cells", type=int, default=200, help="sampled cells per measurement")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--preset", default="bench")
    ap.add_argument("--score-batch", type=int, default=64)
    ap.add_argument("--score-repeats", type=int, default=1)
    args = ap.parse_args()

    total = len(select_cells("all", args.kind))
    print(f"machine: {platform.processor() or platform.machine()}, device {args.device}; "
          f"{args.kind} space: {total:,} cells; {args.dataset}/{args.preset}, batch {args.score_batch} x {args.score_repeats}")
    for workers in (int(w) for w in args.workers.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bench.h5"
            request = BuildRequest(table=str(path), dataset=args.dataset, kind=args.kind, preset=args.preset,
                                   score_batch=args.score_batch, score_repeats=args.score_repeats,
                                   cells=f"sample:{args.cells}:1", train_epochs=0, device=args.device)
            stages = request.stages()
            executor = LocalExecutor(workers)
            # warm-up: start the workers and load the data on a few cells that are then skipped
            warm = dataclasses.replace(request, cells=f"sample:{2 * max(workers, 1)}:1").stages()
            for s in warm:
                s.batch = 1
            build(path, warm, work=run_item, executor=_Keep(executor), progress=False)
            start = time.perf_counter()
            report = build(path, stages, work=run_item, executor=executor, progress=False)
            seconds = time.perf_counter() - start
            n = report.stages[0].added
            per_cell = seconds / n
            print(f"workers {workers:>2}: {n} cells in {seconds:7.2f} s -> {per_cell * 1e3:7.1f} ms/cell "
                  f"({n / seconds:6.1f} cells/s); whole {args.kind} space: {per_cell * total / 3600:6.2f} h")


class _Keep:
    """An executor wrapper whose ``close`` keeps the pool alive (for the warm-up build)."""

    def __init__(self, inner: LocalExecutor) -> None:
        self.inner = inner

    def run(self, fn, items):  # type: ignore[no-untyped-def]
        return self.inner.run(fn, items)

    def close(self) -> None:
        pass

    def abort(self) -> None:
        self.inner.abort()


if __name__ == "__main__":
    main()
