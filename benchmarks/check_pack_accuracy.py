"""Float32 check of packs: the same (cell, seed) trainings packed and alone reach the same accuracies.

A pack gives each network its lone numbers up to float rounding (tests/test_packed.py checks 1e-9 in float64), and
float32 rounding differences grow during training. This trains ``--cells`` cells (half forward, half backward, as
``bench_training.py --packs`` draws them) x 2 seeds on digits with the bench protocol, once alone
(:func:`train_cell`) and once in packs of ``--pack`` rows in (cell, seed) order (:func:`train_pack`), and reports
per cell the test accuracy packed and alone (mean of the 2 seeds), their difference, and the seed-to-seed spread
(|seed 0 - seed 1| of the lone runs), then the mean packed-minus-alone difference with its 95% t interval and a
Wilcoxon test (scipy). The packed-minus-alone differences should look like the seed spread or smaller.

    python benchmarks/check_pack_accuracy.py --cells 30 --pack 4 [--epochs 12] [--processes 2]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing as mp
import time

import numpy as np
import torch
from scipy import stats

from snnbench.data import load_dataset
from snnbench.training import network_config_for, train_cell, train_config, train_pack


def _run(args: tuple[list[tuple[str, int]], int, int]) -> list[float]:
    """Test accuracies of ``rows`` trained in packs of ``pack`` (1: alone), in row order."""
    rows, pack, epochs = args
    torch.set_num_threads(1)
    data = load_dataset("digits")
    net, cfg = network_config_for(data, "bench"), train_config("bench", epochs=epochs)
    out: list[float] = []
    for start in range(0, len(rows), pack):
        group = rows[start:start + pack]
        if pack == 1:
            out.append(train_cell(group[0][0], data, net, cfg, seed=group[0][1])["test_acc"])
        else:
            out += [r["test_acc"] for r in train_pack([c for c, _ in group], data, net, cfg, [s for _, s in group])]
    return out


def main() -> None:
    from bench_training import bench_cells

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cells", type=int, default=30)
    p.add_argument("--pack", type=int, default=4)
    p.add_argument("--epochs", type=int, default=12, help="the bench budget is 12; fewer to shorten (say so)")
    p.add_argument("--processes", type=int, default=1)
    a = p.parse_args()
    cells = bench_cells(a.cells)
    rows = [(c, s) for c in cells for s in (0, 1)]
    t0 = time.perf_counter()
    acc = {}
    for pack in (1, a.pack):
        groups = [rows[i:i + pack] for i in range(0, len(rows), pack)]
        shares = [sum(groups[i::a.processes], []) for i in range(a.processes)]
        with cf.ProcessPoolExecutor(a.processes, mp_context=mp.get_context("spawn")) as pool:
            results = list(pool.map(_run, [(share, pack, a.epochs) for share in shares]))
        by_row = {row: v for share, res in zip(shares, results) for row, v in zip(share, res)}
        acc[pack] = np.array([[by_row[(c, s)] for s in (0, 1)] for c in cells])
    alone, packed = acc[1], acc[a.pack]
    diff = packed.mean(1) - alone.mean(1)
    spread = np.abs(alone[:, 0] - alone[:, 1])
    print(f"# {len(cells)} cells x 2 seeds on digits, bench protocol, {a.epochs} epochs; packs of {a.pack}; "
          f"{time.perf_counter() - t0:.0f} s")
    print(f"{'cell':22s} {'alone':>7s} {'packed':>7s} {'diff':>7s} {'seed spread':>11s}")
    for c, al, pk, d, sp in zip(cells, alone.mean(1), packed.mean(1), diff, spread):
        print(f"{c:22s} {al:7.4f} {pk:7.4f} {d:+7.4f} {sp:11.4f}")
    same = int((packed == alone).sum())
    print(f"rows with identical test accuracy: {same} of {packed.size}")
    print(f"mean |packed - alone| (per cell, seed mean): {np.abs(diff).mean():.4f} (median {np.median(np.abs(diff)):.4f}, "
          f"largest {np.abs(diff).max():.4f}); mean seed spread (alone): {spread.mean():.4f} (median "
          f"{np.median(spread):.4f}); mean accuracy alone {alone.mean():.4f}, packed {packed.mean():.4f}")
    half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
    print(f"packed - alone per cell: mean {diff.mean():+.4f}, 95% t interval [{diff.mean() - half:+.4f}, "
          f"{diff.mean() + half:+.4f}], Wilcoxon signed-rank p = {stats.wilcoxon(diff).pvalue:.2f}; cells whose "
          f"|packed - alone| is at most their own seed spread: {int((np.abs(diff) <= spread + 1e-9).sum())} of {len(cells)}")


if __name__ == "__main__":
    main()
