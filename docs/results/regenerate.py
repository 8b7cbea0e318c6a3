"""Regenerate every table of docs/results.md, and its figures, from the shipped tables.

    python docs/results/regenerate.py --write docs/results.md     # all sections; rewrite the page's tables
    python docs/results/regenerate.py --only cifar10               # one section, print only (digits | backward |
                                                                   # kernels | cifar10 | fidelity | libraries | fronts)
    python docs/results/regenerate.py --out /tmp/r --digits T.h5 --cifar10 T2.h5

Each section returns named Markdown blocks and prints them; ``--write PAGE`` replaces each block's text in
PAGE between ``<!-- regenerate:NAME -->`` and ``<!-- /regenerate -->`` (every block computed must have its
markers there; blocks of sections not run are left as they are), so the page's tables are never transcribed
by hand. Figures go under ``--out``: ``digits/`` (``snnbench report``'s page and figures, with the settings
results.md states), the kernels of the best and worst trained digits cells (supplementary section D) with
how their off-diagonal ranks accuracy, and ``cifar10/`` (the digits-CIFAR-10 agreement, backward against
forward cells, and ``snnbench report``'s page of the CIFAR-10 trainings), the library methods' curves
(``digits/libraries.png``; the ``libraries`` section needs the synetune and optuna extras) and each table's
accuracy-vs-spikes front (``*/front.png``). Seeded: the same tables give the
same output. Only the kernels section runs networks (on the digits data embedded in the package); no
section needs CIFAR-10 files.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy import stats

from snnbench.api.benchmark import Benchmark
from snnbench.api.correlate import agreement, correlate, matched, ranked_shares, top_k_share
from snnbench.api.plots import kernel_matrices, plot_agreement, plot_by_kind, plot_kernels, score_inputs
from snnbench.api.replay import make_pool, replay_curve, replay_picks
from snnbench.api.report import DEFAULT_SIZES, fmt, report_sections, write_page
from snnbench.names import METRIC_ALIASES
from snnbench.seeds import parse_seeds
from snnbench.space import Distribution, Kind, to_text
from snnbench.table import SHIPPED, open_table

Blocks = dict[str, list[str]]
SPIKE_SCORES = ("sahd", "hd", "vanrossum")
KERNELS = ("sahd", "hd")  # the kernels drawn and ranked (supplementary section D), in this order
# Seconds per cell of each metric alone: `benchmarks/bench_scores.py --batch-size 64 --repeats 2`, one
# thread, the 2-core CPU machine (the shipped tables predate the stored `metric_seconds/*` columns).
METRIC_SECONDS = {"sahd": 0.097, "hd": 0.097, "vanrossum": 0.134, "sahd_2022a": 0.100, "grad_norm": 0.222,
                  "snip": 0.193, "jacob_cov": 0.151, "synflow": 0.025, "params": 0.008}


DIGITS_REPORT: dict[str, Any] = {"scores": ["sahd", "hd", "vanrossum", "snip", "grad_norm"], "budget": 1500.0, "runs": 100,
                 "algorithms": ["random", "evolution", "local", "reinforce", "score_train:sahd", "score_train:hd",
                                "score_train:vanrossum"], "trials": 1000, "bootstrap": 1000, "seed": 0,
                 "score_costs": METRIC_SECONDS}  # the paper's search pays its metric's own time, not all nine


def _f(x: float | None, digits: int = 3) -> str:
    return fmt(x, digits)


def _ci(r: dict[str, Any], key: str, bold: bool = False) -> str:
    lo, hi = r.get(f"{key}_ci") or (None, None)
    value = f"**{_f(r[key])}**" if bold else _f(r[key])
    return f"{value} [{_f(lo)}, {_f(hi)}]"


def _best(rows: dict[str, dict[str, Any]], key: str) -> str:
    """The score with the largest ``|key|`` (set in bold: the strongest signal, either sign)."""
    return max(rows, key=lambda m: -np.inf if rows[m][key] is None else abs(rows[m][key]))


def _quote(block: list[str], first: str) -> list[str]:
    """The lines of a report block from the first one starting with ``first`` up to its figure."""
    start = next((i for i, line in enumerate(block) if line.startswith(first)), None)
    if start is None:
        raise ValueError(f"no line of the report block starts with {first!r}: did api.report's wording change?")
    stop = next((i for i, line in enumerate(block) if i > start and line.startswith("![")), len(block))
    lines = block[start:stop]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def replay_table(bench: Benchmark, sizes: list[int], names: list[str], kind: str | None = None,
                 dist: str = "uniform", mean_score: bool = False) -> list[str]:
    """Each method's picked-cell test accuracy (mean ± std) at each N, 1,000 trials (seeded by (0, N))."""
    curve = replay_curve(bench, sizes, 1000, names, kind=kind, dist=dist, seed=0,  # type: ignore[arg-type]
                         mean_score=mean_score)
    lines = ["| method | " + " | ".join(f"N = {n:,}" for n in sizes) + " |", "|---|" + "---|" * len(sizes)]
    for m, r in curve["methods"].items():
        lines.append(f"| {m} | " + " | ".join(f"{a:.4f} ± {sd:.4f}" for a, sd in zip(r["mean"], r["std"])) + " |")
    return lines


def scores_block(corr: dict[str, Any]) -> list[str]:
    """``correlate``'s result as correlations with 95% bootstrap intervals (best in bold), top-10/100 precision,
    each metric's own seconds per cell; which score has the highest tau across resamples; the two seeds against
    each other."""
    rows = corr["scores"]
    cells = max(r["cells"] for r in rows.values())
    lines = [f"{cells:,} trained cells, test accuracy (mean of the seeds); 1,000 paired bootstrap resamples, seed 0:", "",
             "| score | Kendall tau [95% interval] | Spearman rho [95% interval] | top-10 precision | top-100 precision "
             "| seconds per cell (metric alone) |", "|---|---|---|---|---|---|"]
    tau, rho = _best(rows, "kendall_tau"), _best(rows, "spearman_rho")
    for m, r in rows.items():
        top = r["top_k_precision"]
        lines.append(f"| {m} | {_ci(r, 'kendall_tau', m == tau)} | {_ci(r, 'spearman_rho', m == rho)} | "
                     f"{_f(top.get('10'), 2)} | {_f(top.get('100'), 2)} | {_f(METRIC_SECONDS.get(m), 3)} |")
    lines += ["", f"Highest tau across the resamples: {ranked_shares(corr['bootstrap']['best_tau'])}."]
    for a in corr["seed_agreement"]:
        lines += ["", f"The target against itself: seed {a['seeds'][0]} against seed {a['seeds'][1]} on {a['cells']:,} "
                      f"cells, Kendall tau {_f(a['kendall_tau'])}, Spearman rho {_f(a['spearman_rho'])}, mean |difference| "
                      f"{_f(a['mean_abs_difference'], 4)} test accuracy."]
    return lines


