"""Offline NAS algorithms with simulated cost, on a table the builder makes (8 trained cells)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from api_tables import tiny_table, without_metric_seconds

from snnbench.api.algorithms import (ALGORITHMS, CompareSettings, Oracle, compare, pair_options, run, state_index,
                                     trajectory)
from snnbench.api.benchmark import Benchmark
from snnbench.space import NUM_OPS, Cell, canonical_batch, matrix_states, prune_batch, raw_matrices, states_to_matrix


def matrix_to_states(m: np.ndarray) -> list[int]:
    return matrix_states(m).tolist()  # type: ignore[no-any-return]

OBSERVE = "train"  # the tiny table's final train accuracies are distinct, so "the best cell" is one cell


@pytest.fixture(scope="module")
def bench() -> Benchmark:
    return Benchmark(tiny_table())


def _enough(bench: Benchmark) -> float:
    return float(np.nansum(bench.train_seconds) + np.nansum(bench.score_seconds)) * 1.01


def _options(name: str, bench: Benchmark) -> dict:
    return {"candidates": len(bench), "top": len(bench)} if name == "score_train" else {}


def _cell(o: Oracle, matrix: object) -> int | None:
    """Naive reference: canonicalise the proposal through the query path; None outside the search space."""
    try:
        u = o.bench.find(matrix)
    except ValueError:
        return None
    return u if u is not None and u in set(o.space.tolist()) else None


def test_state_encoding_round_trips() -> None:
    for m in raw_matrices("backward")[::997]:
        states = matrix_to_states(m)
        assert states_to_matrix(states) == m.tolist()


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_each_algorithm_finds_the_best_cell_with_enough_budget(bench: Benchmark, name: str) -> None:
    acc = bench.accuracy[OBSERVE]
    best = int(np.nanargmax(acc))
    assert np.sum(acc == acc[best]) == 1
    for seed in range(3):
        o = run(bench, name, _enough(bench), seed, observe=OBSERVE, score="sahd", **_options(name, bench))
        found = max(o.history, key=lambda h: h[2])[1]
        assert found == best, (name, seed)
        assert o.clock <= _enough(bench)


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_no_cell_is_paid_for_twice_and_runs_are_reproducible(bench: Benchmark, name: str) -> None:
    budget = 0.6 * _enough(bench)
    histories = []
    for seed in (0, 0, 1, 2, 3):
        o = run(bench, name, budget, seed, observe=OBSERVE, score="sahd", **_options(name, bench))
        cells = [u for _, u, _ in o.history]
        assert len(cells) == len(set(cells)) == len(o.trained)
        paid = sum(bench.train_seconds[u] for u in cells) + sum(bench.metric_seconds["sahd"][u] for u in o.scored)
        assert o.clock == pytest.approx(paid, rel=1e-12) and o.clock <= budget
        times = [t for t, _, _ in o.history]
        assert times == sorted(times)
        histories.append(o.history)
    assert histories[0] == histories[1]
    if name != "score_train":  # score_train trains the same top cells whatever the seed once all are scored
        assert any(h != histories[0] for h in histories[2:])


def test_isomorphic_and_unpruned_proposals_map_to_one_paid_cell(bench: Benchmark) -> None:
    o = Oracle(bench, budget=1e9, observe=OBSERVE)
    u = 0
    canonical = bench.matrices[u]
    raw = raw_matrices("forward")
    variants = raw[(canonical_batch(prune_batch(raw)) == canonical).all(axis=(1, 2))]
    assert len(variants) == bench.raw_counts["forward"][u] and Cell(variants[-1]).hash == bench.hashes[u]
    for m in variants:
        assert _cell(o, m) == u
        assert o.train(u) == bench.accuracy[OBSERVE][u]
    assert o.clock == bench.train_seconds[u] and len(o.history) == 1
    assert _cell(o, "0302 0030 3003 0000") is None  # valid, not in the table: outside the search space


def test_state_index_and_neighbours_equal_a_lookup_of_every_matrix(bench: Benchmark) -> None:
    """The precomputed index (the space's lookup table read through the view) against canonicalising each state
    vector's matrix (bench.find, the query path): every forward state vector, a sample of the backward ones."""
    import itertools

    o = Oracle(bench, budget=1e9, observe=OBSERVE)
    index = state_index(bench)
    states = np.array(list(itertools.product(*pair_options("forward"))))
    assert len(states) == (NUM_OPS - 1) * NUM_OPS ** 5
    got = o.cells_of_states(states)
    code = (2 * NUM_OPS - 1) ** np.arange(5, -1, -1)  # the pair code: base 9, first pair most significant
    for s, u, raw in zip(states, got, index[states @ code]):
        expected = _cell(o, states_to_matrix(s.tolist()))
        assert u == (-1 if expected is None else expected)
        assert raw == (-1 if expected is None else expected)  # every table cell here is in the search space
    backward = np.random.default_rng(0).integers(0, 2 * NUM_OPS - 1, size=(20000, 6))
    for s, raw in zip(backward, index[backward @ code]):
        try:
            expected = bench.find(states_to_matrix(s.tolist()))
        except ValueError:  # an invalid matrix (no input-output edge)
            expected = None
        assert raw == (-1 if expected is None else expected)
    for u in o.space:
        base = matrix_to_states(bench.matrices[u])
        naive: list[int] = []
        for p, options in enumerate(pair_options("forward")):
            for s in options:
                v = _cell(o, states_to_matrix(base[:p] + [s] + base[p + 1:])) if s != base[p] else None
                if v is not None and v != u and v not in naive:
                    naive.append(v)
        assert o.neighbours(int(u)) == naive


def test_budget_stops_a_run_before_it_is_passed(bench: Benchmark) -> None:
    cheapest = float(np.nanmin(bench.train_seconds))
    o = run(bench, "random", cheapest * 0.99, 0, observe=OBSERVE)
    assert o.clock == 0 and not o.history
    with pytest.raises(ValueError, match="budget"):
        run(bench, "random", 0, 0)
    with pytest.raises(ValueError, match="algorithm"):
        run(bench, "magic", 10, 0)


def test_trajectory_and_compare_equal_a_naive_best_so_far(bench: Benchmark, tmp_path: Path) -> None:
    budget = 0.5 * _enough(bench)
    o = run(bench, "evolution", budget, 4, observe=OBSERVE)
    times = np.linspace(0, budget, 30)
    got = trajectory(o, times, "test")
    for t, value in zip(times, got):
        seen = [(v, u) for tt, u, v in o.history if tt <= t]
        if not seen:
            assert np.isnan(value)
        else:
            best_u = max(seen, key=lambda s: s[0])[1]  # first of equal observed values wins
            first = next(u for tt, u, v in o.history if tt <= t and v == max(s[0] for s in seen))
            assert value == bench.accuracy["test"][first] and best_u == first
    result = compare(bench, CompareSettings(["random", "local"], budget, 3, observe=OBSERVE, split="test", points=10))
    finals = [trajectory(run(bench, "random", budget, s, observe=OBSERVE), np.array([budget]), "test")[0] for s in range(3)]
    assert result["algorithms"]["random"]["final_mean"] == pytest.approx(np.mean(finals))
    best = int(np.nanargmax(bench.accuracy[OBSERVE]))
    assert result["table_best"]["hash"] == bench.hashes[best]
    from snnbench.api.plots import plot_compare

    assert plot_compare(result, tmp_path / "c.png").stat().st_size > 0


def test_compare_progress_counts_every_run_on_stderr_and_changes_nothing(bench: Benchmark,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    budget = 0.2 * _enough(bench)
    quiet = compare(bench, CompareSettings(["random", "local"], budget, 3, observe=OBSERVE))
    assert capsys.readouterr() == ("", "")
    shown = compare(bench, CompareSettings(["random", "local"], budget, 3, observe=OBSERVE, progress=True))
    out, err = capsys.readouterr()
    assert shown == quiet and out == ""
    assert "compare" in err and "6/6" in err and "local" in err
    compare(bench, CompareSettings(["random"], budget, 2, observe=OBSERVE, progress=None))  # stderr is not a terminal
    assert capsys.readouterr() == ("", "")


def test_compare_runs_score_train_under_each_named_score(bench: Benchmark) -> None:
    budget = _enough(bench)
    opts: dict[str, dict[str, Any]] = {"score_train": {"candidates": 4, "top": 2}}
    result = compare(bench, CompareSettings(["score_train:hd", "score_train"], budget, 3, observe=OBSERVE, score="sahd",
                                            points=200, options=opts))
    for entry, metric in (("score_train:hd", "hd"), ("score_train", "sahd")):
        finals = [trajectory(run(bench, "score_train", budget, s, observe=OBSERVE, score=metric, **opts["score_train"]),
                             np.array([budget]), "test")[0] for s in range(3)]
        assert result["algorithms"][entry]["final_mean"] == pytest.approx(np.mean(finals))
    curves = [trajectory(run(bench, "score_train", budget, s, observe=OBSERVE, score="hd", **opts["score_train"]),
                         np.array(result["times"]), "test") for s in range(3)]
    expected = [float(np.mean(c)) if np.isfinite(c).all() else None for c in np.array(curves).T]
    assert result["algorithms"]["score_train:hd"]["curve_mean"] == pytest.approx(expected)
    assert None in expected  # the curve starts only once every run holds a trained cell
    for bad in ("evolution:hd", "magic"):
        with pytest.raises(ValueError, match="algorithm"):
            compare(bench, CompareSettings([bad], budget, 1, observe=OBSERVE))
    with pytest.raises(ValueError, match="score: 'nope' not in the view"):
        compare(bench, CompareSettings(["score_train:nope"], budget, 1, observe=OBSERVE))
    with pytest.raises(ValueError, match="algorithm: none given"):
        compare(bench, CompareSettings([], budget, 1, observe=OBSERVE))


@pytest.mark.parametrize("name", ["random", "evolution", "local"])
def test_proposals_are_untrained_cells_and_the_whole_space_gets_trained(bench: Benchmark, name: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Random search and evolution never propose a trained cell (a free repeat); local search restarts only at
    untrained cells; with budget enough, each trains the whole space without a stall."""
    import snnbench.api.algorithms

    calls: list[tuple[int, bool]] = []
    train, untrained_cell = snnbench.api.algorithms.Oracle.train, snnbench.api.algorithms.Oracle.untrained_cell

    def spy(o: Oracle, u: int) -> float:
        calls.append((u, u in o.trained))
        return train(o, u)

    restarts: list[tuple[int, bool]] = []

    def spy_restart(o: Oracle, rng: np.random.Generator) -> int:
        u = untrained_cell(o, rng)
        restarts.append((u, u in o.trained))
        return u

    monkeypatch.setattr(snnbench.api.algorithms.Oracle, "train", spy)
    monkeypatch.setattr(snnbench.api.algorithms.Oracle, "untrained_cell", spy_restart)
    for seed in range(5):
        calls.clear()
        o = run(bench, name, 1e12, seed, observe=OBSERVE)
        assert len(o.trained) == len(o.space) and o.stall == 0
        assert not any(repeat for _, repeat in restarts)
        if name != "local":  # local search evaluates a trained neighbour again, for free
            assert [u for u, _ in calls] == [u for _, u, _ in o.history] and not any(r for _, r in calls)


def test_untrained_cell_is_uniform_over_the_untrained(bench: Benchmark) -> None:
    from snnbench.api.algorithms import BudgetExhausted

    o = Oracle(bench, budget=1e12, observe=OBSERVE)
    for u in o.space[:-2].tolist():
        o.train(u)
    rng = np.random.default_rng(0)
    draws = [o.untrained_cell(rng) for _ in range(2000)]
    rest = o.space[-2:].tolist()
    assert set(draws) == set(rest) and abs(draws.count(rest[0]) - 1000) < 4 * np.sqrt(500)
    for u in rest:
        o.train(u)
    with pytest.raises(BudgetExhausted):
        o.untrained_cell(rng)


@pytest.mark.parametrize("budget", [float("nan"), float("inf"), -1.0, 0, "10", True])
def test_a_budget_that_is_not_a_positive_finite_number_is_refused(bench: Benchmark, budget: Any) -> None:
    with pytest.raises(ValueError, match="budget: expected a positive finite number of seconds"):
        run(bench, "random", budget, 0, observe=OBSERVE)
    with pytest.raises(ValueError, match="budget"):
        compare(bench, CompareSettings(["random"], budget, 1, observe=OBSERVE))


@pytest.mark.parametrize("algorithm, options, message", [
    ("evolution", {"population": 0}, "evolution: option population must be an integer >= 1, got 0"),
    ("evolution", {"sample": 2.5}, "option sample must be an integer >= 1"),
    ("evolution", {"popsize": 10}, "evolution: unknown option 'popsize' \\(it takes: population, sample\\)"),
    ("random", {"population": 10}, "random: unknown option 'population' \\(it takes: none\\)"),
    ("reinforce", {"momentum": 1.0}, "option momentum must be a number in \\[0, 1\\)"),
    ("reinforce", {"lr": float("nan")}, "option lr must be a positive finite number"),
    ("score_train", {"candidates": 5, "top": 10}, "top \\(10\\) is more than candidates \\(5\\)"),
    ("score_train", {"top": True}, "option top must be an integer >= 1"),
])
def test_bad_algorithm_options_are_refused(bench: Benchmark, algorithm: str, options: dict, message: str) -> None:
    """An option the algorithm does not take, or out of its range, was silently ignored or crashed mid-run."""
    with pytest.raises(ValueError, match=message):
        run(bench, algorithm, _enough(bench), 0, observe=OBSERVE, **options)
    with pytest.raises(ValueError, match=message):
        compare(bench, CompareSettings(["random"], _enough(bench), 1, observe=OBSERVE, options={algorithm: options}))


def test_bad_compare_arguments_are_refused(bench: Benchmark) -> None:
    for runs, points in ((0, 50), (-1, 50), (1, 0), (1.5, 50)):
        with pytest.raises(ValueError, match="runs and points must be integers >= 1"):
            compare(bench, CompareSettings(["random"], 100.0, runs, observe=OBSERVE, points=points))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got the string 'random'"):
        compare(bench, CompareSettings("random", 100.0, 1, observe=OBSERVE))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="algorithm: expected one of .*, got 'evol'"):
        compare(bench, CompareSettings(["random"], 100.0, 1, observe=OBSERVE, options={"evol": {}}))


def test_table_best_names_ties_and_the_best_reported_accuracy() -> None:
    b = Benchmark(tiny_table())  # a fresh view whose accuracies this test may change
    val, test = b.accuracy["val"], b.accuracy["test"]
    space = np.flatnonzero(np.isfinite(val) & np.isfinite(b.train_seconds))
    val[space[:3]] = 2.0  # three cells tie on the best observed accuracy
    best = compare(b, CompareSettings(["random"], _enough(b), 1, observe="val", split="test"))["table_best"]
    assert best["tied"] == 3 and best["hash"] == b.hashes[space[0]] and best["val"] == 2.0
    assert best["test"] == pytest.approx(float(np.mean(test[space[:3]])))
    assert best["max_test"] == float(np.max(test[space]))


def test_scoring_charges_the_metrics_own_stored_time_else_the_whole_rows(bench: Benchmark, tmp_path: Path) -> None:
    """A scored cell costs its stored ``metric_seconds/METRIC`` when every cell has it, else (an older table, or one
    row without it) the score row's ``seconds`` for every cell, never a mix; ``score_charge`` says which."""
    legacy = Benchmark(without_metric_seconds(tiny_table(), tmp_path / "legacy.h5"))
    mixed = Benchmark(without_metric_seconds(tiny_table(), tmp_path / "mixed.h5", rows=1))
    assert (bench.metric_seconds["hd"] < bench.score_seconds).all()  # so the two charges tell apart
    for b, m, charged, column in ((bench, "hd", bench.metric_seconds["hd"], "metric_seconds/hd"),
                                  (legacy, "hd", bench.score_seconds, "seconds"), (mixed, "sahd", bench.score_seconds, "seconds")):
        o = run(b, "score_train", 1e9, 0, observe=OBSERVE, score=m, candidates=5, top=2)
        assert o.score_charge == column and len(o.scored) == 5
        assert o.clock == pytest.approx(sum(charged[u] for u in o.scored) + sum(b.train_seconds[u] for u in o.trained), rel=1e-12)
        got = compare(b, CompareSettings([f"score_train:{m}", "random"], 1e9, 1, observe=OBSERVE,
                                         options={"score_train": {"candidates": 5, "top": 2}}))
        assert got["algorithms"][f"score_train:{m}"]["score_charge"] == column and got["algorithms"]["random"]["score_charge"] is None
    assert run(bench, "score_train", 1e9, 0, observe=OBSERVE, score="hd", score_cost=0.5).score_charge == "given"


def test_a_given_score_cost_is_charged_per_scored_cell(bench: Benchmark) -> None:
    """The paper's search charged one metric's own time per scored cell instead of the stored score seconds
    (which time every metric of the protocol together)."""
    o = run(bench, "score_train", 1e9, 0, observe=OBSERVE, score="hd", score_cost=0.25, candidates=5, top=2)
    assert len(o.scored) == 5 and len(o.trained) == 2
    assert o.clock == pytest.approx(5 * 0.25 + sum(bench.train_seconds[u] for u in o.trained), rel=1e-12)
    result = compare(bench, CompareSettings(["score_train:hd", "score_train", "random"], 1e9, 2, observe=OBSERVE,
                                            score="sahd", options={"score_train": {"candidates": 5, "top": 2}},
                                            score_costs={"hd": 0.25}))
    runs = [run(bench, "score_train", 1e9, s, observe=OBSERVE, score="sahd", candidates=5, top=2) for s in range(2)]
    assert result["algorithms"]["score_train:hd"]["score_cost"] == 0.25
    assert result["algorithms"]["score_train"]["score_cost"] is None and result["algorithms"]["random"]["score_cost"] is None
    assert result["algorithms"]["score_train"]["seconds_mean"] == pytest.approx(np.mean([r.clock for r in runs]))
    hd = [run(bench, "score_train", 1e9, s, observe=OBSERVE, score="hd", score_cost=0.25, candidates=5, top=2) for s in range(2)]
    assert result["algorithms"]["score_train:hd"]["seconds_mean"] == pytest.approx(np.mean([r.clock for r in hd]))
    with pytest.raises(ValueError, match="score: 'nope' not in the view"):
        compare(bench, CompareSettings(["score_train"], 10, 1, observe=OBSERVE, score_costs={"nope": 0.1}))
    for bad in (float("nan"), -0.5, True):
        with pytest.raises(ValueError, match="score cost"):
            run(bench, "score_train", 10, 0, observe=OBSERVE, score_cost=bad)


def test_a_run_cycling_among_paid_cells_ends(bench: Benchmark) -> None:
    """Free repeats (a policy that has converged on trained cells) end a run after max_stall, at no cost."""
    from snnbench.api.algorithms import BudgetExhausted

    o = Oracle(bench, budget=1e12, max_stall=50)
    u = int(o.space[0])
    first = o.train(u)
    paid = o.clock
    for _ in range(50):
        assert o.train(u) == first
    with pytest.raises(BudgetExhausted):
        o.train(u)
    assert o.clock == paid and len(o.trained) == 1


def test_each_search_space_gets_its_own_cached_index() -> None:
    """Oracles of one view with different spaces (score given or not) share nothing they should not: a cell
    without a score is outside the score-guided space only, whichever Oracle is built first."""
    for order in ((None, "sahd"), ("sahd", None)):
        b = Benchmark(tiny_table())  # a fresh view: nothing cached yet
        b.scores["sahd"][0] = np.nan  # cell 0 has no SAHD score in this view
        states = np.array([matrix_to_states(m) for m in b.matrices])
        got = {score: Oracle(b, budget=1e9, observe=OBSERVE, score=score).cells_of_states(states) for score in order}
        assert got[None].tolist() == list(range(len(b)))
        assert got["sahd"].tolist() == [-1, *range(1, len(b))]


def test_library_methods_are_refused_clearly_when_unknown_or_their_extra_is_missing(bench: Benchmark,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from snnbench.api import algorithms
    from snnbench.cli import main

    with pytest.raises(ValueError, match="syne:asha"):
        compare(bench, CompareSettings(["syne:bogus"], 10.0, 1))
    with pytest.raises(ValueError, match="takes no options"):
        run(bench, "optuna:tpe", 10.0, 0, population=3)
    monkeypatch.setitem(algorithms.LIBRARIES, "syne", ("snnbench.api.no_such_adapter", ("asha",), "synetune"))
    with pytest.raises(ImportError, match=r"snnbench\[synetune\]"):
        compare(bench, CompareSettings(["random", "syne:asha"], 10.0, 1))
    out = CliRunner().invoke(main, ["compare", "--table", str(tiny_table()), "--algorithms", "random,syne:asha",
                                    "--budget", "10"])
    assert out.exit_code == 2 and "snnbench[synetune]" in out.output and len(out.output.strip().splitlines()) == 1
