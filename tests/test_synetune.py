"""The Syne Tune blackbox of a table view against api.query, and Syne Tune's schedulers run on it by the simulator
(needs the synetune extra: skipped without it)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("syne_tune")
pytest.importorskip("huggingface_hub")

from api_tables import curve_table  # noqa: E402

import api  # noqa: E402
from snnbench.api.algorithms import run, trajectory  # noqa: E402
from snnbench.api.benchmark import Benchmark  # noqa: E402
from snnbench.api.synetune import METHODS, OBJECTIVES, SnnBlackbox, simulate  # noqa: E402
from snnbench.space import pairs, raw_matrices  # noqa: E402


@pytest.fixture(scope="module")
def bench() -> Benchmark:
    return Benchmark(curve_table())


def _config(matrix: np.ndarray) -> dict[str, int]:
    """A forward matrix as the blackbox's configuration: entry M[i][j] of each pair."""
    return {f"e{i}{j}": int(matrix[i][j]) for i, j in pairs()}


def _expected(rec: dict, epoch: int) -> dict[str, float]:
    """The objectives at ``epoch`` (1-based) from a record of ``api.query``, by the module's definitions."""
    c = rec["curves"]
    each = np.array(c["epoch_seconds"])
    test = c["test_acc"][epoch - 1]
    return {"val_acc": c["val_acc"][epoch - 1], "test_acc": np.nan if test is None else test,
            "val_error": 1 - c["val_acc"][epoch - 1],
            "elapsed_time": rec["train_seconds"] * each[:epoch].sum() / each.sum(),
            "spikes_per_image": rec["spikes"]["per_image"], "params": rec["params"]}


def test_blackbox_answers_what_api_query_holds_on_the_digits_table() -> None:
    bench = api.load()
    box = SnnBlackbox(bench)
    assert box.num_seeds == 2 and list(box.fidelity_values) == list(range(1, 13))
    rng = np.random.default_rng(0)
    raw = raw_matrices("forward")
    for m in raw[rng.choice(len(raw), 40, replace=False)]:  # unpruned and isomorphic members included
        rec = api.query(m)
        assert box.cell(_config(m)) == bench.index_of_hash(rec["hash"])
        for epoch in rng.choice(np.arange(1, 13), 3, replace=False).tolist():
            got = box.objective_function(_config(m), fidelity={"epoch": epoch})
            assert list(got) == list(OBJECTIVES)
            np.testing.assert_allclose([got[k] for k in OBJECTIVES], [_expected(rec, epoch)[k] for k in OBJECTIVES],
                                       rtol=1e-12)
        seed = int(rng.integers(2))
        rec_seed = api.query(m, seed=box.seeds[seed])
        whole = box.objective_function(_config(m), seed=seed)  # every epoch: [12, objectives]
        assert whole.shape == (12, len(OBJECTIVES))
        np.testing.assert_allclose(whole[-1], [_expected(rec_seed, 12)[k] for k in OBJECTIVES], rtol=1e-12)
        assert whole[-1, 3] == pytest.approx(rec_seed["train_seconds"])


def test_config_space_is_every_valid_forward_matrix_and_untrained_cells_are_dead_ends(bench: Benchmark) -> None:
    box = SnnBlackbox(bench)
    sizes = [len(d.categories) for d in box.configuration_space.values()]
    assert int(np.prod(sizes)) == len(raw_matrices("forward")) == 12500
    assert 0 not in box.configuration_space["e03"].categories
    held = inside = 0
    for m in raw_matrices("forward")[::37]:
        u = box.cell(_config(m))
        expect = bench.find(m)
        assert u == (-1 if expect is None else expect)
        got = box.objective_function(_config(m), fidelity=3)
        if u < 0:
            assert (got["val_acc"], got["val_error"], got["elapsed_time"]) == (0.0, 1.0, 0.0)
            assert np.isnan(got["spikes_per_image"])
        else:
            inside += 1
            assert got["val_acc"] == pytest.approx(bench.record(u)["curves"]["val_acc"][2])
        held += 1
    assert 0 < inside < held


@pytest.mark.parametrize("method", METHODS)
def test_a_simulated_run_stays_within_budget_and_ends_on_a_cell_the_table_holds(bench: Benchmark, method: str) -> None:
    budget = 2.5 * float(np.nansum(bench.train_seconds))  # about 25 full trainings among dead ends
    runs = [run(bench, f"syne:{method}", budget, seed) for seed in (0, 0, 1)]
    o = runs[0]
    assert o.history and o.clock <= budget
    assert all(t <= budget for t, _, _ in o.history)
    curves = {u: bench.record(u)["curves"]["val_acc"] for u in o.trained}
    for t, u, v in o.history:  # each observation is the cell's validation accuracy at some epoch
        assert np.isfinite(bench.accuracy["val"][u]) and any(v == pytest.approx(x) for x in curves[u])
    final = trajectory(o, np.array([budget]))[0]
    best = max(o.history, key=lambda h: h[2])[1]
    assert final == bench.accuracy["test"][best]
    assert runs[1].history == o.history  # same seed, same run
    assert runs[2].history != o.history


def test_multi_fidelity_methods_stop_trainings_early_and_the_others_do_not() -> None:
    bench, budget, epochs = api.load(), 300.0, 12  # the digits table: every cell trained, 12 epochs
    for method in METHODS:
        results = simulate(bench, method, budget, 0)
        assert results and all(r["time"] <= budget for r in results)
        last: dict[int, int] = {}
        for r in results:  # each trial reports its epochs in order, each the table's value
            assert r["epoch"] == last.get(r["trial"], 0) + 1
            last[r["trial"]] = r["epoch"]
            if r["cell"] >= 0:
                assert r["val_acc"] == bench.record(r["cell"])["curves"]["val_acc"][r["epoch"] - 1]
        ended = [e for t, e in last.items() if t != max(last)]  # the last trial may be cut by the budget
        stopped = [e for e in ended if e < epochs]
        assert bool(stopped) == (method in ("asha", "hyperband", "moasha")), (method, ended)


def test_compare_and_the_cli_take_syne_methods_by_name(bench: Benchmark) -> None:
    from click.testing import CliRunner

    from snnbench.cli import main

    budget = float(np.nansum(bench.train_seconds))
    result = api.compare(bench, api.CompareSettings(["random", "syne:asha", "syne:rea"], budget, 2, seed=3))
    for name in ("syne:asha", "syne:rea"):
        finals = [trajectory(run(bench, name, budget, 3 + r), np.array(result["times"]))[-1] for r in range(2)]
        assert result["algorithms"][name]["final_mean"] == pytest.approx(np.mean(finals))
    out = CliRunner().invoke(main, ["compare", "--table", str(curve_table()), "--algorithms", "syne:hyperband,random",
                                    "--budget", str(budget), "--runs", "2"])
    assert out.exit_code == 0, out.output
    assert "syne:hyperband" in out.output
    bad = CliRunner().invoke(main, ["compare", "--table", str(curve_table()), "--algorithms", "syne:bogus",
                                    "--budget", "10"])
    assert bad.exit_code == 2 and "syne:asha" in bad.output and len(bad.output.strip().splitlines()) == 1
    with pytest.raises(ValueError, match="validation"):  # the blackbox reports validation curves only
        api.compare(bench, api.CompareSettings(["random", "syne:asha"], budget, 1, observe="train"))
