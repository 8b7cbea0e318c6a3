"""Optuna's samplers charged simulated time by the oracle (needs the optuna extra: skipped without it)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("optuna")

from api_tables import curve_table  # noqa: E402

from snnbench.api.algorithms import run  # noqa: E402
from snnbench.api.benchmark import Benchmark  # noqa: E402
from snnbench.api.optuna_search import METHODS  # noqa: E402


@pytest.fixture(scope="module")
def bench() -> Benchmark:
    return Benchmark(curve_table())


@pytest.mark.parametrize("method", METHODS)
def test_a_study_pays_each_new_cell_once_within_budget_and_ends_on_a_cell_the_table_holds(bench: Benchmark,
                                                                                         method: str) -> None:
    if method == "cmaes":
        pytest.importorskip("cmaes")
    budget = 0.6 * float(np.nansum(bench.train_seconds))
    runs = [run(bench, f"optuna:{method}", budget, seed) for seed in (0, 0, 1, 2)]
    o = runs[0]
    assert o.history and o.clock <= budget
    cells = [u for _, u, _ in o.history]
    assert len(cells) == len(set(cells)) == len(o.trained)
    assert o.clock == pytest.approx(sum(bench.train_seconds[u] for u in cells), rel=1e-12)
    for _, u, v in o.history:
        assert v == bench.accuracy["val"][u] and np.isfinite(bench.accuracy["test"][u])
    assert runs[1].history == o.history
    assert any(r.history != o.history for r in runs[2:])

