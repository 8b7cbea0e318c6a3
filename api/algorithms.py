"""Offline NAS algorithms on a table, with simulated cost (the stored training and scoring times).

Invariants
----------
* The search space is the view's cells of the kind that hold the observed accuracy (and, for
  score-based search, the score). Proposals are matrices; each is mapped to its unique cell, so an
  unpruned or isomorphic proposal of a cell already trained (or scored) costs nothing the second time.
* The clock only advances by stored times: training a cell costs its mean stored ``train_seconds``,
  scoring it the score's own stored time (``metric_seconds/METRIC``) where the table holds it for every cell,
  else the score row's ``seconds`` (every metric of the protocol, computed together; never a mix: see
  :meth:`Benchmark.scoring_seconds`), unless a ``score_cost`` per cell is given. A run stops
  before the evaluation that would pass the budget, or when the whole space has been trained, or (a policy
  that has converged: REINFORCE) after ``max_stall`` free repeats in a row. Random search, evolution's children and local search's
  restarts only propose cells not yet trained, so they spend the whole budget.
* The observed value of a trained cell is its accuracy on ``observe`` (mean over seeds); the reported
  result is the best observed so far, as a step function of simulated time.
* A run depends only on its seed: same seed, same trajectory.
"""

from __future__ import annotations

import importlib
import inspect
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from snnbench.api.benchmark import Benchmark
from snnbench.api.pareto import hypervolume
from snnbench.api.progress import progress_bar
from snnbench.api.replay import default_kind
from snnbench.fields import is_integer, is_real
from snnbench.space import NUM_NODES, NUM_OPS, PAIR_STATES, matrix_states, pair_codes, pair_weights, pairs, space

# A cell is searched as its pair states (snnbench.space.PAIR_STATES), one per pair of snnbench.space.pairs().
_IO = pairs().index((0, NUM_NODES - 1))
_WEIGHTS = pair_weights()  # the pair code of a state vector: states @ _WEIGHTS
# per view: None -> state_index; (kind, observe, score) -> that index with cells outside an Oracle's space at -1;
# "states" -> the pair states of every view cell
_INDEX: "weakref.WeakKeyDictionary[Benchmark, dict[object, np.ndarray]]" = weakref.WeakKeyDictionary()


class BudgetExhausted(Exception):
    """The next evaluation would pass the budget (or nothing is left to evaluate)."""


class MissingExtra(ImportError, ValueError):
    """A library method whose optional extra is not installed (an ``ImportError``; a ``ValueError`` too, so the
    CLI prints it as one line)."""


def pair_options(kind: str) -> list[range]:
    """The states each pair may take in ``kind``'s space (the input-output pair always holds an op)."""
    width = PAIR_STATES if kind == "backward" else NUM_OPS
    return [range(1, NUM_OPS) if p == _IO else range(width) for p in range(len(pairs()))]


def state_index(bench: Benchmark) -> np.ndarray:
    """``int32 [PAIR_STATES ** 6]``: the view index of the unique cell of every state vector, by pair code
    (``states @ pair_weights()``); -1 where the matrix is invalid or its cell is not in the view.

    :attr:`snnbench.space.Space.lookup` read through the view's cells, built once per view and shared by every
    run on it, so proposals and neighbourhoods cost an array read instead of a canonicalisation.
    """
    per_view = _INDEX.setdefault(bench, {})
    if None not in per_view:
        lookup = space().lookup
        unique = lookup[pair_codes(bench.matrices)]
        view_of = np.full(len(space().matrices) + 1, -1, dtype=np.int32)  # the last entry: lookup's -1
        view_of[unique[unique >= 0]] = np.flatnonzero(unique >= 0)
        per_view[None] = view_of[lookup]
    return per_view[None]


