"""Query-layer speed on a synthetic table of the whole backward space (102,596 cells).

Writes the table through ``snnbench.table.write_table`` (a score protocol on every cell, a 1-seed
train protocol with 4-epoch curves and per-layer spikes on every cell, values synthetic), then measures side by side:
open time, ``query`` p50/p99 (fresh cells, repeated cells, other matrix forms, against building
``snnbench.space.Cell`` + ``.hash``), and replay time (1,000 trials at N = 5,000).

    python benchmarks/bench_api.py [--keep PATH] [--against OLD_BENCHMARK_PY]

``--against FILE`` also loads another version of ``api/benchmark.py`` (e.g. ``git show main:api/benchmark.py >
/tmp/old.py``) and times its ``query`` and this one's side by side, interleaved in rounds on the same cells.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from snnbench.space import Cell, space
from snnbench.table import SPIKE_LAYERS, Protocol, protocol_id, write_table


def synthetic_table(path: Path, seed: int = 0) -> None:
    sp = space()
    u = len(sp.matrices)
    rng = np.random.default_rng(seed)
    quality = rng.normal(size=u) + 0.3 * (sp.matrices != 0).sum(axis=(1, 2))
    hashes = np.array(sp.hashes, dtype="S16")
    s_settings = {"synthetic": True, "score": {"metrics": ["sahd", "hd"]}, "dataset": {"name": "synthetic"}}
    score = Protocol(protocol_id("score", s_settings), "score", s_settings, hash=hashes, seed=np.zeros(u, np.int64), columns={
        "scores/sahd": quality + rng.normal(size=u), "scores/hd": quality + 2 * rng.normal(size=u),
        "singular/sahd": np.zeros(u, bool), "singular/hd": np.zeros(u, bool),
        "params": rng.integers(1000, 5000, size=u), "seconds": rng.uniform(0.5, 1.5, size=u),
        "metric_seconds/sahd": np.full(u, 0.1), "metric_seconds/hd": np.full(u, 0.1)})
    t_settings = {"synthetic": True, "train": {"epochs": 4}, "dataset": {"name": "synthetic"}}
    final = 1 / (1 + np.exp(-quality))
    curves = final[:, None] * np.linspace(0.4, 1.0, 4)[None]
    layers = np.where(rng.random((u, len(SPIKE_LAYERS))) < 0.2, rng.uniform(0, 1e3, (u, len(SPIKE_LAYERS))), np.nan)
    layers[:, [SPIKE_LAYERS.index(n) for n in ("lif1", "lif2", "lif3")]] = rng.uniform(0, 1e3, (u, 3))  # about 8 layers a cell
    train = Protocol(protocol_id("train", t_settings), "train", t_settings, hash=hashes, seed=np.zeros(u, np.int64), columns={
        "val_acc": final + 0.01 * rng.normal(size=u), "test_acc": final, "train_seconds": rng.uniform(20, 60, size=u),
        "params": score.columns["params"], "spikes_per_image": rng.uniform(1e3, 1e4, size=u), "spike_rate": rng.uniform(0, 0.2, size=u),
        "curves/train_acc": curves, "curves/val_acc": curves, "curves/test_acc": curves, "curves/lr": np.tile([0.1, 0.07, 0.03, 0.0], (u, 1)),
        "curves/train_loss": 1 - curves, "curves/epoch_seconds": np.full((u, 4), 10.0),
        "spike_layers/spikes_per_image": layers, "spike_layers/rate": layers / 1e4, "seconds": rng.uniform(20, 60, size=u)})
    write_table(path, [score, train])


def pct(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q)) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, help="write (or reuse) the synthetic table here")
    ap.add_argument("--against", type=Path, help="another version of api/benchmark.py to time side by side")
    args = ap.parse_args()
    path = args.keep or Path(tempfile.mkdtemp()) / "whole-backward.h5"
    if not path.exists():
        t = time.perf_counter()
        synthetic_table(path)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t:.1f} s")

    import timeit

    calib = min(timeit.repeat(lambda: sum(range(1000)), number=2000, repeat=7)) / 2000 * 1e6
    print(f"machine load reference: sum(range(1000)) takes {calib:.1f} us here (about 6-8 us on an idle modern core)")
    from snnbench.api.benchmark import Benchmark  # imported after writing, so the writer's space() is not counted
    from snnbench.api.replay import replay
    from snnbench.table import open_table

    t = time.perf_counter()
    open_table(path)
    read = time.perf_counter() - t
    opens = []
    for _ in range(3):
        t = time.perf_counter()
        bench = Benchmark(path)
        opens.append(time.perf_counter() - t)
    print(f"open: {min(opens):.3f} s (best of 3; of which snnbench.table.open_table {read:.3f} s), {len(bench):,} cells")

    rng = np.random.default_rng(1)
    sp = space()
    order = rng.permutation(len(sp.matrices))[:20000]
    forms = {
        "fresh cells, nested list": [sp.matrices[i].tolist() for i in order],
        "fresh cells, text form": [Cell(sp.matrices[i], nodes=None).text for i in order[:5000]],
        "fresh cells, int64 array": [sp.matrices[i].astype(np.int64) for i in order[:5000]],
        "fresh cells, float array": [sp.matrices[i].astype(np.float64) for i in order[:5000]],
    }
    for name, items in forms.items():
        times = []
        for m in items:
            t = time.perf_counter()
            bench.query(m)
            times.append(time.perf_counter() - t)
        print(f"query ({name}): p50 {pct(times, 50):.1f} us, p99 {pct(times, 99):.1f} us")
    from snnbench import api

    times = []
    for m in forms["fresh cells, nested list"][:5000]:
        t = time.perf_counter()
        api.query(m, path)  # the module function: resolves the path and stats the file before the lookup
        times.append(time.perf_counter() - t)
    print(f"api.query (fresh cells, nested list, table path given): p50 {pct(times, 50):.1f} us, p99 {pct(times, 99):.1f} us")
    items = forms["fresh cells, nested list"][:2000]
    times = []
    for m in items * 5:
        t = time.perf_counter()
        bench.query(m)
        times.append(time.perf_counter() - t)
    print(f"query (repeated cells, nested list): p50 {pct(times, 50):.1f} us, p99 {pct(times, 99):.1f} us")
    cells_t = []
    for m in items:
        t = time.perf_counter()
        Cell(m).hash
        cells_t.append(time.perf_counter() - t)
    q50 = pct(times, 50)
    print(f"reference Cell(m).hash alone: p50 {pct(cells_t, 50):.1f} us -> query is {pct(cells_t, 50) / q50:.1f}x faster")

    if args.against is not None:
        against(args.against, path, bench, items)

    replay(bench, 10, 10, ("sahd",))  # warm: space() enumeration and the alias table, once per process
    for n in (100, 1000, 5000):
        t = time.perf_counter()
        out = replay(bench, n, 1000, ("sahd", "hd"))
        dt = time.perf_counter() - t
        m = out["methods"]
        print(f"replay 1,000 trials at N = {n:,} (sahd, hd, random, oracle): {dt:.3f} s  "
              f"[sahd {m['sahd']['mean']:.4f}, random {m['random']['mean']:.4f}, oracle {m['oracle']['mean']:.4f}]")


def against(old_file: Path, path: Path, bench: Any, items: list) -> None:
    """p50 of ``query`` (means, and one seed) of the view against a view opened by another version of the module,
    interleaved: 5 rounds over the same fresh cells, each round timing both."""
    spec = importlib.util.spec_from_file_location("snnbench.api._benchmark_against", old_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    old = module.Benchmark(path)
    for seed in (None, 0):
        times: dict[str, list[float]] = {"this": [], "against": []}
        for _ in range(5):
            for name, view in (("against", old), ("this", bench)):
                for m in items:
                    t = time.perf_counter()
                    view.query(m, seed)
                    times[name].append(time.perf_counter() - t)
        this, other = pct(times["this"], 50), pct(times["against"], 50)
        what = "means" if seed is None else "seed 0"
        print(f"query ({what}), side by side: this {this:.1f} us, {old_file} {other:.1f} us p50 -> ratio this/against "
              f"{this / other:.2f}")


if __name__ == "__main__":
    main()
