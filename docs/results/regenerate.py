"""Regenerate every number and figure of docs/results.md from the shipped tables.

    python docs/results/regenerate.py                    # all sections, figures into docs/results/
    python docs/results/regenerate.py --only cifar10     # one section: digits | kernels | cifar10
    python docs/results/regenerate.py --out /tmp/r --digits T.h5 --cifar10 T2.h5

Prints Markdown (the numbers results.md quotes) and writes the figures under ``--out``:
``digits/`` (``snnbench report``'s page and figures, with the settings results.md states), the kernels of
the best and worst trained digits cells (supplementary section D) with how their off-diagonal ranks
accuracy, and ``cifar10/`` (cost, singular kernels, the digits-CIFAR-10 agreement, CIFAR-10 scores against
digits accuracy, backward against forward cells, and ``snnbench report``'s page of the CIFAR-10 trainings). Seeded: the same tables give the same output. Only the
kernels section runs networks (on the digits data embedded in the package); no section needs CIFAR-10 files.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from api.benchmark import Benchmark
from api.correlate import agreement, correlate, matched, ranked_shares
from api.plots import kernel_matrix, plot_agreement, plot_by_kind, plot_kernels, score_inputs
from api.replay import make_pool, replay_curve
from api.report import fmt, report
from snnbench.table import SHIPPED, open_table

SPIKE_SCORES = ("sahd", "hd", "vanrossum")
DIGITS_REPORT = {"replay_scores": ["sahd", "hd", "vanrossum", "snip", "grad_norm"], "budget": 1500.0, "runs": 100,
                 "algorithms": ["random", "evolution", "local", "reinforce", "score_train:sahd", "score_train:hd",
                                "score_train:vanrossum"], "trials": 1000, "bootstrap": 1000, "seed": 0}


def _f(x: float | None, digits: int = 3) -> str:
    return fmt(x, digits)


def _ci(r: dict[str, Any], key: str) -> str:
    lo, hi = r.get(f"{key}_ci") or (None, None)
    return f"{_f(r[key])} [{_f(lo)}, {_f(hi)}]"


def replay_lines(bench: Benchmark, sizes: list[int], names: list[str], trained: int) -> list[str]:
    """The replay table: each method's picked-cell test accuracy (mean ± std) at each N, 1,000 uniform trials."""
    curve = replay_curve(bench, sizes, 1000, names, dist="uniform", seed=0)
    lines = ["", f"replay, uniform sampling over the {trained} trained cells (1,000 trials):", "",
             "| method | " + " | ".join(f"N = {n:,}" for n in sizes) + " |", "|---|" + "---|" * len(sizes)]
    for m, r in curve["methods"].items():
        lines.append(f"| {m} | " + " | ".join(f"{a:.4f} ± {sd:.4f}" for a, sd in zip(r["mean"], r["std"])) + " |")
    return lines


def digits_section(path: Path, out: Path) -> list[str]:
    """``snnbench report`` on the digits table with results.md's settings (page and figures in ``out``)."""
    bench = Benchmark(path)
    page = report(bench, out, title="digits (shipped table)", **DIGITS_REPORT)
    lines = [f"digits: page {page} (replay, correlations with intervals, algorithm comparison and random search at equal cost)", "",
             "| score | top-10 precision | top-100 precision |", "|---|---|---|"]
    for m, r in correlate(bench, "test")["scores"].items():
        lines.append(f"| {m} | {_f(r['top_k_precision'].get('10'), 2)} | {_f(r['top_k_precision'].get('100'), 2)} |")
    pool = make_pool(bench, DIGITS_REPORT["replay_scores"], "test", dist="uniform")
    sizes = [n for n in (10, 100, 1000, 5000) if n <= len(pool.cells)]
    return lines + replay_lines(bench, sizes, DIGITS_REPORT["replay_scores"], len(pool.cells))


def off_diagonal(k: np.ndarray) -> float:
    """Mean off-diagonal entry of ``k`` divided by its mean diagonal (lower: samples told apart better)."""
    k = np.asarray(k, dtype=np.float64) / np.mean(np.diag(k))
    return float((k.sum() - np.trace(k)) / (k.shape[0] * (k.shape[0] - 1)))