@dataclass
class Oracle:
    """Answers training and scoring queries from a table, charging simulated time, caching by unique cell."""

    bench: Benchmark
    budget: float
    observe: str = "val"
    score: str | None = None
    kind: str = "forward"
    clock: float = 0.0
    trained: dict[int, float] = field(default_factory=dict)
    scored: dict[int, float] = field(default_factory=dict)
    history: list[tuple[float, int, float]] = field(default_factory=list)  # (time, cell, observed) per new training
    max_stall: int = 1000  # repeat trainings in a row (free) after which a run ends: it is cycling
    stall: int = 0
    score_cost: float | None = None  # seconds per scored cell; None: the stored ones (see score_charge)
    score_charge: str | None = field(default=None, init=False)  # "given", or the stored column a scored cell costs
    partial: dict[int, int] = field(default_factory=dict)  # epochs paid by train_to, per cell not trained to the end
    _epoch_view: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False)  # (curve, time)

    def __post_init__(self) -> None:
        b = self.bench
        b.check_split(self.observe)
        acc = b.accuracy[self.observe]
        ok = np.isfinite(acc) & np.isfinite(b.train_seconds)
        if self.kind == "forward":
            ok &= b.kind_array == 0
        if self.score is not None:
            b.check_scores([self.score])
            ok &= ~np.isnan(b.scores[self.score])
            if self.score_cost is None:
                self._score_seconds, self.score_charge = b.scoring_seconds(self.score)
                ok &= np.isfinite(self._score_seconds)
            elif not (is_real(self.score_cost) and self.score_cost >= 0):
                raise ValueError(f"score cost: expected seconds >= 0, got {self.score_cost!r}")
            else:
                self.score_charge = "given"
        self.space = np.flatnonzero(ok)
        if not len(self.space):
            raise ValueError(f"search: no {self.kind} cell of {b.path} holds {self.observe} accuracy and training time "
                             f"(the view holds {b.holds()})")
        if self.kind == "backward" and not (b.kind_array[self.space] == 1).any():
            raise ValueError(f"search: the backward space needs cells with a backward edge, and no such cell of {b.path} "
                             f"holds {self.observe} accuracy and training time (the view holds {b.holds()}); use kind "
                             "'forward'")
        self._done = np.zeros(len(b), dtype=bool)  # trained, by view index
        per_view = _INDEX.setdefault(b, {})
        key = (self.kind, self.observe, self.score)  # the index restricted to this space, shared by every run
        if key not in per_view:
            index = state_index(b)
            masked = np.where(index >= 0, index, 0)
            masked[(index < 0) | ~ok[masked]] = -1  # cells outside the search space
            masked.flags.writeable = False
            per_view[key] = masked
        self._index = per_view[key]
        if "states" not in per_view:
            per_view["states"] = matrix_states(b.matrices)
        self._states = per_view["states"]
        self._options = pair_options(self.kind)
        self._acc, self._cost = acc.tolist(), b.train_seconds.tolist()

    def cells_of_states(self, states: np.ndarray) -> np.ndarray:
        """Unique cells (-1: outside the space) of state vectors ``[..., 6]`` of this kind."""
        return self._index[np.asarray(states) @ _WEIGHTS]

    def train(self, u: int) -> float:
        """Observed accuracy of cell ``u``; charges its training time the first time only."""
        if len(self.trained) == len(self.space):
            raise BudgetExhausted  # nothing left to learn
        if u in self.trained:
            self.stall += 1
            if self.stall > self.max_stall:  # e.g. evolution in a sparse space, cycling among paid cells
                raise BudgetExhausted
            return self.trained[u]
        self.stall = 0
        cost = self._cost[u]
        if u in self.partial:  # resumed: the epochs paid by train_to are not paid again
            cost = max(cost - float(self._epochs()[1][u, self.partial[u] - 1]), 0.0)
        if self.clock + cost > self.budget:
            raise BudgetExhausted
        self.clock += cost
        self.partial.pop(u, None)
        value = self._acc[u]
        self.trained[u] = value
        self._done[u] = True
        self.history.append((self.clock, u, value))
        return value

    def train_to(self, u: int, epoch: int) -> float:
        """The ``observe`` accuracy of cell ``u`` after ``epoch`` epochs (``1 .. bench.epochs``; NaN where the curve
        has no value there, e.g. test accuracy at an untested epoch), for multi-fidelity searches. Charges the time
        from the epochs already paid for the cell to ``epoch`` (:meth:`Benchmark.time_to_epoch`: training resumes,
        no epoch is paid twice), nothing for an epoch already reached. The last epoch is :meth:`train` (the cell is
        then trained, in ``history``, at the rest of its ``train_seconds``)."""
        self.bench.check_epoch(epoch)
        curve, time = self._epochs()
        if epoch == self.bench.epochs and u not in self.trained:
            return self.train(u)
        paid = self.bench.epochs if u in self.trained else self.partial.get(u, 0)
        if epoch > paid:
            cost = float(time[u, epoch - 1]) - (float(time[u, paid - 1]) if paid else 0.0)
            if self.clock + cost > self.budget:
                raise BudgetExhausted
            self.clock += cost
            self.partial[u] = epoch
        return float(curve[u, epoch - 1])

    def _epochs(self) -> tuple[np.ndarray, np.ndarray]:
        """``(observed curve, seconds to each epoch)``, both ``[cells, epochs]`` of the view (made once)."""
        if self._epoch_view is None:
            b = self.bench
            self._epoch_view = (b.curve("train_acc" if self.observe == "train" else f"{self.observe}_acc"), b.time_to_epoch())
        return self._epoch_view

    def score_of(self, u: int) -> float:
        """Stored score of cell ``u``; charges its scoring time the first time only (``ValueError`` for an oracle
        made without a score)."""
        if self.score is None:
            raise ValueError("score_of: this oracle has no score (give one: Oracle(..., score='sahd'), run(..., score='sahd'))")
        if u in self.scored:
            return self.scored[u]
        cost = float(self._score_seconds[u]) if self.score_cost is None else self.score_cost
        if self.clock + cost > self.budget:
            raise BudgetExhausted
        self.clock += cost
        value = float(self.bench.scores[self.score][u])  # type: ignore[index]
        self.scored[u] = value
        return value

    @property
    def best(self) -> tuple[int, float] | None:
        """``(cell, observed accuracy)`` of the best cell trained so far (the first to reach it), None before any."""
        top: tuple[int, float] | None = None
        for _, u, value in self.history:
            if top is None or value > top[1]:
                top = (u, value)
        return top

    def __repr__(self) -> str:
        best = self.best
        found = "none" if best is None else f"cell {best[0]} ({self.bench.hash_array[best[0]].decode()}) at {best[1]:.4f}"
        score = "" if self.score is None else f", score={self.score!r}, scored={len(self.scored)}"
        partial = f", partly trained={len(self.partial)}" if self.partial else ""
        return (f"Oracle({self.bench.path.name}, "
                f"kind={self.kind!r}, observe={self.observe!r}{score}, clock={self.clock:.1f}/{self.budget:g} s, "
                f"trained={len(self.trained)} of {len(self.space)}{partial}, best={found})")

    def random_cell(self, rng: np.random.Generator) -> int:
        """A uniform cell of the space."""
        return int(self.space[rng.integers(len(self.space))])

    def untrained_cell(self, rng: np.random.Generator) -> int:
        """A uniform cell of the space not trained yet (:class:`BudgetExhausted` when none is left)."""
        for _ in range(8):  # rejection while most of the space is untrained
            u = self.random_cell(rng)
            if not self._done[u]:
                return u
        rest = self.space[~self._done[self.space]]
        if not len(rest):
            raise BudgetExhausted
        return int(rest[rng.integers(len(rest))])

    def untrained(self, cells: list[int]) -> list[int]:
        """``cells`` not trained yet, in order."""
        return [u for u in cells if not self._done[u]]

    def states(self, u: int) -> list[int]:
        """Pair states of cell ``u``'s canonical matrix."""
        return self._states[u].tolist()  # type: ignore[no-any-return]

    def neighbours(self, u: int) -> list[int]:
        """Distinct cells of the space one pair change away from ``u``'s canonical matrix (pair-major order)."""
        base = self.states(u)
        code = int(np.dot(base, _WEIGHTS))
        near = [code + (s - base[p]) * int(_WEIGHTS[p]) for p, options in enumerate(self._options) for s in options
                if s != base[p]]
        cells = self._index[near].tolist()
        return list(dict.fromkeys(v for v in cells if v >= 0 and v != u))