def digits_section(path: Path, out: Path) -> Blocks:
    """``snnbench report`` on the digits table with results.md's settings (page and figures in ``out``), the
    correlation table and the replay under uniform sampling."""
    bench = Benchmark(path)
    corr = correlate(bench, "test", bootstrap=DIGITS_REPORT["bootstrap"], seed=DIGITS_REPORT["seed"], cells="forward")
    sections = report_sections(bench, out, title="digits (shipped table), forward space", correlation=corr, kind="forward",
                               **DIGITS_REPORT)
    write_page(sections, out)
    pool = make_pool(bench, DIGITS_REPORT["scores"], "test", kind="forward", dist="uniform")
    sizes = [n for n in DEFAULT_SIZES if n <= len(pool.cells)]
    left = [n for n in DEFAULT_SIZES if n > len(pool.cells)]
    uniform = [f"With uniform sampling over the {len(pool.cells):,} cells (1,000 trials per N, seeded by (0, N)):", "",
               *replay_table(bench, sizes, DIGITS_REPORT["scores"], kind="forward")]
    if left:
        uniform += ["", f"N = {', '.join(f'{n:,}' for n in left)} left out: the pool holds {len(pool.cells):,} cells."]
    return {"digits-scores": scores_block(corr),
            "digits-replay-paper": _quote(sections["replay"], "The paper's sampler"),
            "digits-replay-uniform": uniform,
            "digits-compare": _quote(sections["compare"], "The algorithms observe")}


# Library methods next to the built-in ones on the digits table (needs the synetune and optuna extras)
LIBRARY_COMPARE: dict[str, Any] = {"budget": 1500.0, "runs": 30, "seed": 0, "check_runs": 100, "algorithms": [
    "random", "evolution", "local", "reinforce", "syne:random", "syne:rea", "syne:tpe", "syne:asha", "syne:hyperband",
    "syne:morea", "syne:moasha", "optuna:random", "optuna:tpe", "optuna:cmaes", "optuna:nsga2"]}
# (built-in, library) pairs running the same method: do they agree?
DUPLICATES = (("random", "syne:random"), ("random", "optuna:random"), ("evolution", "syne:rea"))
MULTI_OBJECTIVE = ("syne:morea", "syne:moasha", "optuna:nsga2")


def mean_interval(mean: float, std: float, n: int) -> tuple[float, float]:
    """95% t interval of a mean from ``n`` values with population std ``std`` (``compare``'s ``final_std``)."""
    half = stats.t.ppf(0.975, n - 1) * std * np.sqrt(n / (n - 1)) / np.sqrt(n)
    return mean - half, mean + half


def difference_interval(a: dict[str, Any], b: dict[str, Any], n: int) -> tuple[float, float, float]:
    """``b``'s mean final minus ``a``'s with its 95% Welch interval (population stds of ``n`` runs each)."""
    va, vb = (r["final_std"] ** 2 * n / (n - 1) / n for r in (a, b))
    df = (va + vb) ** 2 / (va ** 2 / (n - 1) + vb ** 2 / (n - 1)) if va + vb > 0 else 1.0
    d = b["final_mean"] - a["final_mean"]
    half = stats.t.ppf(0.975, df) * np.sqrt(va + vb)
    return d, d - half, d + half


def libraries_section(path: Path, out: Path, settings: dict[str, Any] = LIBRARY_COMPARE) -> Blocks:
    """Syne Tune's and Optuna's methods against the built-in ones at one simulated budget (``settings``): final test
    accuracy with 95% intervals, cells trained, the accuracy-vs-spikes hypervolume share; whether each duplicated
    method agrees with its built-in twin; the curves in ``out/libraries.png``; random search from both libraries
    and built in again over ``check_runs`` runs."""
    from snnbench.api.algorithms import CompareSettings, compare
    from snnbench.api.plots import plot_compare

    bench = Benchmark(path)
    n = settings["runs"]
    result = compare(bench, CompareSettings(settings["algorithms"], settings["budget"], n, seed=settings["seed"],
                                            points=500))
    plot_compare(result, out / "libraries.png")
    algos = result["algorithms"]
    lines = [f"{n} runs each (seeds {settings['seed']}-{settings['seed'] + n - 1}), budget {settings['budget']:,.0f} "
             f"simulated seconds; observed val accuracy, the incumbent's test accuracy reported. "
             f"{_best_sentence(result)}", "",
             "| algorithm | final test accuracy (mean ± std) | 95% interval of the mean | cells trained | simulated "
             "seconds | accuracy-vs-spikes hypervolume (share of the space's, mean ± std) |", "|---|---|---|---|---|---|"]
    for name, r in algos.items():
        lo, hi = mean_interval(r["final_mean"], r["final_std"], r["runs_with_result"])
        hv = "–" if r["hypervolume_mean"] is None else f"{r['hypervolume_mean']:.3f} ± {r['hypervolume_std']:.3f}"
        label = f"**{name}**" if name in MULTI_OBJECTIVE else name
        lines.append(f"| {label} | {r['final_mean']:.4f} ± {r['final_std']:.4f} | [{lo:.4f}, {hi:.4f}] | "
                     f"{r['trained_mean']:.1f} | {r['seconds_mean']:,.0f} | {hv} |")
    lines += ["", "The same method, built in and from a library (difference of the mean final test accuracy, "
                  "library minus built-in, 95% Welch interval):", "", *duplicate_lines(algos, n, DUPLICATES)]
    check = settings["check_runs"]
    again = compare(bench, CompareSettings(["random", "syne:random", "optuna:random"], settings["budget"], check,
                                           seed=settings["seed"], points=500))["algorithms"]
    recheck = [f"Random search again, {check} runs (seeds {settings['seed']}-{settings['seed'] + check - 1}): "
               + ", ".join(f"`{k}` {r['final_mean']:.4f} ± {r['final_std']:.4f}" for k, r in again.items()) + ".", "",
               *duplicate_lines(again, check, DUPLICATES[:2])]
    return {"digits-libraries": lines, "digits-check-random": recheck}


def duplicate_lines(algos: dict[str, dict[str, Any]], n: int, pairs: Sequence[tuple[str, str]]) -> list[str]:
    """Per (built-in, library) pair: the library's mean final minus the built-in's, its 95% Welch interval, and
    whether they agree (the interval holds 0)."""
    lines = []
    for a, b in pairs:
        d, lo, hi = difference_interval(algos[a], algos[b], n)
        verdict = "agree (the interval holds 0)" if lo <= 0 <= hi else "differ"
        lines.append(f"- `{b}` against `{a}`: {d:+.4f} [{lo:+.4f}, {hi:+.4f}]: they {verdict}; "
                     f"{algos[b]['trained_mean']:.1f} against {algos[a]['trained_mean']:.1f} cells trained.")
    return lines


def _best_sentence(result: dict[str, Any]) -> str:
    best = result["table_best"]
    return f"The space's best test accuracy is {best['max_test']:.4f}; its best val cell's, {best['test']:.4f}."