def kernels_section(path: Path, out: Path, count: int = 4) -> list[str]:
    """Kernels of the ``count`` most and least accurate trained cells (one figure per metric), and Kendall tau
    of every trained cell's mean normalised off-diagonal against test accuracy and against its stored score."""
    bench = Benchmark(path)
    data, config = score_inputs(bench)
    acc = bench.accuracy["test"]
    trained = np.flatnonzero(np.isfinite(acc))
    order = trained[np.lexsort((trained, -acc[trained]))]  # best first, ties by view index
    shown = np.concatenate([order[:count], order[-count:]])
    lines = [f"kernels: {len(trained)} trained cells; batch 64, seed 0, untrained networks", "",
             "| metric | off-diagonal vs test accuracy: tau | off-diagonal vs stored score: tau | score vs accuracy: tau |",
             "|---|---|---|---|"]
    for metric in ("sahd", "hd"):
        kernels = {int(u): kernel_matrix(bench.matrices[u], data, config, metric) for u in trained}
        plot_kernels([kernels[int(u)] for u in shown],
                     [f"{bench.hashes[u][:8]}  test {acc[u]:.3f}" for u in shown], out / f"kernels_{metric}.png")
        low = -np.array([off_diagonal(kernels[int(u)]) for u in trained])  # higher: better separated
        score = bench.scores[metric][trained]
        lines.append(f"| {metric} | {_f(stats.kendalltau(low, acc[trained]).statistic)} | "
                     f"{_f(stats.kendalltau(low, score).statistic)} | {_f(stats.kendalltau(score, acc[trained]).statistic)} |")
    return lines


def _score_protocol(path: Path) -> Any:
    (p,) = [p for p in open_table(path).protocols.values() if p.type == "score"]
    return p


def cifar10_section(cifar: Path, digits: Path, out: Path) -> list[str]:
    """Cost, coverage and singular kernels of the CIFAR-10 table; its agreement with digits; its scores against
    digits accuracy (bootstrap intervals); backward against forward cells where it holds both. Uses the spike
    scores and params that both tables hold."""
    c, dg = Benchmark(cifar), Benchmark(digits)
    names = [m for m in (*SPIKE_SCORES, "params") if m in c.scores and m in dg.scores]
    spikes = [m for m in names if m in SPIKE_SCORES]
    p, dp = _score_protocol(cifar), _score_protocol(digits)
    kinds = np.array(c.kinds)
    secs = c.score_seconds[np.isfinite(c.score_seconds)]
    lines = [f"cifar10: {len(c):,} cells ({int((kinds == 'forward').sum()):,} forward, "
             f"{int((kinds == 'backward').sum()):,} backward); {secs.mean():.2f} s per cell per worker "
             f"(median {np.median(secs):.2f}); singular: "
             + ", ".join(f"{m} {int(np.isneginf(c.scores[m]).sum())}" for m in spikes)
             + f"; mean spike rate at initialisation {np.mean(p.columns['spike_rate']):.3f}"]
    ud = matched(dg, c)[0]
    lines.append(f"shared with digits: {len(ud):,} cells, {int(np.isneginf(dg.scores[spikes[0]][ud]).sum())} of them "
                 f"singular on digits by {spikes[0]} (digits mean spike rate {np.mean(dp.columns['spike_rate']):.3f})")
    agree = agreement(dg, c, names)["scores"]
    across = correlate(dg, "test", names, source=c, bootstrap=1000, seed=0)
    own = correlate(dg, "test", names)["scores"]
    lines += ["", "| score | tau digits vs CIFAR-10 | rho | CIFAR-10 score vs digits test acc: tau [95%] | digits score: tau |",
              "|---|---|---|---|---|"]
    for m in names:
        lines.append(f"| {m} | {_f(agree[m]['kendall_tau'])} | {_f(agree[m]['spearman_rho'])} | "
                     f"{_ci(across['scores'][m], 'kendall_tau')} | {_f(own[m]['kendall_tau'])} |")
    lines += ["", f"highest tau across resamples: {ranked_shares(across['bootstrap']['best_tau'])}"]
    plot_agreement(dg, c, spikes, out / "agreement.png")
    if (kinds == "backward").any() and (kinds == "forward").any():
        lines += ["", *backward_lines(c.scores, kinds, names)]
        plot_by_kind(c, spikes, out / "backward.png")
    if np.isfinite(c.accuracy["test"]).any():
        lines += ["", *trained_lines(c, names, out)]
    return lines


