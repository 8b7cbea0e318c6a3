"""How well each stored score ranks cells by accuracy (Kendall tau, Spearman rho, top-k precision), and
how well two tables' scores agree on the cells they share (e.g. the same score on two datasets).

Invariants: for each score, only cells holding a score (``-inf``, a singular kernel, ranks lowest) and a
finite accuracy enter; top-k
precision is ``|top-k by score  ∩  top-k by accuracy| / k`` (its expectation when ties in either ranking are broken
at random, so it does not depend on the cells' order), at k = 10 and 100 cells and at k = 1%, 5%, 10% of them;
``k`` values larger than the number of cells are skipped. Cells of two views are matched
by hash, never by position.

Bootstrap intervals (``correlate(..., bootstrap=R)``): resample ``r`` takes ``n`` cells with replacement
from the ``n`` cells holding an accuracy, in view order, as row ``r`` of
``np.random.default_rng(seed).integers(0, n, (R, n))``; each score uses the drawn cells that hold it. All
scores see the same resamples (paired), so their intervals can be compared cell for cell. The interval is
the 2.5 and 97.5 percentiles of the statistic over the resamples; ``best_tau`` gives, per score, the
share of resamples in which it has the highest Kendall tau.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from snnbench.api.benchmark import Benchmark
from snnbench.api.progress import progress_bar
from snnbench.api.replay import MAX_DRAWS
from snnbench.fields import is_integer

DEFAULT_FRACTIONS = (0.01, 0.05, 0.1)
TOP_K_COUNTS = (10, 100)  # fixed k of every top-k precision, beside the fractions of the cells


def top_k_share(x: np.ndarray, k: int) -> np.ndarray:
    """Each entry's probability of being among the ``k`` largest when ties are broken uniformly at random."""
    kth = np.partition(x, len(x) - k)[len(x) - k]
    above, tied = x > kth, x == kth
    share = above.astype(np.float64)
    share[tied] = (k - np.count_nonzero(above)) / np.count_nonzero(tied)
    return share


def top_k_precision(score: np.ndarray, accuracy: np.ndarray, k: int) -> float:
    """Expected fraction of the ``k`` best-scored cells that are among the ``k`` most accurate, ties in either
    ranking broken uniformly at random (accuracies on a small test set tie often): independent of cell order."""
    return float(top_k_share(score, k) @ top_k_share(accuracy, k) / k)


def top_k_entries(score: np.ndarray, accuracy: np.ndarray,
                  fractions: Sequence[float] = DEFAULT_FRACTIONS) -> list[dict[str, Any]]:
    """:func:`top_k_precision` at each k of :data:`TOP_K_COUNTS` (``fraction`` None), then at each share of the
    ``n`` cells (``k = max(1, round(fraction * n))``), in that order; a k above ``n`` is left out. Each entry:
    ``label`` (``"k=10"`` for a count, ``"top 1%"`` for a share), ``k``, ``fraction``, ``precision``."""
    n = len(score)
    wanted = [(f"k={k}", k, None) for k in TOP_K_COUNTS] + [
        (f"top {f:.0%}" if round(100 * f, 6) == round(100 * f) else f"top {f:.1%}", max(1, int(round(f * n))), float(f))
        for f in fractions]
    return [{"label": label, "k": k, "fraction": f, "precision": top_k_precision(score, accuracy, k)}
            for label, k, f in wanted if k <= n]


def matched(a: Benchmark, b: Benchmark) -> tuple[np.ndarray, np.ndarray]:
    """View indices ``(in a, in b)`` of the cells both views hold, matched by hash, in ``a``'s order."""
    _, ua, ub = np.intersect1d(a.hash_array, b.hash_array, assume_unique=True, return_indices=True)
    order = np.argsort(ua)
    return ua[order].astype(np.int64), ub[order].astype(np.int64)


def _names(bench: Benchmark, scores: Sequence[str] | None) -> list[str]:
    if not bench.scores:
        raise ValueError(f"correlate: {bench.path} has no score protocol in this view")
    names = scores if scores is not None else list(bench.scores)
    bench.check_scores(names)
    return list(names)


CELL_KINDS = ("all", "forward", "backward")


