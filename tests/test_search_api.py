"""One's own search on the simulated-time oracle (api.run with a function, api.mutate, Oracle's helpers and repr), on
the shipped digits table, checked against naive re-computations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from snnbench import api
from snnbench.space import Cell


@pytest.fixture(scope="module")
def bench() -> api.Benchmark:
    return api.load(dataset="digits")


def _naive_neighbours(bench: api.Benchmark, space: set[int], u: int) -> set[int]:
    """Cells of the oracle's (forward) space one entry change away from cell ``u``'s canonical matrix, by building
    every such matrix of the raw space (the input-output entry never 0: 5^5 x 4 = 12,500 matrices) and looking its
    canonical cell up."""
    base = bench.matrices[u].tolist()
    out = set()
    for i, j in itertools.combinations(range(4), 2):
        for op in range(5):
            if op == base[i][j] or (i, j, op) == (0, 3, 0):
                continue
            m = [row[:] for row in base]
            m[i][j] = op
            try:
                h = Cell(m).hash
            except ValueError:  # e.g. no input-output path
                continue
            v = bench.find(Cell(m).text)
            if v is not None and v in space and v != u:
                assert bench.hashes[v] == h
                out.add(v)
    return out


def test_own_search_pays_the_stored_times_and_stops_before_the_budget(bench: api.Benchmark) -> None:
    def greedy(oracle: api.Oracle, rng: np.random.Generator, steps: int = 10_000) -> None:
        u = oracle.random_cell(rng)
        oracle.train(u)
        for _ in range(steps):
            u = api.mutate(oracle, u, rng)
            oracle.train(u)

    budget = 400.0
    o = api.run(bench, greedy, budget, seed=3)
    again = api.run(bench, greedy, budget, seed=3)
    assert o.history == again.history and len(o.history) > 5  # same seed, same run
    paid = [u for _, u, _ in o.history]
    assert len(set(paid)) == len(paid)  # mutate proposes untrained cells only
    assert o.clock == pytest.approx(sum(float(bench.train_seconds[u]) for u in paid), rel=1e-12) and o.clock <= budget
    for t, u, value in o.history:
        assert value == bench.accuracy["val"][u] and bench.kind_array[u] == 0
    assert [t for t, _, _ in o.history] == pytest.approx(np.cumsum([bench.train_seconds[u] for u in paid]).tolist())
    best = max(o.history, key=lambda h: h[2])
    assert o.best == (best[1], best[2])
    assert api.run(bench, greedy, budget, seed=3, steps=2).history == o.history[:3]  # options reach the function


def test_mutate_gives_an_untrained_neighbour_and_neighbours_equal_a_brute_force(bench: api.Benchmark) -> None:
    o = api.Oracle(bench, budget=1e9)
    space = set(o.space.tolist())
    rng = np.random.default_rng(0)
    for u in rng.choice(o.space, 25, replace=False).tolist():
        near = _naive_neighbours(bench, space, u)
        assert set(o.neighbours(u)) == near
        for v in list(near)[:3]:
            o.train(v)
        child = api.mutate(o, u, rng)
        assert child not in o.trained and (child in near or not set(near) - set(o.trained))


def test_score_of_charges_the_stored_score_time_once(bench: api.Benchmark) -> None:
    o = api.Oracle(bench, budget=1e9, score="sahd")
    cells = [o.random_cell(np.random.default_rng(1)) for _ in range(5)]
    values = [o.score_of(u) for u in cells + cells]
    assert values[:5] == values[5:] == [float(bench.scores["sahd"][u]) for u in cells]
    seconds, _ = bench.scoring_seconds("sahd")
    assert o.clock == pytest.approx(sum(float(seconds[u]) for u in set(cells)), rel=1e-12)
    with pytest.raises(ValueError, match="no score"):
        api.Oracle(bench, budget=10).score_of(cells[0])


def test_a_runs_repr_is_one_short_line(bench: api.Benchmark) -> None:
    o = api.run(bench, "random", 3000, seed=0)
    text = repr(o)
    assert len(o.trained) > 100 and "\n" not in text and len(text) < 250
    u, value = o.best  # type: ignore[misc]
    assert f"trained={len(o.trained)} of {len(o.space)}" in text and f"{value:.4f}" in text and bench.hashes[u] in text
    assert "best=none" in repr(api.Oracle(bench, budget=10))


def test_train_to_an_epoch_pays_each_epoch_once(bench: api.Benchmark) -> None:
    o = api.Oracle(bench, budget=1e9)
    u, v = (int(x) for x in o.space[:2])
    time, val = bench.time_to_epoch(), bench.curve("val_acc")
    # naive: the whole training's seconds split in proportion to the stored epoch times, cumulated
    each = bench.curve("epoch_seconds")[u]
    reach = [float(bench.train_seconds[u]) * sum(each[:e]) / sum(each) for e in range(1, bench.epochs + 1)]
    assert o.train_to(u, 4) == val[u, 3] and o.clock == pytest.approx(reach[3], rel=1e-12)
    assert o.train_to(u, 2) == val[u, 1] and o.clock == pytest.approx(reach[3], rel=1e-12)  # reached: free
    assert o.train_to(u, 9) == val[u, 8] and o.clock == pytest.approx(reach[8], rel=1e-12)  # resumed from 4
    assert o.partial == {u: 9} and o.history == [] and not o.trained  # not trained to the end yet
    assert o.train(u) == bench.accuracy["val"][u]  # the rest of its training
    assert o.clock == pytest.approx(float(bench.train_seconds[u]), rel=1e-12) and o.partial == {}
    assert [(c, x) for _, c, x in o.history] == [(u, bench.accuracy["val"][u])]
    assert o.train_to(u, 3) == val[u, 2] and o.clock == pytest.approx(float(bench.train_seconds[u]), rel=1e-12)
    before = o.clock
    assert o.train_to(v, bench.epochs) == bench.accuracy["val"][v]  # the last epoch is a whole training
    assert o.clock - before == pytest.approx(float(bench.train_seconds[v]), rel=1e-12) and v in o.trained
    assert time[v, -1] == pytest.approx(float(bench.train_seconds[v]), rel=1e-12)
    tight = api.Oracle(bench, budget=reach[2] * 1.0001)
    tight.train_to(u, 3)
    with pytest.raises(api.BudgetExhausted):
        tight.train_to(u, 4)
    assert tight.clock == pytest.approx(reach[2], rel=1e-12) and tight.partial == {u: 3}
    with pytest.raises(ValueError, match="1 .. 12"):
        o.train_to(u, 13)
