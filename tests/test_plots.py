"""The figures and printed tables say what they show (issue 32, point 9): read back from the matplotlib
figure objects and the printed text, checked against the runs and rankings recomputed independently."""

from __future__ import annotations

import json
from types import SimpleNamespace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api_tables import tiny_table
from snnbench.api.algorithms import CompareSettings, compare, run, trajectory, trained_on
from snnbench.api.benchmark import Benchmark
from snnbench.api.plots import compare_figure, scatter_figure
from snnbench.table import SHIPPED, open_table

needs_digits = pytest.mark.skipif(not SHIPPED["digits"].exists(), reason="no shipped digits table in this checkout")
BUDGET, RUNS = 2000.0, 3


@pytest.fixture(scope="module")
def digits() -> Benchmark:
    return Benchmark(SHIPPED["digits"])


@pytest.fixture(scope="module")
def result(digits: Benchmark) -> dict[str, Any]:
    """The issue's case: score_train stops after scoring 100 cells and training 5, far inside the budget."""
    return compare(digits, CompareSettings(["random", "score_train"], BUDGET, RUNS, points=100, seed=3))


def _close(fig: Any) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)


def _curve(ax: Any, name: str) -> Any:
    """The labelled line of entry ``name`` (its label is the name, or the name and a note)."""
    return next(line for line in ax.get_lines() if line.get_label().split(" ")[0].rstrip(":") == name)


@needs_digits
def test_compare_curves_end_where_their_runs_end(digits: Benchmark, result: dict[str, Any]) -> None:
    """score_train's curve ran flat to the end of the budget though its runs stop at ~180 s: now each curve's
    last point is at its last run's end (the largest clock of the runs, rerun here), with the mean of the runs'
    final incumbents, and the legend says when a curve ends early."""
    fig = compare_figure(result)
    ax = fig.axes[0]
    for name in ("random", "score_train"):
        runs = [run(digits, name, BUDGET, 3 + r, observe="val") for r in range(RUNS)]
        end = max(o.clock for o in runs)
        finals = [trajectory(o, np.array([BUDGET]), "test")[0] for o in runs]
        line = _curve(ax, name)
        x, y = line.get_xdata(), line.get_ydata()
        assert x[-1] == pytest.approx(end) and y[-1] == pytest.approx(np.mean(finals))
        assert np.all(np.diff(x) > 0) and x[-1] <= BUDGET
        if name == "score_train":
            assert end < 0.2 * BUDGET  # the case of the issue: far from the budget's end
            assert f"runs end by {end:,.0f} s" in line.get_label()
    _close(fig)


@needs_digits
def test_compare_bands_are_the_runs_interquartile_range(digits: Benchmark, result: dict[str, Any]) -> None:
    """The shaded band around each curve is the 25th-75th percentile over runs of the incumbent's test accuracy
    at each time (the trajectories recomputed run by run), and the title says what the band is."""
    times = np.array(result["times"])
    curves = np.array([trajectory(run(digits, "random", BUDGET, 3 + r, observe="val"), times, "test") for r in range(RUNS)])
    low, high = result["algorithms"]["random"]["curve_band"]
    full = np.isfinite(curves).all(axis=0)
    assert [v is not None for v in low] == full.tolist() == [v is not None for v in result["algorithms"]["random"]["curve_mean"]]
    assert np.array(low, dtype=float)[full] == pytest.approx(np.percentile(curves[:, full], 25, axis=0))
    assert np.array(high, dtype=float)[full] == pytest.approx(np.percentile(curves[:, full], 75, axis=0))
    fig = compare_figure(result)
    ax = fig.axes[0]
    assert "interquartile range" in ax.get_title()
    line = _curve(ax, "random")  # the first entry: its band is the first shaded area
    verts = np.concatenate([p.vertices for p in ax.collections[0].get_paths()])
    x = line.get_xdata()
    for t, lo, hi in ((x[-2], low[len(x) - 2], high[len(x) - 2]), (x[-1], low[-1], high[-1])):
        assert sorted(set(verts[np.isclose(verts[:, 0], t), 1])) == pytest.approx(sorted({lo, hi}))
    _close(fig)


