"""Wall seconds per simulated NAS run on the shipped digits table: the library methods (Syne Tune's tuner on its
simulator backend, Optuna's studies) against the built-in algorithms, side by side in one process.

Each entry runs ``--seeds`` runs of ``--budget`` simulated seconds (``api.algorithms.run``); it prints the median
and the max wall seconds per run and the cells trained. Needs the synetune and optuna extras for their entries
(an entry whose extra is absent is left out, and said so).

    python benchmarks/bench_libraries.py [--budget 1500] [--seeds 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from snnbench import api
from snnbench.api.algorithms import LIBRARIES, MissingExtra, _library_runner, run

BUILT_IN = ("random", "evolution", "local", "reinforce")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=1500.0)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    bench = api.load()
    entries = list(BUILT_IN)
    for prefix, (_, methods, extra) in LIBRARIES.items():
        try:
            _library_runner(prefix)
        except MissingExtra:
            print(f"{prefix}: left out (the {extra} extra is not installed)")
            continue
        entries += [f"{prefix}:{m}" for m in methods]
    run(bench, "random", 1.0, 0)  # the view's index, built once and shared by every run
    print(f"digits, budget {args.budget:g} simulated s, {args.seeds} runs each")
    print(f"{'entry':<16} {'median s/run':>12} {'max s/run':>10} {'cells trained':>14}")
    for entry in entries:
        walls, cells = [], []
        for seed in range(args.seeds):
            start = time.perf_counter()
            o = run(bench, entry, args.budget, seed)
            walls.append(time.perf_counter() - start)
            cells.append(len(o.trained))
        print(f"{entry:<16} {np.median(walls):12.3f} {max(walls):10.3f} {np.mean(cells):14.1f}")


if __name__ == "__main__":
    main()