def front_block(bench: Benchmark, out: Path, split: str = "test") -> list[str]:
    """The trained cells' ``split`` accuracy against spikes per image: the Pareto front as a table with each cell's
    kind (and the front's size against params, the median cell's spikes), with ``out/front.png``."""
    from snnbench.api.pareto import front, hypervolume
    from snnbench.api.plots import plot_front

    acc, spikes, params = bench.accuracy[split], bench.spikes_per_image, bench.params
    held = np.flatnonzero(np.isfinite(acc) & np.isfinite(spikes))
    idx = front(acc, spikes)
    by_params = front(acc, params)
    plot_front(bench, out / "front.png", split)
    hv = hypervolume(acc[held], spikes[held], float(np.median(acc[held])), float(spikes[held].max()))
    lines = [f"Of the {len(held):,} trained cells, {len(idx)} are on the front of {split} accuracy against spikes per "
             f"image (none both more accurate and spiking less), {len(by_params)} on the front against parameters. "
             f"Hypervolume of the whole space (reference: its median {split} accuracy, {np.median(acc[held]):.4f}, and "
             f"largest spikes per image, {spikes[held].max():,.0f}): {hv:.4f}. The median trained cell spikes "
             f"{np.median(spikes[held]):,.0f} times per image.", "",
             f"| cell | matrix | kind | {split} accuracy | spikes per image | parameters |", "|---|---|---|---|---|---|"]
    for u in idx.tolist():
        kind = "backward edge" if bench.kind_array[u] == 1 else "forward"
        lines.append(f"| `{bench.hashes[u]}` | `{to_text(bench.matrices[u])}` | {kind} | {acc[u]:.4f} | "
                     f"{spikes[u]:,.0f} | {params[u]:,.0f} |")
    return lines


def off_diagonal(k: np.ndarray) -> float:
    """Mean off-diagonal entry of ``k`` divided by its mean diagonal (lower: samples told apart better)."""
    k = np.asarray(k, dtype=np.float64) / np.mean(np.diag(k))
    return float((k.sum() - np.trace(k)) / (k.shape[0] * (k.shape[0] - 1)))


_KERNEL_INPUTS: tuple[Any, Any] | None = None


def _init_kernel_worker(path: Path) -> None:
    global _KERNEL_INPUTS
    import torch

    torch.set_num_threads(1)
    _KERNEL_INPUTS = score_inputs(Benchmark(path))


def _off_diagonals(matrices: list[Any], inputs: tuple[Any, Any] | None = None) -> list[tuple[float, float]]:
    """(SAHD, HD) mean normalised off-diagonal of each cell's kernels; ``inputs``: (data, config), else the worker's."""
    inputs = inputs or _KERNEL_INPUTS
    assert inputs is not None
    data, config = inputs
    return [(off_diagonal(k["sahd"]), off_diagonal(k["hd"]))
            for k in (kernel_matrices(x, data, config, KERNELS) for x in matrices)]