@needs_digits
def test_compare_figure_names_its_reference_lines_dataset_and_budget(digits: Benchmark, result: dict[str, Any]) -> None:
    """The reference line drawn at the best-val cell's test accuracy was labelled "best val in table"; the
    legend sat on the curves; no dataset was named."""
    fig = compare_figure(result)
    ax = fig.axes[0]
    val, test = digits.accuracy["val"], digits.accuracy["test"]
    space = np.isfinite(val) & np.isfinite(digits.train_seconds) & (digits.kind_array == 0)
    best_val = np.flatnonzero(space & (val == val[space].max()))
    lines = {line.get_label(): line for line in ax.get_lines()}
    dotted = lines[next(k for k in lines if k.startswith("test acc. of the best-val cell"))]
    assert dotted.get_ydata()[0] == pytest.approx(test[best_val].mean())
    dashed = lines["best test acc. in the space"]
    assert dashed.get_ydata()[0] == pytest.approx(np.nanmax(test[space]))
    assert not any("best val" in k for k in lines)
    fig.canvas.draw()
    legend, frame = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.x0 >= frame.x1  # beside the axes: no part of the data region is covered
    train = [p for p in open_table(SHIPPED["digits"]).protocols.values() if p.type == "train"]
    assert trained_on(digits) == train[0].settings["dataset"]["name"] == "digits"
    assert ax.get_title().startswith("digits, forward space: budget 2,000 s, mean over 3 runs")
    assert ax.get_xlim()[1] >= BUDGET
    _close(fig)


@needs_digits
def test_compare_names_an_entry_without_a_curve(digits: Benchmark) -> None:
    """An algorithm whose runs trained no cell has no line; the legend says so instead of listing a colour."""
    result = compare(digits, CompareSettings(["random", "score_train"], 30.0, 2, points=10))
    assert result["algorithms"]["score_train"]["runs_with_result"] == 0  # 30 s pay for scoring only
    fig = compare_figure(result)
    ax = fig.axes[0]
    entry = _curve(ax, "score_train")
    assert len(entry.get_xdata()) == 0 and "no curve, 0 of 2 runs trained a cell" in entry.get_label()
    _close(fig)


@needs_digits
def test_compare_json_keeps_its_keys_and_adds_the_new_ones(digits: Benchmark) -> None:
    """Backward compatible: every key a result had is still there, with the same values as a naive mean."""
    result = compare(digits, CompareSettings(["random"], 300.0, 2, points=5))
    r = result["algorithms"]["random"]
    assert {"final_mean", "final_std", "curve_mean", "seconds_mean", "trained_mean"} <= set(r)
    runs = [run(digits, "random", 300.0, s, observe="val") for s in range(2)]
    assert r["seconds_max"] == max(o.clock for o in runs) and r["seconds_mean"] == pytest.approx(np.mean([o.clock for o in runs]))
    assert result["band"] == [25, 75] and result["dataset"] == "digits"
    json.dumps(result)


def _overlap(a: Any, b: Any) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_scatter_panels_have_axis_labels_and_ticks_that_do_not_overlap() -> None:
    """scores.png had no x labels, and the params panel's six-digit ticks ran into each other."""
    rng = np.random.default_rng(0)
    n = 500
    scores = {"sahd": rng.uniform(-120, -40, n), "params": rng.uniform(160_000, 231_000, n),
              "jacob_cov": rng.uniform(-900_000, -100_000, n), "snip": np.exp(rng.uniform(-6, 0, n))}
    bench = SimpleNamespace(scores=scores, accuracy={"test": rng.uniform(0.3, 1.0, n)})
    fig = scatter_figure(bench, list(scores), "test")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax, name in zip(fig.axes, scores):
        assert name in ax.get_xlabel() and ax.get_ylabel() == "test accuracy"
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            boxes = [t.get_window_extent(renderer) for v, t in zip(axis.get_majorticklocs(), axis.get_majorticklabels())
                     if low <= v <= high and t.get_text()]  # the labels drawn
            assert len(boxes) >= 2
            assert not any(_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:]), (name, axis)
    assert "params: parameter count" in fig.axes[1].get_xlabel()
    _close(fig)


def _brute_top_k(score: np.ndarray, acc: np.ndarray, k: int) -> float:
    """Top-k overlap / k averaged over every tie-break, cell by cell: a cell with g strictly larger values and t
    equal ones (itself among them) is in the top k with probability clip((k - g) / t, 0, 1)."""
    def share(x: np.ndarray) -> np.ndarray:
        return np.array([np.clip((k - (x > v).sum()) / (x == v).sum(), 0, 1) for v in x])

    return float(share(score) @ share(acc) / k)


