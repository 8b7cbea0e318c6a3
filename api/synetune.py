"""A Syne Tune blackbox of a table view, and Syne Tune's own schedulers run on it by its simulator backend.

Needs the ``synetune`` extra (``pip install -e ".[synetune]"``: syne-tune and huggingface_hub, which Syne Tune's
blackbox package imports); the core package never imports this module.

Invariants
----------
* Config space: one categorical per node pair ``i < j`` named ``eIJ`` (see :func:`config_space`). Forward kind:
  the matrix entry ``M[i][j]`` (0 none, 1 skip, 2 conv1x1, 3 conv3x3, 4 avgpool3x3). Backward kind: the pair state
  of :mod:`api.algorithms` (0 none, 1-4 a forward op ``i -> j``, 5-8 backward op ``code - 4`` on ``j -> i``). The
  input-output pair ``e03`` never takes 0, so every configuration is a valid matrix (12,500 forward, 236,196
  backward); it is mapped to its unique (canonical) cell.
* A configuration whose cell the view holds no training of reports ``val_acc = test_acc = 0`` (``val_error`` 1),
  no spikes (NaN), and costs nothing beyond Syne Tune's minimum step (0.01 s per epoch): it is a dead end a
  scheduler learns to avoid, never a best cell. On a fully trained view (the shipped digits table) none exist.
* Fidelity ``epoch`` = 1 .. E (the table's epochs). At epoch ``e`` the objectives are the table's curves:
  ``val_acc`` and ``test_acc`` (NaN at epochs the table did not test), ``val_error = 1 - val_acc``,
  ``elapsed_time`` = the stored ``train_seconds`` (what :class:`api.algorithms.Oracle` charges) split over the
  epochs in proportion to ``curves/epoch_seconds``, cumulated (linearly when the table has no epoch times),
  ``spikes_per_image`` and ``params`` of the trained network (measured once after training: the same at every
  epoch).
* Seeds: ``seed=None`` answers the mean over the cell's training seeds (what ``api.query`` returns and the built-in
  algorithms observe); ``seed=k`` the table's ``k``-th training seed (``0 <= k < num_seeds``), as Syne Tune's
  tabulated blackboxes index seeds. Runs by :func:`run_scheduler` use the mean.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import random
import tempfile
import warnings
from typing import Any, Callable

import numpy as np
from syne_tune import StoppingCriterion, Tuner
from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
from syne_tune.backend.simulator_backend.time_keeper import SimulatedTimeKeeper
from syne_tune.blackbox_repository.blackbox import Blackbox
from syne_tune.blackbox_repository.simulated_tabular_backend import UserBlackboxBackend
from syne_tune.config_space import choice
from syne_tune.constants import ST_TUNER_TIME
from syne_tune.optimizer.baselines import ASHA, REA, TPE, RandomSearch
from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA
from syne_tune.optimizer.schedulers.multiobjective.multi_objective_regularized_evolution import \
    MultiObjectiveRegularizedEvolution
from syne_tune.optimizer.schedulers.single_fidelity_scheduler import SingleFidelityScheduler

from snnbench.api.algorithms import BudgetExhausted, Oracle, pair_options
from snnbench.api.benchmark import Benchmark, seconds_to_epochs
from snnbench.space import edge_name, pairs

OBJECTIVES = ("val_acc", "test_acc", "val_error", "elapsed_time", "spikes_per_image", "params")
FIDELITY = "epoch"
_NAMES = tuple(edge_name(i, j) for i, j in pairs())


def config_space(kind: str = "forward") -> dict[str, Any]:
    """Syne Tune's config space of ``kind``'s cells: one categorical per pair (module docstring)."""
    return {name: choice(list(options)) for name, options in zip(_NAMES, pair_options(kind))}


def states_of_config(config: dict[str, Any]) -> list[int]:
    """Pair states of a configuration (its ``eIJ`` entries in pair order)."""
    return [int(config[name]) for name in _NAMES]


class SnnBlackbox(Blackbox):
    """A table view as a Syne Tune blackbox (module docstring: space, fidelity, objectives, seeds)."""

    def __init__(self, bench: Benchmark, kind: str = "forward") -> None:
        self.bench, self.kind = bench, kind
        self.oracle = Oracle(bench, float("inf"), "val", kind=kind)  # the index restricted to trained cells
        curves = bench.record(int(self.oracle.space[0]))["curves"] or {}
        if "val_acc" not in curves:
            raise ValueError(f"{bench.path}: the view holds no per-epoch val_acc curves")
        self.epochs = len(curves["val_acc"])
        self.seeds = bench.accuracy_by_seed("val")[0]
        super().__init__(configuration_space=config_space(kind),
                         fidelity_space={FIDELITY: choice(list(range(1, self.epochs + 1)))},
                         objectives_names=list(OBJECTIVES))

    @property
    def num_seeds(self) -> int:
        return len(self.seeds)

    @property
    def fidelity_values(self) -> np.ndarray:
        return np.arange(1, self.epochs + 1)

    def cell(self, configuration: dict[str, Any]) -> int:
        """View index of a configuration's cell (-1: outside the trained space of ``kind``)."""
        return int(self.oracle.cells_of_states(np.array(states_of_config(configuration))))

    def table(self, u: int, seed: int | None = None) -> np.ndarray:
        """``float64 [E, len(OBJECTIVES)]``: every epoch's objectives of view cell ``u`` (``-1``: the dead end)."""
        out = np.full((self.epochs, len(OBJECTIVES)), np.nan)
        if u < 0:
            out[:, :3] = (0.0, 0.0, 1.0)
            out[:, 3] = 0.0  # the backend raises each epoch to 0.01 s after the previous
            return out
        rec = self.bench.record(u, None if seed is None else self.seeds[seed])
        curves = rec["curves"]
        val = np.array(curves["val_acc"], dtype=float)
        test = np.array([np.nan if x is None else x for x in curves.get("test_acc", [None] * self.epochs)], dtype=float)
        out[:, 0], out[:, 1], out[:, 2] = val, test, 1.0 - val
        out[:, 3] = seconds_to_epochs(rec["train_seconds"], curves.get("epoch_seconds"), self.epochs)
        spikes = rec["spikes"]
        out[:, 4] = np.nan if spikes is None else spikes["per_image"]
        out[:, 5] = np.nan if rec["params"] is None else rec["params"]
        return out

    def _objective_function(self, configuration: dict[str, Any], fidelity: dict | None = None,
                            seed: int | None = None) -> Any:
        values = self.table(self.cell(configuration), seed)
        if fidelity is None:
            return values
        return dict(zip(OBJECTIVES, values[int(fidelity[FIDELITY]) - 1].tolist()))


