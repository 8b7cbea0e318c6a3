"""Pareto fronts and hypervolume (api.pareto) against brute force, and compare's hypervolume of each run."""

from __future__ import annotations

import numpy as np
import pytest
from api_tables import tiny_table

from snnbench.api.algorithms import CompareSettings, compare, run
from snnbench.api.benchmark import Benchmark
from snnbench.api.pareto import front, hypervolume


def _dominated(acc: np.ndarray, cost: np.ndarray, i: int) -> bool:
    """Naive: some point at least as accurate and at most as costly, strictly better in one."""
    return any(acc[j] >= acc[i] and cost[j] <= cost[i] and (acc[j] > acc[i] or cost[j] < cost[i])
               for j in range(len(acc)) if j != i)


def _naive_volume(acc: np.ndarray, cost: np.ndarray, ref_acc: float, ref_cost: float, grid: int = 4000) -> float:
    """The union of the points' boxes ``[cost, ref_cost] x [ref_acc, acc]``, by a midpoint grid over cost."""
    xs = (np.arange(grid) + 0.5) / grid * ref_cost
    best = np.array([max([a for a, c in zip(acc, cost) if c <= x and a > ref_acc], default=ref_acc) for x in xs])
    return float(np.sum(best - ref_acc) / grid)


def test_front_is_the_set_of_non_dominated_points() -> None:
    rng = np.random.default_rng(0)
    for trial in range(30):
        n = int(rng.integers(1, 40))
        acc = rng.integers(0, 8, n) / 8.0  # ties on both axes
        cost = rng.integers(0, 8, n).astype(float)
        if trial % 3 == 0:
            acc[rng.integers(n)] = np.nan
        ok = np.isfinite(acc)
        idx = front(acc, cost)
        held = np.flatnonzero(ok)
        naive = [i for k, i in enumerate(held) if not _dominated(acc[held], cost[held], k)]
        # among exact duplicates the front keeps one (the first index)
        kept = {(acc[i], cost[i]) for i in idx}
        assert kept == {(acc[i], cost[i]) for i in naive}
        assert len(idx) == len(kept)
        assert list(cost[idx]) == sorted(cost[idx]) and list(acc[idx]) == sorted(acc[idx])


def test_hypervolume_equals_a_hand_computed_area_and_a_grid() -> None:
    acc, cost = np.array([0.5, 0.8, 0.9, 0.6]), np.array([1.0, 2.0, 4.0, 3.0])
    # boxes above 0.4 up to cost 5 (normalised by 5): [1,2]x0.1 + [2,4]x0.4 + [4,5]x0.5 = 0.1 + 0.8 + 0.5 = 1.4 -> / 5
    assert hypervolume(acc, cost, 0.4, 5.0) == pytest.approx(1.4 / 5)
    assert hypervolume(acc, cost, 0.95, 5.0) == 0.0
    assert hypervolume(acc, cost, 0.4, 0.5) == 0.0
    rng = np.random.default_rng(1)
    for _ in range(10):
        a, c = rng.random(12), rng.random(12) * 10
        assert hypervolume(a, c, 0.3, 8.0) == pytest.approx(_naive_volume(a, c, 0.3, 8.0), abs=2e-3)
    with pytest.raises(ValueError, match="reference"):
        hypervolume(acc, cost, 0.0, 0.0)


def test_compare_hypervolume_is_each_runs_share_of_the_whole_space() -> None:
    bench = Benchmark(tiny_table())
    split = "train"
    space = run(bench, "random", 1e-9, 0, observe=split).space
    spikes = bench.spikes_per_image
    ref = (float(np.median(bench.accuracy[split][space])), float(spikes[space].max()))
    whole = hypervolume(bench.accuracy[split][space], spikes[space], *ref)
    enough = float(np.nansum(bench.train_seconds)) * 1.01
    budget = 0.5 * enough
    result = compare(bench, CompareSettings(["random", "evolution"], budget, 3, observe=split))
    for name, r in result["algorithms"].items():
        shares = []
        for seed in range(3):
            o = run(bench, name, budget, seed, observe=split)
            cells = sorted(o.trained)
            shares.append(hypervolume(bench.accuracy[split][cells], spikes[cells], *ref) / whole)
        assert r["hypervolume_mean"] == pytest.approx(np.mean(shares))
        assert r["hypervolume_std"] == pytest.approx(np.std(shares))
    full = compare(bench, CompareSettings(["random"], enough, 2, observe=split))["algorithms"]["random"]
    assert full["hypervolume_mean"] == pytest.approx(1.0) and full["trained_mean"] == len(space)