def trained_lines(c: Benchmark, names: list[str], out: Path) -> list[str]:
    """The CIFAR-10 trainings against the table's scores: ``snnbench report``'s page (replay at N = 10 and at
    each larger N up to half the trained cells, no algorithm comparison: too few trained cells) and its
    correlations with bootstrap intervals."""
    acc = c.accuracy["test"][np.isfinite(c.accuracy["test"])]
    sizes = [10, *(n for n in (100, 1000) if 2 * n <= len(acc))]
    page = report(c, out, title="CIFAR-10 (shipped table)", sizes=sizes, replay_scores=names, budget=0.0, seed=0)
    corr = correlate(c, "test", names, bootstrap=1000, seed=0)
    lines = [f"cifar10 trainings: page {page}; {len(acc)} cells, test accuracy {acc.mean():.3f} +- {acc.std():.3f} "
             f"(min {acc.min():.3f}, max {acc.max():.3f})", "",
             "| score | tau [95%] | rho [95%] |", "|---|---|---|"]
    for m, r in corr["scores"].items():
        lines.append(f"| {m} | {_ci(r, 'kendall_tau')} | {_ci(r, 'spearman_rho')} |")
    lines += ["", f"highest tau across resamples: {ranked_shares(corr['bootstrap']['best_tau'])}"]
    return lines + replay_lines(c, sizes, names, len(acc))


def backward_lines(scores: dict[str, np.ndarray], kinds: np.ndarray, names: list[str]) -> list[str]:
    """Per score (NaN: not scored): medians of forward and of backward (temporal) cells, the probability that a
    random backward cell outscores a random forward one (Mann-Whitney AUC, ties count half), and the
    backward share of the top 1% of the scored cells against their share of all scored cells."""
    bwd, fwd = kinds == "backward", kinds == "forward"
    lines = [f"backward against forward cells ({int(bwd.sum()):,} and {int(fwd.sum()):,}):", "",
             "| score | median forward | median backward | P(backward > forward) | backward share of the top 1% (of all) |",
             "|---|---|---|---|---|"]
    for m in names:
        v = scores[m]
        ok = ~np.isnan(v)
        a, b = v[ok & fwd], v[ok & bwd]
        auc = stats.mannwhitneyu(b, a).statistic / (len(a) * len(b))
        top = np.flatnonzero(ok)[np.argsort(-v[ok], kind="stable")[:max(1, int(0.01 * ok.sum()))]]
        lines.append(f"| {m} | {np.median(a):.6g} | {np.median(b):.6g} | {auc:.3f} | "
                     f"{bwd[top].mean():.2f} ({bwd[ok].mean():.2f}) |")
    return lines


def main() -> None:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=["digits", "kernels", "cifar10"], action="append")
    ap.add_argument("--out", type=Path, default=here)
    ap.add_argument("--digits", type=Path, default=SHIPPED["digits"])
    ap.add_argument("--cifar10", type=Path, default=SHIPPED["cifar10"])
    args = ap.parse_args()
    only = set(args.only or ["digits", "kernels", "cifar10"])
    sections = []
    if "digits" in only:
        sections.append(digits_section(args.digits, args.out / "digits"))
    if "kernels" in only:
        sections.append(kernels_section(args.digits, args.out / "digits"))
    if "cifar10" in only:
        sections.append(cifar10_section(args.cifar10, args.digits, args.out / "cifar10"))
    print("\n\n".join("\n".join(s) for s in sections))


if __name__ == "__main__":
    main()