@needs_digits
def test_correlate_top_k_is_labelled_by_count_and_by_share(digits: Benchmark) -> None:
    """The top-k precisions were printed as "10: 0.00, 70: 0.00, ..." with no word on what 70 was: each entry now
    names its k as a count ("k=10") or a share of the cells ("top 1%"), the k that share gives, and its precision
    (brute force here); a k above the cells is left out; the old ``top_k_precision`` keys stay as they were."""
    from snnbench.api.correlate import correlate

    out = correlate(digits, "test", ["sahd", "params"], cells="backward")
    assert out["top_k"] == {"counts": [10, 100], "fractions": [0.01, 0.05, 0.1]}
    backward = np.isfinite(digits.accuracy["test"]) & (digits.kind_array == 1)
    for m, r in out["scores"].items():
        ok = backward & ~np.isnan(digits.scores[m])
        s, a = digits.scores[m][ok], digits.accuracy["test"][ok]
        n = len(s)
        assert r["cells"] == n > 10
        want: list[tuple[str, int, float | None]] = [(f"k={k}", k, None) for k in (10, 100) if k <= n]  # k > n: left out
        want += [(f"top {round(100 * f)}%", max(1, int(round(f * n))), f) for f in (0.01, 0.05, 0.1)]
        assert [(e["label"], e["k"], e["fraction"]) for e in r["top_k"]] == want
        for e in r["top_k"]:
            assert e["precision"] == pytest.approx(_brute_top_k(s, a, e["k"]))
        old_keys = sorted({max(1, int(round(f * n))) for f in (0.01, 0.05, 0.1)} | ({10, 100} & set(range(1, n + 1))))
        assert list(r["top_k_precision"]) == [str(k) for k in old_keys]
        assert all(r["top_k_precision"][str(e["k"])] == e["precision"] for e in r["top_k"])
    few = correlate(Benchmark(tiny_table()), "test", ["sahd"])["scores"]["sahd"]  # 8 cells: no count fits
    assert few["cells"] < 10 and [e["label"] for e in few["top_k"]] == ["top 1%", "top 5%", "top 10%"]


@needs_digits
def test_correlate_cli_prints_top_k_under_headers(digits: Benchmark) -> None:
    """The text table has a "top-k precision" header over labelled columns, every row's values under them equal
    the JSON's, and a note gives the k each share stands for."""
    from click.testing import CliRunner

    from snnbench.cli import main

    args = ["correlate", "--table", str(SHIPPED["digits"]), "--cell-kind", "backward"]
    text = CliRunner().invoke(main, args, catch_exceptions=False).output.splitlines()
    data = json.loads(CliRunner().invoke(main, [*args, "--json"], catch_exceptions=False).output)
    group = next(i for i, line in enumerate(text) if line.strip() == "top-k precision")
    head = text[group + 1].split()
    assert head[:5] == ["score", "cells", "tau", "rho", "s/cell"]
    (first, *_) = data["scores"].values()
    assert head[5:] == [w for e in first["top_k"] for w in e["label"].split()] and head[5] == "k=10"
    assert text[group].index("top-k") > text[group + 1].index("s/cell")  # over the top-k columns, not the others
    for line, (m, r) in zip(text[group + 2:], data["scores"].items()):
        cells = line.split()
        assert cells[0] == m and cells[-len(r["top_k"]):] == [f"{e['precision']:.3f}" for e in r["top_k"]]
    note = next(line for line in text if line.startswith("top-k precision:"))
    shares = [e["k"] for e in first["top_k"] if e["fraction"] is not None]
    assert "k best-scored cells that are among the k most accurate" in note
    assert f"(k = {', '.join(map(str, shares))} of {first['cells']:,} cells)" in note


@needs_digits
def test_compare_figure_draws_a_result_saved_before_the_new_keys(result: dict[str, Any]) -> None:
    """A result JSON written by an earlier version (no seconds_max, curve_band, dataset, kind) still draws: curves
    to the budget, no band, the table's file name in the title."""
    old = json.loads(json.dumps(result))
    for key in ("dataset", "kind", "band"):
        del old[key]
    for r in old["algorithms"].values():
        del r["seconds_max"], r["curve_band"]
    fig = compare_figure(old)
    ax = fig.axes[0]
    assert _curve(ax, "random").get_xdata()[-1] == BUDGET and not ax.collections
    assert ax.get_title().startswith("digits.h5: budget 2,000 s") and "interquartile" not in ax.get_title()
    _close(fig)


@needs_digits
def test_report_says_what_the_compare_figure_draws(digits: Benchmark, tmp_path: Path) -> None:
    """The page's compare paragraph names the band and the end mark, and leaves the band out where the figure does
    (past 8 algorithms)."""
    from snnbench.api.report import report_sections

    few = ["random", "score_train"]
    many = ["random", "evolution", "local", "reinforce", *(f"score_train:{m}" for m in ("sahd", "hd", "vanrossum", "snip",
                                                                                         "grad_norm"))]
    for algorithms, band in ((few, True), (many, False)):
        text = "\n".join(report_sections(digits, tmp_path / str(band), title="t", sizes=(10,), trials=5, runs=2, budget=400.0,
                                         bootstrap=0, algorithms=algorithms, kind="forward")["compare"])
        assert "ends (marked) where its last run ends" in text
        assert ("interquartile range" in text) == band
        assert (tmp_path / str(band) / "compare.png").stat().st_size > 0