def random_search(oracle: Oracle, rng: np.random.Generator) -> None:
    """Train the cells of the space in a uniformly random order (uniform draws, repeats skipped) until the
    budget runs out."""
    for u in rng.permutation(oracle.space).tolist():
        oracle.train(u)


def regularized_evolution(oracle: Oracle, rng: np.random.Generator, population: int = 20, sample: int = 5) -> None:
    """Real et al. (2019): tournament of ``sample`` from a population of ``population``; mutate; drop the oldest.

    The first population is distinct uniform cells; a child is a uniform untrained neighbour of its parent (an
    untrained cell of the space when every neighbour is trained). With free repeats, a child already trained
    would cost nothing and, on a space of a few thousand cells, fill the population with copies of the best.
    """
    pop: list[tuple[int, float]] = []
    for _ in range(population):
        u = oracle.untrained_cell(rng)
        pop.append((u, oracle.train(u)))
    while True:
        picks = rng.choice(len(pop), size=min(sample, len(pop)), replace=False)
        parent = max((pop[i] for i in picks), key=lambda t: t[1])[0]
        child = mutate(oracle, parent, rng)
        pop.append((child, oracle.train(child)))
        pop.pop(0)


def mutate(oracle: Oracle, u: int, rng: np.random.Generator) -> int:
    """A uniform untrained neighbour of cell ``u`` (:meth:`Oracle.neighbours`; an untrained cell of the space when it
    has none): regularized evolution's mutation, for one's own search."""
    near = oracle.untrained(oracle.neighbours(u))
    return near[rng.integers(len(near))] if near else oracle.untrained_cell(rng)