def correlate(bench: Benchmark, split: str = "test", scores: Sequence[str] | None = None,
              fractions: Sequence[float] = DEFAULT_FRACTIONS, source: Benchmark | None = None,
              bootstrap: int = 0, seed: int = 0, progress: bool | None = False, cells: str = "all") -> dict[str, Any]:
    """Per score: cells used, Kendall tau, Spearman rho (with p-values), top-k precision, seconds per cell (and
    the column they come from, :meth:`Benchmark.scoring_seconds`). Top-k precision twice: ``top_k``, the entries
    of :func:`top_k_entries` (k by count and by share of the cells, labelled; the result's ``top_k`` names the
    counts and fractions asked), and ``top_k_precision``, the same values keyed by k alone (where a share's k
    equals a count, one key);
    with ``bootstrap`` resamples also ``kendall_tau_ci`` and ``spearman_rho_ci`` (95%, see the module);
    ``seed_agreement``: the accuracies of two seeds against each other (:func:`seed_agreement`).
    ``progress``: a bar of the resamples on stderr (``None``: on a terminal; :mod:`api.progress`).

    With ``source``, the scores (and their seconds) come from that view, matched by hash, and the
    accuracies from ``bench``: how a score computed on one dataset ranks cells trained on another.
    ``cells``: ``"all"``, or only ``"forward"`` cells or only cells with a ``"backward"`` edge (the seed agreement too).
    """
    from scipy import stats

    bench.check_split(split)
    if not is_integer(bootstrap, 0):
        raise ValueError(f"bootstrap: expected a number of resamples >= 0, got {bootstrap!r}")
    origin = source if source is not None else bench
    names = _names(origin, scores)
    costs = {m: origin.scoring_seconds(m) for m in names}
    if source is None:
        table, seconds = bench.scores, {m: c[0] for m, c in costs.items()}
    else:
        ua, ub = matched(bench, source)
        table = {m: np.full(len(bench), np.nan) for m in names}
        seconds = {m: np.full(len(bench), np.nan) for m in names}
        for m in names:
            table[m][ua] = source.scores[m][ub]
            seconds[m][ua] = costs[m][0][ub]
    if cells not in CELL_KINDS:
        raise ValueError(f"cells: expected one of {', '.join(CELL_KINDS)}, got {cells!r}")
    acc = _of_kind(bench, bench.accuracy[split], cells)
    out: dict[str, Any] = {"table": str(bench.path), "protocols": bench.protocol_ids, "split": split, "cells": cells,
                           "top_k": {"counts": list(TOP_K_COUNTS), "fractions": [float(f) for f in fractions]}, "scores": {}}
    if source is not None:
        out.update(score_table=str(source.path), score_protocols=source.protocol_ids)
    has_acc = np.flatnonzero(np.isfinite(acc))
    if not len(has_acc):
        which = "" if cells == "all" else ("forward " if cells == "forward" else "backward-edge ")
        raise ValueError(f"correlate: no {which}cell of {bench.path} holds {split} accuracy (the view holds {bench.holds()})")
    if bootstrap * len(has_acc) > MAX_DRAWS:
        raise ValueError(f"bootstrap: {bootstrap:,} resamples x {len(has_acc):,} cells, more than {MAX_DRAWS:,} draws; "
                         "ask for fewer resamples")
    draws = np.random.default_rng(seed).integers(0, len(has_acc), (bootstrap, len(has_acc)))
    taus: dict[str, np.ndarray] = {}
    bar = progress_bar(len(names) * bootstrap, "bootstrap", "resample", progress if bootstrap else False)
    for m in names:
        ok = np.isfinite(acc) & ~np.isnan(table[m])  # -inf (singular kernel) ranks lowest
        s, a = table[m][ok], acc[ok]
        row: dict[str, Any] = {"cells": int(ok.sum()), "seconds_per_cell": _mean(seconds[m][ok]), "seconds_column": costs[m][1]}
        if len(s) >= 2:
            tau = stats.kendalltau(s, a)
            rho = stats.spearmanr(s, a)
            row.update(kendall_tau=float(tau.statistic), kendall_p=float(tau.pvalue),
                       spearman_rho=float(rho.statistic), spearman_p=float(rho.pvalue))
        else:
            row.update(kendall_tau=None, kendall_p=None, spearman_rho=None, spearman_p=None)
        if bootstrap:
            bar.set_postfix_str(m)
            taus[m], rhos = _resampled(table[m][has_acc], acc[has_acc], draws, bar.update)
            row.update(kendall_tau_ci=_ci(taus[m]), spearman_rho_ci=_ci(rhos))
        row["top_k"] = top_k_entries(s, a, fractions)
        row["top_k_precision"] = {str(e["k"]): e["precision"] for e in sorted(row["top_k"], key=lambda e: e["k"])}
        out["scores"][m] = row
    bar.close()
    if bootstrap:
        out["bootstrap"] = {"resamples": bootstrap, "seed": seed, "level": 0.95, "best_tau": _best(taus)}
    out["seed_agreement"] = seed_agreement(bench, split, cells)
    return out


def _of_kind(bench: Benchmark, values: np.ndarray, cells: str) -> np.ndarray:
    """``values`` (``[U, ...]``) with the cells outside ``cells`` (see :func:`correlate`) set to NaN."""
    if cells == "all":
        return values
    out = values.astype(np.float64, copy=True)
    out[bench.kind_array != (1 if cells == "backward" else 0)] = np.nan
    return out