class _NoOverhead(SimulatedTimeKeeper):
    """Simulated time that ignores the real time spent in the tuner and scheduler (Syne Tune adds it by default),
    so a run's numbers depend on its seed only, not on the machine's load."""

    def real_time_since_last_recent_exit(self) -> float:
        return 0.0


class _Collect(SimulatorCallback):
    """The simulator's callback, results kept in memory only (no CSV written)."""

    def store_results(self) -> None:
        pass


def _schedulers(space: dict[str, Any], epochs: int, seed: int) -> dict[str, Callable[[], Any]]:
    """Syne Tune schedulers by snnbench name; single objective: maximise ``val_acc``; multi: minimise
    ``val_error`` and ``spikes_per_image``."""
    multi = ["val_error", "spikes_per_image"]
    evo = {"population_size": 20, "sample_size": 5}  # the built-in evolution's (Syne Tune's 100 and 10 outlast the budgets here)
    mf = {"time_attr": FIDELITY, "max_t": epochs, "grace_period": 1, "reduction_factor": 3}
    return {
        "random": lambda: RandomSearch(space, metrics=["val_acc"], do_minimize=False, random_seed=seed),
        "rea": lambda: REA(space, metric="val_acc", do_minimize=False, random_seed=seed, **evo),
        "tpe": lambda: TPE(space, metric="val_acc", do_minimize=False, random_seed=seed),
        "asha": lambda: ASHA(space, metric="val_acc", do_minimize=False, random_seed=seed, **mf),
        "hyperband": lambda: ASHA(space, metric="val_acc", do_minimize=False, random_seed=seed, brackets=3, **mf),
        "morea": lambda: SingleFidelityScheduler(
            space, metrics=multi, do_minimize=True, random_seed=seed,
            searcher=MultiObjectiveRegularizedEvolution(space, random_seed=seed, **evo)),
        "moasha": lambda: MOASHA(space, metrics=multi, do_minimize=True, random_seed=seed, **mf),
    }