def local_search(oracle: Oracle, rng: np.random.Generator) -> None:
    """Hill climbing (White et al. 2021): train every neighbour, move to the best if it improves, else restart
    (at an untrained cell)."""
    while True:
        u = oracle.untrained_cell(rng)
        best = oracle.train(u)
        while True:
            near = oracle.neighbours(u)
            rng.shuffle(near)
            values = [(oracle.train(v), v) for v in near]
            top = max(values, default=(-np.inf, u))
            if top[0] <= best:
                break
            best, u = top


def reinforce(oracle: Oracle, rng: np.random.Generator, lr: float = 0.5, momentum: float = 0.9) -> None:
    """REINFORCE with one softmax per pair (Williams 1992), reward = observed accuracy, moving-average baseline.

    A sampled matrix outside the space is redrawn (up to 100 times, then a uniform cell of the space
    stands in, with its own pair states as the action).
    """
    options = pair_options(oracle.kind)
    first = np.array([r.start for r in options])
    logits = [np.zeros(len(r)) for r in options]
    baseline: float | None = None
    while True:
        probs = [np.exp(lg - lg.max()) / np.exp(lg - lg.max()).sum() for lg in logits]
        draws = rng.random((100, len(options)))
        actions = np.stack([np.minimum(np.searchsorted(np.cumsum(p), draws[:, k], side="right"), len(p) - 1)
                            for k, p in enumerate(probs)], axis=1)
        cells = oracle.cells_of_states(actions + first)
        hit = np.flatnonzero(cells >= 0)
        if len(hit):
            u, action = int(cells[hit[0]]), actions[hit[0]].tolist()
        else:
            u = oracle.random_cell(rng)
            action = (np.array(oracle.states(u)) - first).tolist()
        reward = oracle.train(u)
        baseline = reward if baseline is None else momentum * baseline + (1 - momentum) * reward
        for p, a in enumerate(action):
            grad = -probs[p]
            grad[a] += 1.0
            logits[p] += lr * (reward - baseline) * grad