def seed_agreement(bench: Benchmark, split: str = "test", cells: str = "all") -> list[dict[str, Any]]:
    """How well accuracy ranks cells against itself: per pair of training seeds, Kendall tau and Spearman rho
    between the two seeds' ``split`` accuracies over the cells holding both (of ``cells``, see :func:`correlate`),
    and their mean absolute difference: the noise in the target that any score's tau against accuracy is
    measured through."""
    from scipy import stats

    seeds, acc = bench.accuracy_by_seed(split)
    acc = _of_kind(bench, acc, cells)
    out = []
    for i in range(len(seeds)):
        for j in range(i + 1, len(seeds)):
            ok = np.isfinite(acc[:, i]) & np.isfinite(acc[:, j])
            a, b = acc[ok, i], acc[ok, j]
            row: dict[str, Any] = {"seeds": [seeds[i], seeds[j]], "cells": int(ok.sum()), "kendall_tau": None,
                                   "spearman_rho": None, "mean_abs_difference": _mean(np.abs(a - b))}
            if ok.sum() >= 2:
                row.update(kendall_tau=float(stats.kendalltau(a, b).statistic),
                           spearman_rho=float(stats.spearmanr(a, b).statistic))
            out.append(row)
    return out


def agreement(a: Benchmark, b: Benchmark, scores: Sequence[str] | None = None) -> dict[str, Any]:
    """Per score held by both views: Kendall tau and Spearman rho between ``a``'s and ``b``'s values on the
    cells both hold (NaN left out, ``-inf`` ranks lowest), and how many of them are singular in each."""
    from scipy import stats

    names = scores if scores is not None else [m for m in a.scores if m in b.scores]
    if not names:
        raise ValueError(f"agreement: {a.path} and {b.path} hold no score in common")
    names = _names(a, names)
    _names(b, names)
    ua, ub = matched(a, b)
    out: dict[str, Any] = {"tables": [str(a.path), str(b.path)], "protocols": [a.protocol_ids, b.protocol_ids],
                           "shared_cells": len(ua), "scores": {}}
    for m in names:
        x, y = a.scores[m][ua], b.scores[m][ub]
        ok = ~np.isnan(x) & ~np.isnan(y)
        x, y = x[ok], y[ok]
        row: dict[str, Any] = {"cells": int(ok.sum()), "singular": [int(np.isneginf(x).sum()), int(np.isneginf(y).sum())]}
        if len(x) >= 2:
            row.update(kendall_tau=float(stats.kendalltau(x, y).statistic), spearman_rho=float(stats.spearmanr(x, y).statistic))
        else:
            row.update(kendall_tau=None, spearman_rho=None)
        out["scores"][m] = row
    return out


def _resampled(score: np.ndarray, accuracy: np.ndarray, draws: np.ndarray,
               done: Callable[[], Any]) -> tuple[np.ndarray, np.ndarray]:
    """Kendall tau and Spearman rho ``[R]`` on each resample (rows of ``draws``: indices into ``score`` and
    ``accuracy``), restricted to the drawn cells that hold a score; NaN where undefined. ``done()`` after each."""
    from scipy import stats

    out = np.full((2, len(draws)), np.nan)
    for r, idx in enumerate(draws):
        idx = idx[~np.isnan(score[idx])]
        if len(idx) >= 2:
            out[0, r] = stats.kendalltau(score[idx], accuracy[idx]).statistic
            out[1, r] = stats.spearmanr(score[idx], accuracy[idx]).statistic
        done()
    return out[0], out[1]


def _ci(values: np.ndarray) -> list[float] | None:
    """2.5 and 97.5 percentiles of the defined values (a resample with constant scores has no correlation)."""
    v = values[np.isfinite(values)]
    return [float(q) for q in np.percentile(v, [2.5, 97.5])] if len(v) else None


def _best(taus: dict[str, np.ndarray]) -> dict[str, float]:
    """Per score, the share of resamples in which its Kendall tau is the highest (the first listed wins
    ties; resamples where no score has a tau are left out)."""
    if not taus:
        return {}
    t = np.vstack(list(taus.values()))
    defined = np.isfinite(t).any(axis=0)
    winner = np.argmax(np.where(np.isfinite(t), t, -np.inf)[:, defined], axis=0)
    n = max(int(defined.sum()), 1)
    return {m: float((winner == i).sum() / n) for i, m in enumerate(taus)}


def ranked_shares(shares: dict[str, float]) -> str:
    """``"vanrossum 85%, snip 15%"``: the non-zero shares (e.g. ``bootstrap.best_tau``), largest first."""
    return ", ".join(f"{m} {v:.0%}" for m, v in sorted(shares.items(), key=lambda kv: -kv[1]) if v > 0)


def _mean(x: np.ndarray) -> float | None:
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else None
