"""How well each stored score ranks cells by accuracy: Kendall tau, Spearman rho, top-k precision.

Invariants: for each score, only cells holding a score (``-inf``, a singular kernel, ranks lowest) and a
finite accuracy enter; top-k
precision is ``|top-k by score  ∩  top-k by accuracy| / k`` (ties broken by view index, so it is
deterministic); ``k`` values larger than the number of cells are skipped.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from api.benchmark import Benchmark

DEFAULT_FRACTIONS = (0.01, 0.05, 0.1)


def top_k_precision(score: np.ndarray, accuracy: np.ndarray, k: int) -> float:
    """Fraction of the ``k`` best-scored cells that are among the ``k`` most accurate."""
    by_score = np.lexsort((np.arange(len(score)), -score))[:k]
    by_acc = np.lexsort((np.arange(len(accuracy)), -accuracy))[:k]
    return len(np.intersect1d(by_score, by_acc)) / k


def correlate(bench: Benchmark, split: str = "test", scores: Sequence[str] | None = None,
              fractions: Sequence[float] = DEFAULT_FRACTIONS) -> dict[str, Any]:
    """Per score: cells used, Kendall tau, Spearman rho (with p-values), top-k precision, seconds per cell."""
    from scipy import stats

    if split not in bench.accuracy:
        raise ValueError(f"split: expected one of {', '.join(bench.accuracy)}, got {split!r}")
    if not bench.scores:
        raise ValueError(f"correlate: {bench.path} has no score protocol in this view")
    names = list(scores) if scores is not None else list(bench.scores)
    missing = [m for m in names if m not in bench.scores]
    if missing:
        raise ValueError(f"score: {', '.join(missing)} not in the view (scores: {', '.join(bench.scores)})")
    acc = bench.accuracy[split]
    out: dict[str, Any] = {"table": str(bench.path), "protocols": bench.protocol_ids, "split": split, "scores": {}}
    for m in names:
        ok = np.isfinite(acc) & ~np.isnan(bench.scores[m])  # -inf (singular kernel) ranks lowest
        s, a = bench.scores[m][ok], acc[ok]
        row: dict[str, Any] = {"cells": int(ok.sum()), "seconds_per_cell": _mean(bench.score_seconds[ok])}
        if len(s) >= 2:
            tau = stats.kendalltau(s, a)
            rho = stats.spearmanr(s, a)
            row.update(kendall_tau=float(tau.statistic), kendall_p=float(tau.pvalue),
                       spearman_rho=float(rho.statistic), spearman_p=float(rho.pvalue))
        else:
            row.update(kendall_tau=None, kendall_p=None, spearman_rho=None, spearman_p=None)
        ks = sorted({max(1, int(round(f * len(s)))) for f in fractions} | ({10, 100} & set(range(1, len(s) + 1))))
        row["top_k_precision"] = {str(k): top_k_precision(s, a, k) for k in ks if k <= len(s)}
        out["scores"][m] = row
    return out


def _mean(x: np.ndarray) -> float | None:
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else None