def score_then_train(oracle: Oracle, rng: np.random.Generator, candidates: int = 100, top: int = 5) -> None:
    """The paper's search, generalised: score ``candidates`` distinct cells, train the ``top`` best-scored."""
    if oracle.score is None:
        raise ValueError("score_then_train needs a score (e.g. score='sahd')")
    pool = rng.permutation(oracle.space)[:candidates]
    scored = []
    for u in pool:
        scored.append((-oracle.score_of(int(u)), int(u)))
    for _, u in sorted(scored)[:top]:
        oracle.train(u)
    raise BudgetExhausted


ALGORITHMS: dict[str, Callable[..., None]] = {
    "random": random_search, "evolution": regularized_evolution, "local": local_search,
    "reinforce": reinforce, "score_train": score_then_train,
}

# optional libraries' methods, run as ``PREFIX:METHOD``: prefix -> (module, its methods, the extra installing it)
LIBRARIES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "syne": ("snnbench.api.synetune", ("random", "rea", "tpe", "asha", "hyperband", "morea", "moasha"), "synetune"),
    "optuna": ("snnbench.api.optuna_search", ("tpe", "cmaes", "nsga2", "random"), "optuna"),
}


def library_method(entry: str) -> tuple[str, str] | None:
    """``(prefix, method)`` of a ``syne:METHOD`` / ``optuna:METHOD`` entry, None for any other name;
    ``ValueError`` for a method the library adapter does not offer."""
    prefix, _, method = entry.partition(":")
    if prefix not in LIBRARIES:
        return None
    _, methods, _ = LIBRARIES[prefix]
    if method not in methods:
        raise ValueError(f"algorithm: {prefix}: expected one of {', '.join(f'{prefix}:{m}' for m in methods)}, got {entry!r}")
    return prefix, method


def check_library_split(prefix: str, observe: str) -> None:
    """``ValueError`` unless a library's methods can observe ``observe`` (Syne Tune's: val only)."""
    if prefix == "syne" and observe != "val":
        raise ValueError(f"syne: methods observe validation accuracy (the blackbox's curves), not {observe!r}")


def _library_runner(prefix: str) -> Callable[[Oracle, str, int], None]:
    """The adapter's run function (imports the library: :class:`MissingExtra` naming the extra when absent)."""
    module, _, extra = LIBRARIES[prefix]
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise MissingExtra(f"{prefix}: methods need the {extra} extra: pip install 'snnbench[{extra}]' ({e})") from None
    return mod.run_scheduler if prefix == "syne" else mod.run_sampler  # type: ignore[no-any-return]


# each algorithm's keyword options (its signature after ``oracle, rng``) and what each must be
_OPTION_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "population": (is_integer, "an integer >= 1"), "sample": (is_integer, "an integer >= 1"),
    "candidates": (is_integer, "an integer >= 1"), "top": (is_integer, "an integer >= 1"),
    "lr": (lambda v: is_real(v) and v > 0, "a positive finite number"),
    "momentum": (lambda v: is_real(v) and 0 <= v < 1, "a number in [0, 1)"),
}


