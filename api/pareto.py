"""Accuracy against cost (spikes per image, params): Pareto fronts and the 2-D hypervolume.

Invariants
----------
* Accuracy is maximised, cost minimised; a cell is on the front when no other cell has at least its accuracy at
  at most its cost with one of the two strictly better. Cells holding NaN in either are left out.
* ``hypervolume(acc, cost, ref_acc, ref_cost)`` is the area dominated by the points inside the box above
  ``ref_acc`` and below ``ref_cost``, cost divided by ``ref_cost`` (so it lies in [0, 1 - ref_acc] for accuracies
  up to 1); points at or below ``ref_acc`` or costing more than ``ref_cost`` add nothing.
"""

from __future__ import annotations

import numpy as np


def front(acc: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated points (max ``acc``, min ``cost``), by ascending cost (ties: the first index)."""
    acc, cost = np.asarray(acc, dtype=float), np.asarray(cost, dtype=float)
    ok = np.flatnonzero(np.isfinite(acc) & np.isfinite(cost))
    order = ok[np.lexsort((ok, -acc[ok], cost[ok]))]  # cheapest first; at equal cost the most accurate first
    keep, best = [], -np.inf
    for i in order.tolist():
        if acc[i] > best:
            keep.append(i)
            best = acc[i]
    return np.array(keep, dtype=np.int64)


def hypervolume(acc: np.ndarray, cost: np.ndarray, ref_acc: float, ref_cost: float) -> float:
    """Normalised area dominated by the points (module docstring); 0 when no point is inside the box."""
    if not (np.isfinite(ref_cost) and ref_cost > 0 and np.isfinite(ref_acc)):
        raise ValueError(f"hypervolume: expected a finite reference accuracy and a positive finite reference cost, "
                         f"got {ref_acc!r} and {ref_cost!r}")
    acc, cost = np.asarray(acc, dtype=float), np.asarray(cost, dtype=float)
    idx = front(acc, cost)
    idx = idx[(cost[idx] <= ref_cost) & (acc[idx] > ref_acc)]
    if not len(idx):
        return 0.0
    c = np.append(cost[idx], ref_cost) / ref_cost
    return float(np.sum(np.diff(c) * (acc[idx] - ref_acc)))