POLL = 0.1  # simulated seconds between the tuner's polls (Syne Tune's default, 5 s, idles the worker ~2.5 s a trial)
METHODS = ("random", "rea", "tpe", "asha", "hyperband", "morea", "moasha")


def simulate(bench: Benchmark, method: str, budget: float, seed: int, kind: str = "forward") -> list[dict[str, Any]]:
    """Syne Tune's ``method`` (:data:`METHODS`) on ``bench``'s blackbox by the simulator backend (one worker), seeded
    by ``seed``, until ``budget`` simulated seconds: every result reported by then, in time order, as
    ``{"time", "trial", "cell", "epoch", "val_acc"}`` (``cell``: view index, -1 for a dead end)."""
    if method not in METHODS:
        raise ValueError(f"syne: expected one of {', '.join(METHODS)}, got {method!r}")
    box = SnnBlackbox(bench, kind)
    backend = UserBlackboxBackend(blackbox=box, elapsed_time_attr="elapsed_time", seed=None, tuner_sleep_time=POLL)
    backend._time_keeper = _NoOverhead()
    callback = _Collect()
    quiet = logging.getLogger("syne_tune")
    level, folder = quiet.level, os.environ.get("SYNETUNE_FOLDER")
    # Syne Tune 0.16 draws some samples (random search's, REA's first population) from numpy's global generator
    # whatever random_seed says: seed it (and ``random``) for the run, then put both back
    states = np.random.get_state(), random.getstate()
    with tempfile.TemporaryDirectory(prefix="snnbench-synetune-") as tmp:
        try:
            quiet.setLevel(logging.ERROR)
            np.random.seed(seed)
            random.seed(seed)
            os.environ["SYNETUNE_FOLDER"] = tmp  # the tuner's folder: its metadata, then deleted
            tuner = Tuner(trial_backend=backend, scheduler=_schedulers(box.configuration_space, box.epochs, seed)[method](),
                          n_workers=1, sleep_time=0, callbacks=[callback], save_tuner=False,
                          stop_criterion=StoppingCriterion(max_wallclock_time=budget), tuner_name="snnbench",
                          suffix_tuner_name=False, print_update_interval=1e9, results_update_interval=1e9)
            # the tuner prints its progress; pandas and statsmodels (TPE's kernel densities) warn from inside it
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", RuntimeWarning)
                tuner.run()
        finally:
            np.random.set_state(states[0])
            random.setstate(states[1])
            quiet.setLevel(level)
            if folder is None:
                os.environ.pop("SYNETUNE_FOLDER", None)
            else:
                os.environ["SYNETUNE_FOLDER"] = folder
    out = [{"time": float(r[ST_TUNER_TIME]), "trial": int(r["trial_id"]), "cell": box.cell({k: r[f"config_{k}"] for k in _NAMES}),
            "epoch": int(r[FIDELITY]), "val_acc": float(r["val_acc"])} for r in callback.results]
    return sorted((r for r in out if r["time"] <= budget), key=lambda r: r["time"])


def run_scheduler(oracle: Oracle, method: str, seed: int) -> None:
    """:func:`simulate` on ``oracle``'s view, kind and budget, recorded in ``oracle``; raises
    :class:`~api.algorithms.BudgetExhausted` at the end, as every algorithm does.

    ``oracle.history`` gets ``(time, cell, val)`` for each reported epoch whose validation accuracy beats the cell's
    earlier ones (so :func:`api.algorithms.trajectory` follows the best validation accuracy seen at any epoch),
    ``oracle.trained`` each cell's best seen, ``oracle.clock`` the time of the last result.
    """
    for r in simulate(oracle.bench, method, oracle.budget, seed, oracle.kind):
        oracle.clock = r["time"]
        u, value = r["cell"], r["val_acc"]
        if u >= 0 and value > oracle.trained.get(u, -np.inf):
            oracle.trained[u] = value
            oracle.history.append((oracle.clock, u, value))
    raise BudgetExhausted