def check_options(algorithm: str, options: dict[str, Any]) -> None:
    """``ValueError`` for an unknown algorithm, an option it does not take, or a value out of the option's range."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm: expected one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
    params = inspect.signature(ALGORITHMS[algorithm]).parameters
    takes = list(params)[2:]
    for key, value in options.items():
        if key not in takes:
            raise ValueError(f"{algorithm}: unknown option {key!r} (it takes: {', '.join(takes) or 'none'})")
        ok, what = _OPTION_CHECKS[key]
        if not ok(value):
            raise ValueError(f"{algorithm}: option {key} must be {what}, got {value!r}")
    if algorithm == "score_train":
        top, candidates = (options.get(k, params[k].default) for k in ("top", "candidates"))
        if top > candidates:
            raise ValueError(f"score_train: top ({top}) is more than candidates ({candidates})")


def run(bench: Benchmark, algorithm: str | Callable[..., None], budget: float, seed: int, *, observe: str = "val",
        score: str | None = None, kind: str | None = None, score_cost: float | None = None, **options: Any) -> Oracle:
    """One run of ``algorithm`` until its simulated ``budget`` (seconds) is spent; returns the oracle (history).
    ``score_cost``: seconds charged per scored cell (default: the stored score seconds); ``options``: the
    algorithm's own (``ValueError`` for one it does not take, see :func:`check_options`).

    ``algorithm`` may also be a library's method, ``syne:METHOD`` (:mod:`api.synetune`) or ``optuna:METHOD``
    (:mod:`api.optuna_search`), seeded by ``seed``; they need the ``synetune`` / ``optuna`` extra. Or one's own
    search: a function ``f(oracle, rng, **options)`` that asks :meth:`Oracle.train` (and :meth:`Oracle.score_of`,
    given ``score``) until they raise :class:`BudgetExhausted` (or it returns), ``rng`` seeded by ``seed``."""
    if callable(algorithm):
        check_budget(budget)
        oracle = Oracle(bench, budget, observe, score, kind or default_kind(bench, observe), score_cost=score_cost)
        try:
            algorithm(oracle, np.random.default_rng(seed), **options)
        except BudgetExhausted:
            pass
        return oracle
    library = library_method(algorithm)
    if library is not None:
        if options:
            raise ValueError(f"{algorithm}: takes no options, got {', '.join(options)}")
        check_budget(budget)
        check_library_split(library[0], observe)
        runner = _library_runner(library[0])
        oracle = Oracle(bench, budget, observe, None, kind or default_kind(bench, observe))
        try:
            runner(oracle, library[1], seed)
        except BudgetExhausted:
            pass
        return oracle
    check_options(algorithm, options)
    check_budget(budget)
    if algorithm == "score_train" and score is None:
        score = "sahd"
    oracle = Oracle(bench, budget, observe, score if algorithm == "score_train" else None, kind or default_kind(bench, observe),
                    score_cost=score_cost)
    try:
        ALGORITHMS[algorithm](oracle, np.random.default_rng(seed), **options)
    except BudgetExhausted:
        pass
    return oracle


def check_budget(budget: float) -> None:
    """``ValueError`` unless ``budget`` is a positive finite number (of simulated seconds)."""
    if not (is_real(budget) and budget > 0):
        raise ValueError(f"budget: expected a positive finite number of seconds, got {budget!r}")


def trajectory(oracle: Oracle, times: np.ndarray, split: str = "test") -> np.ndarray:
    """Best-so-far value at each time: the ``split`` accuracy of the cell with the best observed value (NaN before any)."""
    out = np.full(len(times), np.nan)
    acc = oracle.bench.accuracy[split]
    best, best_cell = -np.inf, -1
    marks: list[tuple[float, float]] = []
    for t, u, v in oracle.history:
        if v > best:
            best, best_cell = v, u
            marks.append((t, float(acc[best_cell])))
    for t, value in marks:
        out[times >= t] = value
    return out


def parse_entries(bench: Benchmark, algorithms: Sequence[str], score: str = "sahd",
                  score_costs: dict[str, float] | None = None, observe: str = "val") -> list[tuple[str, str, str]]:
    """``(entry, algorithm, score)`` per :func:`compare` entry; ``ValueError`` for an unknown algorithm, a score
    the view lacks (also as a key of ``score_costs``), or no entry; :class:`MissingExtra` for a library method
    whose extra is not installed, or a ``syne:`` method observing another accuracy than val (its blackbox
    reports validation curves)."""
    if isinstance(algorithms, str):
        raise TypeError(f"algorithms: expected a list of names, got the string {algorithms!r}")
    if not algorithms:
        raise ValueError("algorithm: none given")
    if score_costs:
        bench.check_scores(list(score_costs))
    entries = []
    for entry in algorithms:
        library = library_method(entry)
        if library is not None:
            check_library_split(library[0], observe)
            _library_runner(library[0])  # the extra is installed
            entries.append((entry, entry, score))
            continue
        name, _, metric = entry.partition(":")
        if name not in ALGORITHMS or (metric and name != "score_train") or entry.endswith(":"):
            raise ValueError(f"algorithm: expected one of {', '.join(ALGORITHMS)}, score_train:METRIC, syne:METHOD or "
                             f"optuna:METHOD, got {entry!r}")
        if name == "score_train":
            bench.check_scores([metric or score])
        entries.append((entry, name, metric or score))
    return entries


BAND = (25, 75)  # percentiles over runs of compare's ``curve_band``: the interquartile range


def trained_on(bench: Benchmark) -> str | None:
    """The dataset name of the view's train protocol (None for a score-only view)."""
    return next((str(m["settings"]["dataset"]["name"]) for m in bench.metadata.values() if m["type"] == "train"), None)


