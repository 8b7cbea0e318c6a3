"""Optuna's samplers as offline NAS on a table, charged simulated time by :class:`api.algorithms.Oracle`.

Needs the ``optuna`` extra (``pip install -e ".[optuna]"``: optuna, and cmaes for ``CmaEsSampler``); the core
package never imports this module.

Invariants
----------
* The space is the Syne Tune blackbox's (:mod:`api.synetune`): one parameter ``eIJ`` per node pair, the matrix
  entry (forward kind) or the pair state (backward kind); the input-output pair is never empty. ``tpe``,
  ``random`` and ``nsga2`` suggest each as a categorical; ``cmaes`` as an integer (CMA-ES takes no categorical,
  so it searches the op codes as ordinals: an encoding, not a metric of the ops).
* Every trial asks the oracle: a cell trained before is free, a new one costs its stored training time, the
  study ends before the training that would pass the budget (or after ``max_stall`` free repeats in a row).
  A matrix whose cell the view holds no training of is told to Optuna as a failed trial (free, counted as a
  repeat).
* Single objective: maximise the observed accuracy (the oracle's ``split``, mean over seeds). ``nsga2``: maximise
  it and minimise the trained network's spikes per image; a cell without spikes is a failed trial.
* A run depends only on its seed (the sampler's seed).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna

from snnbench.api.algorithms import BudgetExhausted, Oracle, pair_options
from snnbench.space import edge_name, pairs

METHODS = ("tpe", "cmaes", "nsga2", "random")
_NAMES = tuple(edge_name(i, j) for i, j in pairs())


def _sampler(method: str, seed: int) -> Any:
    if method == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if method == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if method == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def run_sampler(oracle: Oracle, method: str, seed: int) -> None:
    """Run Optuna's ``method`` (:data:`METHODS`) on ``oracle`` until its budget is spent (raises
    :class:`~api.algorithms.BudgetExhausted`, as every algorithm does)."""
    if method not in METHODS:
        raise ValueError(f"optuna: expected one of {', '.join(METHODS)}, got {method!r}")
    spikes = oracle.bench.spikes_per_image
    multi = method == "nsga2"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=_sampler(method, seed),
                                directions=["maximize", "minimize"] if multi else ["maximize"])
    options = pair_options(oracle.kind)
    while True:
        trial = study.ask()
        if method == "cmaes":
            states = [trial.suggest_int(n, r.start, r.stop - 1) for n, r in zip(_NAMES, options)]
        else:
            states = [trial.suggest_categorical(n, list(r)) for n, r in zip(_NAMES, options)]
        u = int(oracle.cells_of_states(np.array(states)))
        if u < 0 or (multi and not np.isfinite(spikes[u])):
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            oracle.stall += 1
            if oracle.stall > oracle.max_stall:
                raise BudgetExhausted
            continue
        value = oracle.train(u)  # raises BudgetExhausted before passing the budget
        study.tell(trial, [value, float(spikes[u])] if multi else value)
