"""Regenerate every table of docs/results.md, and its figures, from the shipped tables.

    python docs/results/regenerate.py --write docs/results.md     # all sections; rewrite the page's tables
    python docs/results/regenerate.py --only cifar10               # one section, print only (digits | kernels |
                                                                   # cifar10 | libraries | fronts)
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
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy import stats

from api.benchmark import Benchmark
from api.correlate import agreement, correlate, matched, ranked_shares, top_k_share
from api.plots import kernel_matrices, plot_agreement, plot_by_kind, plot_kernels, score_inputs
from api.replay import make_pool, replay_curve
from api.report import DEFAULT_SIZES, fmt, report_sections, write_page
from snnbench.space import to_text
from snnbench.table import SHIPPED, open_table

Blocks = dict[str, list[str]]
SPIKE_SCORES = ("sahd", "hd", "vanrossum")
KERNELS = ("sahd", "hd")  # the kernels drawn and ranked (supplementary section D), in this order
# Seconds per cell of each metric alone: `benchmarks/bench_scores.py --batch-size 64 --repeats 2`, one
# thread, the 2-core CPU machine (the shipped tables predate the stored `metric_seconds/*` columns).
METRIC_SECONDS = {"sahd": 0.097, "hd": 0.097, "vanrossum": 0.134, "sahd_release": 0.100, "grad_norm": 0.222,
                  "snip": 0.193, "jacob_cov": 0.151, "synflow": 0.025, "params": 0.008}


DIGITS_REPORT: dict[str, Any] = {"replay_scores": ["sahd", "hd", "vanrossum", "snip", "grad_norm"], "budget": 1500.0, "runs": 100,
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


def replay_table(bench: Benchmark, sizes: list[int], names: list[str]) -> list[str]:
    """Each method's picked-cell test accuracy (mean ± std) at each N, 1,000 uniform trials (seeded by (0, N))."""
    curve = replay_curve(bench, sizes, 1000, names, dist="uniform", seed=0)
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
    corr = correlate(bench, "test", bootstrap=DIGITS_REPORT["bootstrap"], seed=DIGITS_REPORT["seed"])
    sections = report_sections(bench, out, title="digits (shipped table)", correlation=corr, **DIGITS_REPORT)
    write_page(sections, out)
    pool = make_pool(bench, DIGITS_REPORT["replay_scores"], "test", dist="uniform")
    sizes = [n for n in DEFAULT_SIZES if n <= len(pool.cells)]
    left = [n for n in DEFAULT_SIZES if n > len(pool.cells)]
    uniform = [f"With uniform sampling over the {len(pool.cells):,} cells (1,000 trials per N, seeded by (0, N)):", "",
               *replay_table(bench, sizes, DIGITS_REPORT["replay_scores"])]
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
    from api.algorithms import compare
    from api.plots import plot_compare

    bench = Benchmark(path)
    n = settings["runs"]
    result = compare(bench, settings["algorithms"], settings["budget"], n, seed=settings["seed"], points=500)
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
    again = compare(bench, ["random", "syne:random", "optuna:random"], settings["budget"], check, seed=settings["seed"],
                    points=500)["algorithms"]
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
    """The trained cells' ``split`` accuracy against spikes per image: the Pareto front as a table (and its
    size against params), with ``out/front.png``."""
    from api.pareto import front, hypervolume
    from api.plots import plot_front

    acc, spikes, params = bench.accuracy[split], bench.spikes_per_image, bench.params
    held = np.flatnonzero(np.isfinite(acc) & np.isfinite(spikes))
    idx = front(acc, spikes)
    by_params = front(acc, params)
    plot_front(bench, out / "front.png", split)
    hv = hypervolume(acc[held], spikes[held], float(np.median(acc[held])), float(spikes[held].max()))
    lines = [f"Of the {len(held):,} trained cells, {len(idx)} are on the front of {split} accuracy against spikes per "
             f"image (none both more accurate and spiking less), {len(by_params)} on the front against parameters. "
             f"Hypervolume of the whole space (reference: its median {split} accuracy, {np.median(acc[held]):.4f}, and "
             f"largest spikes per image, {spikes[held].max():,.0f}): {hv:.4f}.", "",
             f"| cell | matrix | {split} accuracy | spikes per image | parameters |", "|---|---|---|---|---|"]
    for u in idx.tolist():
        lines.append(f"| `{bench.hashes[u]}` | `{to_text(bench.matrices[u])}` | {acc[u]:.4f} | {spikes[u]:,.0f} | "
                     f"{params[u]:,.0f} |")
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
    trained = np.flatnonzero(np.isfinite(acc))
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
    across = correlate(dg, "test", names, source=c, bootstrap=1000, seed=0)
    own = correlate(dg, "test", names)["scores"]
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
        blocks["cifar10-backward"] = backward_lines(c.scores, kinds, names)
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
    sections = report_sections(c, out, title="CIFAR-10 (shipped table)", sizes=sizes, replay_scores=names, budget=0.0, seed=0,
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


def backward_lines(scores: dict[str, np.ndarray], kinds: np.ndarray, names: list[str]) -> list[str]:
    """Per score (NaN: not scored): medians of forward and of backward (temporal) cells, the probability that a
    random backward cell outscores a random forward one (Mann-Whitney AUC, ties count half), and the
    (expected) backward share of the top 1% of the scored cells (ties broken at random) against their share of all scored cells."""
    bwd, fwd = kinds == "backward", kinds == "forward"
    lines = [f"{int(bwd.sum()):,} cells with a backward edge against the {int(fwd.sum()):,} forward cells:", "",
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
    ap.add_argument("--only", choices=["digits", "kernels", "cifar10", "libraries", "fronts"], action="append")
    ap.add_argument("--out", type=Path, default=here)
    ap.add_argument("--digits", type=Path, default=SHIPPED["digits"])
    ap.add_argument("--cifar10", type=Path, default=SHIPPED["cifar10"])
    ap.add_argument("--write", type=Path, metavar="PAGE", help="rewrite the marked blocks of PAGE (docs/results.md)")
    args = ap.parse_args()
    only = set(args.only or ["digits", "kernels", "cifar10", "libraries", "fronts"])
    blocks: Blocks = {}
    if "digits" in only:
        blocks.update(digits_section(args.digits, args.out / "digits"))
    if "kernels" in only:
        blocks.update(kernels_section(args.digits, args.out / "digits"))
    if "cifar10" in only:
        blocks.update(cifar10_section(args.cifar10, args.digits, args.out / "cifar10"))
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