def _defined(full: np.ndarray, values: np.ndarray) -> list[float | None]:
    """``values`` (one per True of ``full``) spread over ``full``'s positions, None at the False ones."""
    out: list[float | None] = [None] * len(full)
    for i, v in zip(np.flatnonzero(full), values.tolist()):
        out[i] = v
    return out


@dataclass(frozen=True)
class CompareSettings:
    """What :func:`compare` runs: each of ``algorithms`` over ``runs`` seeds (``seed``, ``seed + 1``, ...) with a
    simulated ``budget`` (seconds) per run, observing ``observe`` accuracy and reporting ``split`` accuracy at
    ``points`` times; ``kind``: the space searched (None: :func:`api.replay.default_kind`).

    An entry ``"score_train:METRIC"`` runs ``score_train`` by that score (plain ``score_train`` uses ``score``),
    so one comparison can hold the paper's search under several scores. ``options[name]``: keyword options of
    algorithm ``name`` (:func:`check_options`). ``score_costs[METRIC]``: seconds charged per cell scored by METRIC
    (absent: the stored ones, see :meth:`Benchmark.scoring_seconds`). ``progress``: a bar of runs on stderr
    (``None``: on a terminal; :mod:`api.progress`). :func:`compare` checks every field against the view.
    """

    algorithms: Sequence[str]
    budget: float
    runs: int
    observe: str = "val"
    split: str = "test"
    score: str = "sahd"
    kind: str | None = None
    points: int = 500  # curve points over the budget: a curve that ends early, or random search read at a
    # score_train run's cost, is placed within 0.2% of the budget
    seed: int = 0
    options: dict[str, dict[str, Any]] | None = None
    score_costs: dict[str, float] | None = None
    progress: bool | None = False