def kernels_section(path: Path, out: Path, count: int = 4, workers: int = 2) -> Blocks:
    """Kernels of the ``count`` most and least accurate trained cells (one figure per metric), and Kendall tau
    of every trained cell's mean normalised off-diagonal against test accuracy and against its stored score
    (``workers`` processes, one thread each: the numbers do not depend on them)."""
    bench = Benchmark(path)
    data, config = score_inputs(bench)
    acc = bench.accuracy["test"]
    trained = np.flatnonzero(np.isfinite(acc) & (bench.kind_array == 0))  # the forward cells
    order = trained[np.lexsort((trained, -acc[trained]))]  # best first, ties by view index
    ends = (*order[:count], *order[-count:])
    shown = [kernel_matrices(bench.matrices[u], data, config, KERNELS) for u in ends]
    titles = [f"{bench.hashes[u][:8]}  test {acc[u]:.3f}" for u in ends]
    chunks = [[bench.matrices[u] for u in part] for part in np.array_split(trained, max(1, len(trained) // 100))]
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_kernel_worker,
                                 initargs=(path,)) as pool:
            parts = list(pool.map(_off_diagonals, chunks))
    else:
        parts = [_off_diagonals(c, (data, config)) for c in chunks]
    low = -np.array([v for part in parts for v in part])  # higher: better separated
    lines = [f"Over the {len(trained):,} trained cells (Kendall tau; the off-diagonal's sign flipped, so positive "
             "means lower off-diagonal goes with higher accuracy or score):", "",
             "| kernel | mean off-diagonal vs test accuracy | mean off-diagonal vs the stored score | stored score vs "
             "test accuracy |", "|---|---|---|---|"]
    for i, metric in enumerate(KERNELS):
        plot_kernels([k[metric] for k in shown], titles, out / f"kernels_{metric}.png")
        score = bench.scores[metric][trained]
        lines.append(f"| {metric} | {_f(stats.kendalltau(low[:, i], acc[trained]).statistic)} | "
                     f"{_f(stats.kendalltau(low[:, i], score).statistic)} | "
                     f"{_f(stats.kendalltau(score, acc[trained]).statistic)} |")
    return {"digits-kernels": lines}


def _score_protocol(path: Path) -> Any:
    (p,) = [p for p in open_table(path).protocols.values() if p.type == "score"]
    return p


def cifar10_section(cifar: Path, digits: Path, out: Path) -> Blocks:
    """Cost, coverage and singular kernels of the CIFAR-10 table; its agreement with digits and its scores against
    digits accuracy (bootstrap intervals); backward against forward cells where it holds both; its own trainings.
    Uses the spike scores and params that both tables hold."""
    c, dg = Benchmark(cifar), Benchmark(digits)
    names = [m for m in (*SPIKE_SCORES, "params") if m in c.scores and m in dg.scores]
    spikes = [m for m in names if m in SPIKE_SCORES]
    p, dp = _score_protocol(cifar), _score_protocol(digits)
    kinds = np.array(c.kinds)
    secs = c.score_seconds[np.isfinite(c.score_seconds)]
    ud = matched(dg, c)[0]
    blocks = {"cifar10-summary": [
        f"From the table: {len(c):,} cells ({int((kinds == 'forward').sum()):,} forward, "
        f"{int((kinds == 'backward').sum()):,} with a backward edge), {secs.mean():.2f} s per cell per worker "
        f"(median {np.median(secs):.2f}); singular kernels: " + ", ".join(f"{m} {int(np.isneginf(c.scores[m]).sum())}" for m in spikes)
        + f"; mean spike rate at initialisation {np.mean(p.columns['spike_rate']):.3f} (digits: "
        f"{np.mean(dp.columns['spike_rate']):.3f}, where {int(np.isneginf(dg.scores[spikes[0]][ud]).sum())} of the "
        f"{len(ud):,} cells both tables hold are singular by {spikes[0]})."]}
    agree = agreement(dg, c, names)["scores"]
    across = correlate(dg, "test", names, source=c, bootstrap=1000, seed=0, cells="forward")
    own = correlate(dg, "test", names, cells="forward")["scores"]
    cells = max(r["cells"] for r in across["scores"].values())
    best = _best(across["scores"], "kendall_tau")
    lines = blocks["cifar10-agreement"] = [
        f"| score | Kendall tau, digits vs CIFAR-10 score | Spearman rho | CIFAR-10 score vs digits test accuracy ({cells:,} "
        "cells): tau [95% interval] | digits score vs digits accuracy: tau |", "|---|---|---|---|---|"]
    for m in names:
        lines.append(f"| {m} | {_f(agree[m]['kendall_tau'])} | {_f(agree[m]['spearman_rho'])} | "
                     f"{_ci(across['scores'][m], 'kendall_tau', m == best)} | {_f(own[m]['kendall_tau'])} |")
    lines += ["", f"Highest tau of the CIFAR-10 scores against digits accuracy across 1,000 paired resamples (seed 0): "
                  f"{ranked_shares(across['bootstrap']['best_tau'])}."]
    plot_agreement(dg, c, spikes, out / "agreement.png")
    if (kinds == "backward").any() and (kinds == "forward").any():
        blocks["cifar10-backward"] = backward_lines(c.scores, kinds, names, c.coverage())
        plot_by_kind(c, spikes, out / "backward.png")
    if np.isfinite(c.accuracy["test"]).any():
        blocks.update(trained_blocks(c, names, out))
    return blocks


def trained_blocks(c: Benchmark, names: list[str], out: Path) -> Blocks:
    """The CIFAR-10 trainings against the table's scores: ``snnbench report``'s page (replay at N = 10 and at
    each larger N up to half the trained cells, no algorithm comparison: too few trained cells), correlations
    with bootstrap intervals, and the replay under uniform sampling."""
    trained = np.isfinite(c.accuracy["test"])
    acc = c.accuracy["test"][trained]
    sizes = [10, *(n for n in (100, 1000) if 2 * n <= len(acc))]
    corr = correlate(c, "test", names, bootstrap=1000, seed=0)
    sections = report_sections(c, out, title="CIFAR-10 (shipped table)", sizes=sizes, scores=names, budget=0.0, seed=0,
                               bootstrap=1000,
                               correlation=corr if names == list(c.scores) else None)
    write_page(sections, out)
    secs = np.nanmean(c.score_seconds[trained])
    tau = _best(corr["scores"], "kendall_tau")
    lines = [f"{len(acc):,} trained cells: test accuracy {acc.mean():.3f} ± {acc.std():.3f} (min {acc.min():.3f}, max "
             f"{acc.max():.3f}); 1,000 paired bootstrap resamples, seed 0:", "",
             "| score | Kendall tau [95% interval] | Spearman rho [95% interval] | seconds per cell (3 kernels in one pass, CPU) |",
             "|---|---|---|---|"]
    for m, r in corr["scores"].items():
        lines.append(f"| {m} | {_ci(r, 'kendall_tau', m == tau)} | {_ci(r, 'spearman_rho')} | "
                     f"{f'{secs:.1f}' if m in SPIKE_SCORES else '–'} |")
    lines += ["", f"Highest tau across the resamples: {ranked_shares(corr['bootstrap']['best_tau'])}."]
    replay = [f"Replay, uniform sampling over the {len(acc):,} trained cells, 1,000 trials per N (test accuracy of the pick):",
              "", *replay_table(c, sizes, names)]
    return {"cifar10-scores": lines, "cifar10-replay": replay,
            "cifar10-replay-paper": _quote(sections["replay"], "The paper's sampler")}


def backward_lines(scores: dict[str, np.ndarray], kinds: np.ndarray, names: list[str],
                   space: dict[str, dict[str, int]]) -> list[str]:
    """Per score (NaN: not scored): medians of forward and of backward (temporal) cells, the probability that a
    random backward cell outscores a random forward one (Mann-Whitney AUC, ties count half), and the
    (expected) backward share of the top 1% of the scored cells (ties broken at random) against their share of all
    scored cells. ``space``: ``Benchmark.coverage()``, for the size of each kind's space."""
    bwd, fwd = kinds == "backward", kinds == "forward"
    lines = [f"{int(bwd.sum()):,} of the {space['backward']['space']:,} cells with a backward edge against "
             f"{int(fwd.sum()):,} of the {space['forward']['space']:,} forward cells:", "",
             "| score | median forward | median backward | P(backward > forward) | backward share of the top 1% (of all scored) |",
             "|---|---|---|---|---|"]
    for m in names:
        v = scores[m]
        ok = ~np.isnan(v)
        a, b = v[ok & fwd], v[ok & bwd]
        auc = stats.mannwhitneyu(b, a).statistic / (len(a) * len(b))
        k = max(1, int(0.01 * ok.sum()))
        top = top_k_share(v[ok], k) @ bwd[ok] / k  # expected share, ties broken at random
        lines.append(f"| {m} | {np.median(a):.4g} | {np.median(b):.4g} | {auc:.3f} | "
                     f"{top:.2f} ({bwd[ok].mean():.2f}) |")
    return lines


BACKWARD_SCORES = ["sahd", "hd", "vanrossum"]
PAPER_CELL = "0302 0030 3003 0000"  # SNASNet's published cell


def _interval(values: np.ndarray) -> str:
    """``[2.5%, 97.5%]`` percentiles of bootstrap values."""
    lo, hi = np.percentile(values, [2.5, 97.5])
    return f"[{lo:.4f}, {hi:.4f}]"


def space_lines(bench: Benchmark, names: list[str]) -> list[str]:
    """Every cell scored under initialisation seed 0 (the seed every scored cell has; forward cells also hold seeds
    1-4, whose mean would narrow their spread against the backward cells'): ``backward_lines`` over them, and the
    rank of the paper's published cell under each score among them (1: the highest)."""
    seed0 = {}
    for m in names:
        seeds, X = bench.scores_by_seed(m)
        seed0[m] = X[:, seeds.index(0)]
    ok = np.logical_and.reduce([~np.isnan(v) for v in seed0.values()])
    kinds = np.array(bench.kinds)[ok]
    if set(kinds) != {"forward", "backward"}:
        return [f"The table scores {' and '.join(sorted(set(kinds))) or 'no'} cells only: no comparison of the kinds."]
    lines = backward_lines({m: v[ok] for m, v in seed0.items()}, kinds, names, bench.coverage())
    if PAPER_CELL in bench and ok[i := bench.index(PAPER_CELL)]:
        ranks = [f"{m} {int((seed0[m][ok] > seed0[m][i]).sum()) + 1:,}" for m in names]
        lines += ["", f"The paper's published cell `{PAPER_CELL}` ranks (1: the highest of the {int(ok.sum()):,}): "
                      + ", ".join(ranks) + "."]
    return lines


def _sizes(ns: list[int]) -> str:
    """``N = 10, 100 and 1,000``."""
    text = [f"{n:,}" for n in ns]
    return "N = " + (", ".join(text[:-1]) + " and " + text[-1] if len(text) > 1 else text[0])


def random_lines(bench: Benchmark, sizes: list[int], names: list[str], kind: Kind, dist: Distribution) -> list[str]:
    """Each score's pick minus random choice's (test accuracy) at each N, over :func:`replay_table`'s 1,000 trials:
    the mean difference with its 95% t interval, paired (every method picks from the same draws), and where the
    interval lies wholly above or below zero."""
    lines = ["| score - random | " + " | ".join(f"N = {n:,}" for n in sizes) + " |", "|---|" + "---|" * len(sizes)]
    diffs: dict[str, list[tuple[float, float, float]]] = {m: [] for m in names}
    for n in sizes:
        picked = replay_picks(bench, n, 1000, names, kind=kind, dist=dist, seed=0)[1]
        for m in names:
            d = picked[m] - picked["random"]
            diffs[m].append((d.mean(), *mean_interval(d.mean(), d.std(), len(d))))
    for m in names:
        lines.append(f"| {m} | " + " | ".join(f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}]" for d, lo, hi in diffs[m]) + " |")
    verdicts = []
    for m in names:
        above = [n for n, (_, lo, _) in zip(sizes, diffs[m]) if lo > 0]
        below = [n for n, (_, _, hi) in zip(sizes, diffs[m]) if hi < 0]
        said = [f"{side} at {_sizes(ns)}" for side, ns in (("above", above), ("below", below)) if ns]
        verdicts.append(f"{m} " + (" and ".join(said) or "at no N"))
    return lines + ["", "Interval wholly above or below zero: " + "; ".join(verdicts) + "."]


def limit_lines(bench: Benchmark, cells: np.ndarray, names: list[str]) -> list[str]:
    """What each score's replay pick tends to as N grows (a draw sees one seed's score, so the limit is the pool cell
    holding the score's highest value under any of its seeds; the first such cell on a tie), with its kind and
    test accuracy, and the paper's published cell's rank in the pool under the same rule (1: the highest)."""
    acc, kinds = bench.accuracy["test"], bench.kind_array
    best = {m: np.nanmax(bench.scores_by_seed(m)[1][cells], axis=1) for m in names}
    picks = []
    for m in names:
        i = int(cells[np.argmax(best[m])])
        kind = "a cell with a backward edge" if kinds[i] == 1 else "a forward cell"
        picks.append(f"{m} `{to_text(bench.matrices[i])}` ({kind}, test accuracy {acc[i]:.4f})")
    lines = ["As N grows, each score's pick tends to the pool cell holding that score's highest value under any of its "
             "seeds: " + "; ".join(picks) + "."]
    if PAPER_CELL in bench and (where := np.flatnonzero(cells == bench.index(PAPER_CELL))).size:
        ranks = [f"{m} {int((best[m] > best[m][where[0]]).sum()) + 1:,}" for m in names]
        lines.append(f"The paper's published cell `{PAPER_CELL}` ranks, among the {len(cells):,} pool cells: "
                     + ", ".join(ranks) + ".")
    return lines


def backward_section(path: Path, out: Path, resamples: int = 1000) -> Blocks:
    """Cells with a backward edge on digits: their accuracy against the forward cells', how each score ranks them
    (alone and in the mixed pool), the replay over the backward space (paper and uniform sampling) and the NAS
    algorithms on the mixed pool. Bootstrap intervals: cells resampled within each kind (seed 0)."""
    bench = Benchmark(path)
    blocks = {"digits-backward-space": space_lines(bench, [m for m in BACKWARD_SCORES if m in bench.scores])}
    acc = bench.accuracy["test"]
    fwd = acc[np.isfinite(acc) & (bench.kind_array == 0)]
    bwd = acc[np.isfinite(acc) & (bench.kind_array == 1)]
    if not len(bwd):
        return {**blocks, "digits-backward-accuracy": ["No cell with a backward edge is trained in this table."]}
    rng = np.random.default_rng(0)
    pick_f = rng.integers(0, len(fwd), (resamples, len(fwd)))
    pick_b = rng.integers(0, len(bwd), (resamples, len(bwd)))

    def top(v: np.ndarray) -> float:
        k = max(1, int(round(0.01 * len(v))))
        return float(np.sort(v)[-k:].mean())

    def p_greater(b: np.ndarray, f: np.ndarray) -> float:  # P(backward > forward), ties count half
        return float(stats.mannwhitneyu(b, f).statistic / (len(b) * len(f)))

    boot_p = np.array([p_greater(bwd[i], fwd[j]) for i, j in zip(pick_b, pick_f)])
    rows = [("mean test accuracy", fwd.mean(), bwd.mean(), fwd[pick_f].mean(1), bwd[pick_b].mean(1)),
            ("top 1% (mean of the best 1% of the cells)", top(fwd), top(bwd), np.array([top(fwd[i]) for i in pick_f]),
             np.array([top(bwd[i]) for i in pick_b])),
            ("best cell", fwd.max(), bwd.max(), fwd[pick_f].max(1), bwd[pick_b].max(1))]
    cov = bench.coverage()["backward"]
    lines = [f"{len(bwd):,} trained cells with a backward edge ({100 * len(bwd) / cov['space']:.2g}% of the {cov['space']:,}: a "
             "uniform sample, the first cells in hash order of `--kind backward --train-cells sample:3300:0`, plus the "
             f"paper's published cell) against the {len(fwd):,} forward cells; test accuracy, mean of seeds 0 and 1; 95% "
             f"intervals from {resamples:,} bootstrap resamples of the cells within each kind (seed 0):", "",
             "| statistic | forward cells | cells with a backward edge | backward - forward |", "|---|---|---|---|"]
    for name, f, b, bf, bb in rows:
        lines.append(f"| {name} | {f:.4f} {_interval(bf)} | {b:.4f} {_interval(bb)} | {b - f:+.4f} {_interval(bb - bf)} |")
    lines.append(f"| P(a random backward cell beats a random forward cell; ties half) | | | {p_greater(bwd, fwd):.3f} "
                 f"{_interval(boot_p)} |")
    rec = bench.query(PAPER_CELL) if PAPER_CELL in bench else None
    if rec is not None and rec["accuracy"]["test"] is not None:
        lines += ["", f"The paper's published cell `{PAPER_CELL}`: test accuracy {rec['accuracy']['test']:.4f} (seeds "
                      f"{rec['seeds'].get('train')}), above {(fwd < rec['accuracy']['test']).mean():.1%} of the forward cells."]
    blocks["digits-backward-accuracy"] = lines

    names = [m for m in BACKWARD_SCORES if m in bench.scores]
    scored = np.isfinite(acc) & (bench.kind_array == 1)
    for m in names:
        scored &= ~np.isnan(bench.scores[m])
    if not names or scored.sum() < 10:
        blocks["digits-backward-scores"] = [f"{int(scored.sum())} trained cells with a backward edge hold digits scores "
                                            "(fewer than 10): score rankings, replay and search over them wait for more."]
        return blocks
    full = {cells: correlate(bench, "test", names, bootstrap=resamples, seed=0, cells=cells)
            for cells in ("backward", "all", "forward")}
    per = {cells: r["scores"] for cells, r in full.items()}
    n = {cells: max(r["cells"] for r in per[cells].values()) for cells in per}
    lines = [f"Kendall tau [95% interval, {resamples:,} paired resamples] against test accuracy:", "",
             f"| score | cells with a backward edge ({n['backward']:,}) | mixed pool ({n['all']:,}) | forward cells "
             f"({n['forward']:,}) |", "|---|---|---|---|"]
    for m in names:
        lines.append(f"| {m} | " + " | ".join(_ci(per[c][m], "kendall_tau") for c in ("backward", "all", "forward")) + " |")
    shares = {"cells with a backward edge": "backward", "mixed pool": "all", "forward cells": "forward"}
    lines += ["", "Highest tau across the paired resamples: " + "; ".join(
        f"{label}, {ranked_shares(full[c]['bootstrap']['best_tau'])}" for label, c in shares.items()) + "."]
    blocks["digits-backward-scores"] = lines
    pool = make_pool(bench, names, "test", kind="backward", dist="paper")
    sizes = [n for n in DEFAULT_SIZES if n <= len(pool.cells)]
    replay = [f"Pool: {pool.describe()}.", ""]
    dists: tuple[Distribution, ...] = ("paper", "uniform")
    for dist in dists:
        replay += [f"{dist.capitalize()} sampling of the backward space, 1,000 trials per N (test accuracy of the pick):",
                   "", *replay_table(bench, sizes, names, kind="backward", dist=dist), "",
                   "The same trials, each score's pick against random choice's (mean difference [95% paired t "
                   "interval]):", "", *random_lines(bench, sizes, names, "backward", dist), ""]
    blocks["digits-backward-replay"] = replay + limit_lines(bench, pool.cells, names)
    from snnbench.api.algorithms import CompareSettings, compare

    result = compare(bench, CompareSettings(["random", "evolution", "local", "reinforce", "score_train:sahd",
                                             "score_train:hd", "score_train:vanrossum"], DIGITS_REPORT["budget"], 30,
                                            observe="val", split="test", kind="backward", seed=0,
                                            score_costs=METRIC_SECONDS))
    space = result["space"]
    lines = [f"The mixed pool as a search space ({space['cells']:,} trained cells: {space['forward']:,} forward, "
             f"{space['backward']:,} with a backward edge), budget {DIGITS_REPORT['budget']:g} simulated seconds, 30 "
             "runs each, observing validation accuracy; final test accuracy of the best observed cell:", "",
             "| algorithm | final test accuracy (mean ± std) | cells trained |", "|---|---|---|"]
    for name, r in result["algorithms"].items():
        lines.append(f"| {name} | {_f(r['final_mean'], 4)} ± {_f(r['final_std'], 4)} | {r['trained_mean']:.1f} |")
    blocks["digits-backward-compare"] = lines
    return blocks


NOISE_TABLE = Path(__file__).resolve().parent / "digits" / "noise.h5"  # the release score mode on 300 forward cells


def _with_eq5(bench: Benchmark) -> tuple[int, np.ndarray]:
    """Add ``sahd_eq5`` (Eq. 5: the calls' kernels summed) to ``bench``'s scores from its stored ``sahd`` (the
    release's mean): ``sahd + B ln(calls)``, exact in real arithmetic (docs/scores.md). Returns B and the calls."""
    from snnbench.scores import eq5_from_mean, lif_calls

    s = bench.table.protocols[next(p for p in bench.protocol_ids if bench.table.protocols[p].type == "score")].settings
    batch, steps = int(s["score"]["batch_size"]), int(s["network"]["config"]["timesteps"])
    calls = np.array([lif_calls(m, steps) for m in bench.matrices])
    bench.scores["sahd_eq5"] = np.array([eq5_from_mean(v, batch, c) for v, c in zip(bench.scores["sahd"], calls)])
    bench.metric_seconds["sahd_eq5"] = bench.metric_seconds["sahd"]
    return batch, calls


def fidelity_section(path: Path, noise: Path = NOISE_TABLE, resamples: int = 1000) -> Blocks:
    """Eq. 5 (summed kernels) against the release's mean on the digits table (from the stored ``sahd``, no rescoring),
    and how much the score's seed changes correlations and the replay (the table's several seeds per cell; the
    ``release`` score mode from ``noise``)."""
    bench = Benchmark(path)
    batch, calls = _with_eq5(bench)
    names = ["sahd", "sahd_eq5"]
    trained = np.isfinite(bench.accuracy["test"]) & ~np.isnan(bench.scores["sahd"])
    layers = sorted(set((calls[trained] // int(bench.table.protocols[bench.protocol_ids[0]].settings["network"]["config"]
                                                ["timesteps"])).tolist()))
    lines = [f"`sahd_eq5 = sahd + B ln(calls)` with B = {batch} (the table's scoring batch; the paper's 256 multiplies the "
             f"shift by 4) and calls = T x LIF layers, {layers[0]} to {layers[-1]} layers over the trained cells. Kendall tau "
             f"against test accuracy, [95% interval, {resamples:,} paired resamples, seed 0]:", "",
             "| cells | sahd (the release's mean) | sahd_eq5 (Eq. 5's sum) | tau between the two scores | P(Eq. 5 has the "
             "higher tau) |", "|---|---|---|---|---|"]
    mixed = (trained & (bench.kind_array == 1)).sum() >= 10  # else the mixed pool is the forward cells again
    for cells in ("forward", "backward", "all") if mixed else ("forward",):
        sel = trained & (bench.kind_array == (0 if cells == "forward" else 1)) if cells != "all" else trained
        corr = correlate(bench, "test", names, bootstrap=resamples, seed=0, cells=cells)
        r = corr["scores"]
        both = stats.kendalltau(bench.scores["sahd"][sel], bench.scores["sahd_eq5"][sel]).statistic
        share = dict(corr["bootstrap"]["best_tau"]).get("sahd_eq5", 0.0)
        label = {"forward": "forward", "backward": "with a backward edge", "all": "mixed pool"}[cells]
        lines.append(f"| {label} ({r['sahd']['cells']:,}) | {_ci(r['sahd'], 'kendall_tau')} | "
                     f"{_ci(r['sahd_eq5'], 'kendall_tau')} | {both:.3f} | {share:.2f} |")
    pool = make_pool(bench, names, "test", kind="forward", dist="paper")
    sizes = [n for n in DEFAULT_SIZES if n <= len(pool.cells)] or [len(pool.cells)]
    lines += ["", "Replay over the forward space, the paper's sampler, 1,000 trials per N (test accuracy of the pick; both "
              "scores pick by the mean over the scoring seeds, `--mean-score`, as Eq. 5's values are derived from it):", "",
              *replay_table(bench, sizes, names, kind="forward", dist="paper", mean_score=True)]
    blocks = {"fidelity-eq5": lines}
    blocks["fidelity-noise"] = noise_lines(bench, noise, resamples)
    return blocks


def _option(command: str, name: str) -> str | None:
    """The value of option ``name`` in a recorded command line (``None``: absent)."""
    args = shlex.split(command)
    return args[args.index(name) + 1] if name in args[:-1] else None


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (the page names files as a checkout has them)."""
    root = Path(__file__).resolve().parents[2]
    return os.path.relpath(path.resolve(), root) if path.resolve().is_relative_to(root) else str(path)


def _seed_taus(X: np.ndarray, a: np.ndarray, boot: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Kendall tau against ``a`` of each seed's scores (columns of ``X``) and of their mean, and over the paired
    resamples ``boot`` the mean's tau and its gain over seed 0's."""
    tau = lambda s, i=slice(None): stats.kendalltau(s[i], a[i]).statistic  # noqa: E731
    mean = X.mean(axis=1)
    boot_mean = np.array([tau(mean, i) for i in boot])
    return np.array([tau(X[:, k]) for k in range(X.shape[1])]), tau(mean), boot_mean, \
        boot_mean - np.array([tau(X[:, 0], i) for i in boot])


def _signed(values: np.ndarray) -> str:
    lo, hi = np.percentile(values, [2.5, 97.5])
    return f"{np.mean(values):+.4f} [{lo:+.4f}, {hi:+.4f}]"


def noise_lines(bench: Benchmark, release_table: Path, resamples: int) -> list[str]:
    """How the scoring seed moves each score, its Kendall tau against test accuracy and the replay's picks, over
    the trained cells the shipped score protocol holds several seeds of; then the ``release`` score mode (a sample
    of cells in ``release_table``) against the clean seeds of the same cells."""
    from snnbench.api.replay import replay_picks

    shipped = bench.table.protocols[next(p for p in bench.protocol_ids if bench.table.protocols[p].type == "score")]
    seeds, _ = bench.scores_by_seed("sahd")
    if len(seeds) < 2:
        return ["The shipped score protocol holds one seed per cell: resuming its recorded forward command with "
                "`--score-seeds 0,1,2,3,4` adds four more (the seeds are rows, not settings)."]
    acc = bench.accuracy["test"]
    names = [METRIC_ALIASES.get(m, m) for m in shipped.settings["score"]["metrics"] if m != "params"]  # params: seedless
    by_seed = {m: bench.scores_by_seed(m)[1] for m in names}
    held = np.isfinite(acc) & (~np.isnan(by_seed["sahd"])).all(axis=1)
    kinds = sorted({bench.kinds[i] for i in np.flatnonzero(held)})
    several = [c for c in shipped.commands if len(parse_seeds(_option(c, "--score-seeds") or "0")) > 1]
    command = re.sub(r"^snnbench build \S+", f"snnbench build {_shown(bench.path)}", several[0]) if several else "?"
    rng = np.random.default_rng(0)
    boot = rng.integers(0, int(held.sum()), (resamples, int(held.sum())))
    lines = [f"{held.sum():,} trained {' and '.join(kinds)} cells, each scored with {len(seeds)} seeds "
             f"({', '.join(map(str, seeds))}) under the shipped score protocol `{shipped.id}` (`{command}`; a seed is a "
             "row, not a setting). Per score: the seed's share of the spread (median std over a cell's seeds against "
             "the std of the cells' means; cells with a singular seed left out), Kendall tau between two seeds' "
             "scores (min to max over the pairs), and Kendall tau against test accuracy of one seed's scores and of "
             f"the mean over seeds, [95% interval, {resamples:,} paired resamples of the cells, seed 0]:", "",
             "| score | seed / cells spread | tau between seeds | tau vs accuracy, one seed (seed 0; range over seeds) "
             f"| tau vs accuracy, mean of {len(seeds)} seeds | mean - seed 0 |", "|---|---|---|---|---|---|"]
    for m in names:
        X = by_seed[m][held]
        finite = np.isfinite(X).all(axis=1)
        share = np.median(X[finite].std(axis=1, ddof=1)) / X[finite].mean(axis=1).std(ddof=1)
        pair = [stats.kendalltau(X[:, i], X[:, j]).statistic for i in range(len(seeds)) for j in range(i + 1, len(seeds))]
        one, mean_tau, boot_mean, gain = _seed_taus(X, acc[held], boot)
        lines.append(f"| {m} | {share:.0%} | {min(pair):.3f} to {max(pair):.3f} | {one[0]:.3f} ({one.min():.3f} to "
                     f"{one.max():.3f}) | {mean_tau:.3f} {_interval(boot_mean)} | {_signed(gain)} |")
    sizes, trials = [n for n in DEFAULT_SIZES if n <= held.sum()] or [int(held.sum())], 1000
    lines += ["", f"Replay over the forward space, the paper's sampler, {trials:,} trials per N (test accuracy of the pick, "
              "mean ± std over trials): each draw sees one seed's score (the paper: a fresh initialisation per drawn "
              "cell) against the mean over seeds (`--mean-score`), and their difference trial by trial (the same draws) "
              "[95% interval of its mean]:", "",
              "| score | pick | " + " | ".join(f"N = {n:,}" for n in sizes) + " |", "|---|---|" + "---|" * len(sizes)]
    spike = [m for m in SPIKE_SCORES if m in names]
    runs = {flag: [replay_picks(bench, n, trials, spike, kind="forward", dist="paper", seed=0, mean_score=flag)[1]
                   for n in sizes] for flag in (False, True)}
    ms = lambda v: f"{v.mean():.4f} ± {v.std():.4f}"  # noqa: E731
    for m in spike:
        diffs = [one[m] - mean[m] for one, mean in zip(runs[False], runs[True])]
        lines += [f"| {m} | one seed per draw | " + " | ".join(ms(r[m]) for r in runs[False]) + " |",
                  f"| {m} | mean over seeds | " + " | ".join(ms(r[m]) for r in runs[True]) + " |",
                  f"| {m} | difference | " + " | ".join(
                      "{:+.4f} [{:+.4f}, {:+.4f}]".format(d.mean(), *mean_interval(d.mean(), d.std(), len(d)))
                      for d in diffs) + " |"]
    for m in ("random", "oracle"):
        lines.append(f"| {m} | | " + " | ".join(ms(r[m]) for r in runs[False]) + " |")
    release = release_lines(bench, shipped, release_table) if release_table.exists() else []
    return lines + ([""] + release if release else [])


def release_lines(bench: Benchmark, shipped: Any, release_table: Path) -> list[str]:
    """The ``release`` score mode's SAHD (``release_table``: a sample of forward cells) against the shipped clean
    seeds of the same cells: agreement, tau against accuracy, and a replay over those cells."""
    import tempfile
    from dataclasses import replace

    from snnbench.api.replay import replay
    from snnbench.table import write_table

    release = next((p for p in open_table(release_table).protocols.values() if p.type == "score"
                    and p.settings["score"].get("mode") == "release"), None)
    if release is None:
        return []
    train = bench.table.protocols[next(p for p in bench.protocol_ids if bench.table.protocols[p].type == "train")]
    cells = set(release.hash.tolist())
    keep = np.array([h in cells for h in shipped.hash.tolist()])
    clean = replace(shipped, hash=shipped.hash[keep], seed=shipped.seed[keep], digest="",
                    columns={k: v[keep] for k, v in shipped.columns.items()})
    with tempfile.TemporaryDirectory() as tmp:  # the same cells, clean and release, beside the shipped trainings
        write_table(Path(tmp) / "clean.h5", [clean, train])
        write_table(Path(tmp) / "release.h5", [release, train])
        cview, rview = Benchmark(Path(tmp) / "clean.h5"), Benchmark(Path(tmp) / "release.h5")
    if cview.hashes != rview.hashes:
        raise SystemExit("fidelity: the release-mode cells are not the clean view's cells")
    seeds, C = cview.scores_by_seed("sahd")
    R, acc = rview.scores["sahd"], cview.accuracy["test"]
    both = np.isfinite(R) & np.isfinite(C).all(axis=1) & np.isfinite(acc)
    R, C, a = R[both], C[both], acc[both]
    gap = np.abs(R - C[:, 0])
    rng = np.random.default_rng(0)
    boot = rng.integers(0, len(R), (200, len(R)))
    boot_r = np.array([stats.kendalltau(R[i], a[i]).statistic for i in boot])
    boot_c = np.array([stats.kendalltau(C[i, 0], a[i]).statistic for i in boot])
    sizes = [10, 30, 100]
    runs = {flag: [replay(cview, n, 1000, ["sahd"], kind="forward", dist="uniform", seed=0, mean_score=flag)
                   for n in sizes] for flag in (False, True)}
    rel = [replay(rview, n, 1000, ["sahd"], kind="forward", dist="uniform", seed=0) for n in sizes]
    if any(r["methods"]["random"] != c["methods"]["random"] for r, c in zip(rel, runs[False])):
        raise SystemExit("fidelity: the release-mode replay drew other cells than the clean one (pools differ)")
    lines = [f"The `release` score mode (`{re.sub(r'^snnbench build [^ ]+', 'snnbench build ...', release.commands[0])}`, "
             f"in `docs/results/digits/noise.h5`: the release's procedure at the table's batch of "
             f"{release.settings['score']['batch_size']}, not its 256) on {len(R):,} of the trained forward cells: "
             f"Kendall tau {stats.kendalltau(R, C[:, 0]).statistic:.3f} against the clean seed-0 score, "
             f"{stats.kendalltau(R, C.mean(axis=1)).statistic:.3f} against the {len(seeds)}-seed mean; median |release - "
             f"clean seed 0| {np.median(gap):.2f} nats (max {gap.max():.2f}); Kendall tau against test accuracy "
             f"{stats.kendalltau(R, a).statistic:.3f} {_interval(boot_r)} (clean seed 0 on the same cells: "
             f"{stats.kendalltau(C[:, 0], a).statistic:.3f} {_interval(boot_c)}; 200 resamples).", "",
             f"Replay over these {runs[False][0]['pool']:,} cells (uniform sampling, 1,000 trials per N, test accuracy of the pick):", "",
             "| pick | " + " | ".join(f"N = {n}" for n in sizes) + " |", "|---|" + "---|" * len(sizes)]
    row = lambda label, rs, m: f"| {label} | " + " | ".join(  # noqa: E731
        f"{r['methods'][m]['mean']:.4f} ± {r['methods'][m]['std']:.4f}" for r in rs) + " |"
    return lines + [row("sahd, clean, one seed per draw", runs[False], "sahd"),
                    row("sahd, clean, mean over seeds", runs[True], "sahd"), row("sahd, release mode", rel, "sahd"),
                    row("random", runs[False], "random"), row("oracle", runs[False], "oracle")]


MARKED = re.compile(r"(<!-- regenerate:([\w-]+) -->\n).*?(<!-- /regenerate -->)", re.S)


def write_blocks(page: Path, blocks: Blocks) -> None:
    """Replace each block's text in ``page`` between its markers; ``SystemExit`` (page untouched) when a block
    has no markers or has them twice. Other marked blocks are kept; the file is replaced atomically."""
    text = page.read_text()
    found = [m.group(2) for m in MARKED.finditer(text)]
    bad = sorted(n for n in blocks if found.count(n) != 1)
    if bad:
        raise SystemExit(f"{page}: need exactly one <!-- regenerate:NAME --> ... <!-- /regenerate --> for {', '.join(bad)}")
    text = MARKED.sub(lambda m: m.group(1) + "".join(f"{line}\n" for line in blocks[m.group(2)]) + m.group(3)
                      if m.group(2) in blocks else m.group(0), text)
    tmp = page.with_name(page.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, page)


def main() -> None:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=["digits", "backward", "kernels", "cifar10", "fidelity", "libraries", "fronts"],
                    action="append")
    ap.add_argument("--out", type=Path, default=here)
    ap.add_argument("--digits", type=Path, default=SHIPPED["digits"])
    ap.add_argument("--cifar10", type=Path, default=SHIPPED["cifar10"])
    ap.add_argument("--write", type=Path, metavar="PAGE", help="rewrite the marked blocks of PAGE (docs/results.md)")
    args = ap.parse_args()
    only = set(args.only or ["digits", "backward", "kernels", "cifar10", "fidelity", "libraries", "fronts"])
    blocks: Blocks = {}
    if "digits" in only:
        blocks.update(digits_section(args.digits, args.out / "digits"))
    if "backward" in only:
        blocks.update(backward_section(args.digits, args.out / "digits"))
    if "kernels" in only:
        blocks.update(kernels_section(args.digits, args.out / "digits"))
    if "cifar10" in only:
        blocks.update(cifar10_section(args.cifar10, args.digits, args.out / "cifar10"))
    if "fidelity" in only:
        blocks.update(fidelity_section(args.digits))
    if "libraries" in only:
        blocks.update(libraries_section(args.digits, args.out / "digits"))
    if "fronts" in only:
        blocks["digits-front"] = front_block(Benchmark(args.digits), args.out / "digits")
        blocks["cifar10-front"] = front_block(Benchmark(args.cifar10), args.out / "cifar10")
    print("\n\n".join(f"<!-- {name} -->\n" + "\n".join(lines) for name, lines in blocks.items()))
    if args.write:
        write_blocks(args.write, blocks)


if __name__ == "__main__":
    main()