def compare(bench: Benchmark, settings: CompareSettings) -> dict[str, Any]:
    """Every algorithm of ``settings`` over its runs: final best accuracy (mean, std) and the mean trajectory over
    time, e.g. ``compare(bench, CompareSettings(["random", "local"], budget=3600, runs=5))``.

    ``hypervolume_mean`` / ``_std``: the area of (observed ``observe`` accuracy, spikes per image) dominated by the
    cells a run trained, as a share of the whole space's (:func:`api.pareto.hypervolume`; reference point: the
    space's median accuracy and its largest spikes per image; None when the view holds no spikes): how much of the
    accuracy-vs-spikes front a run found by its budget, whatever it optimised.

    Per algorithm, ``curve_band``: the 25th and 75th percentiles over runs of the incumbent's ``split`` accuracy
    at each time (``band``: those percentiles), None where ``curve_mean`` is; ``seconds_max``: the simulated time
    at which the last run ended (the curves hold its final values past it). ``dataset``: the train protocol's.

    ``table_best``: the best ``observe`` accuracy of the searched space, the number of cells that tie on it (the
    first one's ``hash``), their mean ``split`` accuracy (what a perfect search expects) and the space's best
    ``split`` accuracy (``max_<split>``).

    Each ``score_train`` entry's ``score_cost`` is its charge per scored cell (None: the stored ones, and its
    ``score_charge`` names the column).
    """
    observe, split, budget, runs = settings.observe, settings.split, settings.budget, settings.runs
    check_budget(budget)
    if not (is_integer(runs) and is_integer(settings.points)):
        raise ValueError(f"compare: runs and points must be integers >= 1, got {runs!r} and {settings.points!r}")
    bench.check_split(split)
    entries = parse_entries(bench, settings.algorithms, settings.score, settings.score_costs, observe)
    options = settings.options or {}
    for name, opts in options.items():
        check_options(name, opts)
    times = np.linspace(0, budget, settings.points + 1)[1:]
    kind = settings.kind or default_kind(bench, observe)
    space = Oracle(bench, budget, observe, None, kind).space
    spikes = bench.spikes_per_image
    held = space[np.isfinite(spikes[space])]
    ref = (float(np.median(bench.accuracy[observe][held])), float(spikes[held].max())) if len(held) else None
    whole = hypervolume(bench.accuracy[observe][held], spikes[held], *ref) if ref else None
    out: dict[str, Any] = {"budget": budget, "runs": runs, "observe": observe, "split": split, "times": times.tolist(),
                           "table": str(bench.path), "dataset": trained_on(bench), "band": list(BAND), "algorithms": {}}
    bar = progress_bar(len(entries) * runs, "compare", "run", settings.progress)
    for entry, name, metric in entries:
        cost = (settings.score_costs or {}).get(metric) if name == "score_train" else None
        finals, curves, trained, spent, volumes, charge = [], [], [], [], [], None
        bar.set_postfix_str(entry)
        for r in range(runs):
            oracle = run(bench, name, budget, settings.seed + r, observe=observe, score=metric, kind=kind, score_cost=cost,
                         **options.get(name, {}))
            bar.update()
            curve = trajectory(oracle, times, split)
            curves.append(curve)
            finals.append(curve[-1])
            trained.append(len(oracle.trained))
            spent.append(oracle.clock)
            charge = oracle.score_charge
            if ref is not None and whole:
                cells = list(oracle.trained)
                volumes.append(hypervolume(np.array([oracle.trained[u] for u in cells]), spikes[cells], *ref) / whole)
        finals_a, curves_a = np.array(finals), np.array(curves)
        ok = np.isfinite(finals_a)
        full = np.isfinite(curves_a).all(axis=0)  # times at which every run has trained a cell
        low, high = np.percentile(curves_a[:, full], BAND, axis=0) if full.any() else (np.array([]), np.array([]))
        out["algorithms"][entry] = {
            "final_mean": float(finals_a[ok].mean()) if ok.any() else None,
            "final_std": float(finals_a[ok].std()) if ok.any() else None,
            "runs_with_result": int(ok.sum()),
            "trained_mean": float(np.mean(trained)), "seconds_mean": float(np.mean(spent)),
            "seconds_max": float(np.max(spent)), "score_cost": cost,
            "score_charge": charge,
            "hypervolume_mean": float(np.mean(volumes)) if volumes else None,
            "hypervolume_std": float(np.std(volumes)) if volumes else None,
            # a mean over every run, so None until each run has trained a cell (no early bias to quick runs)
            "curve_mean": [float(c.mean()) if f else None for c, f in zip(curves_a.T, full)],
            "curve_band": [_defined(full, low), _defined(full, high)],
        }
    bar.close()
    out["kind"] = kind
    out["space"] = {"cells": len(space), "forward": int((bench.kind_array[space] == 0).sum()),
                    "backward": int((bench.kind_array[space] == 1).sum()), "holds": bench.holds()}
    observed, reported = bench.accuracy[observe][space], bench.accuracy[split][space]
    tied = np.flatnonzero(observed == observed.max())  # the cells a perfect search by ``observe`` could end on
    out["table_best"] = {"hash": bench.hash_array[space[tied[0]]].decode(), "tied": len(tied),
                         observe: float(observed.max()), split: float(reported[tied].mean()),
                         f"max_{split}": float(reported.max())}
    return out
