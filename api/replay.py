"""Replay of the paper's training-free search on a table: draw N cells, keep the best-scored one.

Invariants
----------
* The pool is the view's cells of the kind's space that hold the accuracy and every score asked for (a
  singular kernel's ``-inf`` counts as a score). Draws follow :meth:`snnbench.space.Space.probabilities`
  (``"paper"``: the paper's raw sampler, or ``"uniform"`` over unique cells) restricted to the pool, with one
  correction for partial coverage: the space's two strata (forward cells; cells with a backward edge) each
  keep their share of the sampler's mass, spread over the stratum's pool cells by their own weights. With a
  table that covers the kind's whole space this is exactly the paper's sampler; with a uniform sample of a
  stratum it is that sampler's unbiased stand-in (within a stratum cells keep their relative weights).
  ``Pool.coverage`` says, per stratum, how many of the space's cells the pool holds and the mass it stands for.
* The backward space needs cells with a backward edge: a pool of forward cells only is refused for it.
* One trial draws ``N`` cells with replacement; a score's pick is the first draw with the highest
  score; "random" is the first draw; "oracle" is the best accuracy among the draws.
* Score noise: where the score protocol holds several seeds of a cell, each draw sees the score of one of them,
  chosen uniformly and independently per draw (the paper scores every drawn cell from a fresh initialisation),
  the same seed for every score of that draw (one scoring pass computes them all). ``mean_score=True`` picks by
  the mean over seeds instead (the denoised pick). With one seed per cell the two are the same numbers.
* Everything is seeded: the draws at size N come from ``(seed, N)``, so the numbers at one N do not depend
  on which other sizes a curve asks for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from snnbench.api.benchmark import Benchmark
from snnbench.fields import is_integer
from snnbench.space import Distribution, Kind, space


@dataclass(frozen=True)
class Pool:
    """Cells a replay draws from: view indices and their sampling probabilities (sum 1)."""

    cells: np.ndarray  # int32 [P] view indices
    prob: np.ndarray  # float64 [P]
    kind: str
    dist: str
    #: per stratum (``forward``, ``backward``: cells with a backward edge) of the kind's space: ``space`` (unique
    #: cells), ``pool`` (of them in the pool), ``mass`` (the stratum's share of the sampler's draws) and ``held``
    #: (the share of the sampler's draws that land on pool cells directly, before the stratum correction)
    coverage: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def effective_size(self) -> float:
        """``1 / sum(prob^2)``: how many equally likely cells the draws are worth (``P`` when uniform; near 1
        when one cell, reached by many raw matrices under the paper's sampler, takes most draws)."""
        return float(1.0 / np.sum(self.prob**2))

    def describe(self) -> str:
        """The coverage in words, e.g. ``"7,012 of 7,012 forward cells (54.4% of draws); 3,000 of 95,584 cells with
        a backward edge (3.1%; 45.6% of draws)"``."""
        return self.describe_coverage(self.coverage)

    @staticmethod
    def describe_coverage(coverage: dict[str, dict[str, float]]) -> str:
        """:meth:`describe` of a ``coverage`` mapping (as a replay result holds it)."""
        parts = []
        for stratum, c in coverage.items():
            name = "forward cells" if stratum == "forward" else "cells with a backward edge"
            share = "" if c["pool"] == c["space"] else f"{_percent(c['pool'] / c['space'])}; "
            parts.append(f"{int(c['pool']):,} of {int(c['space']):,} {name} ({share}{c['mass']:.1%} of draws)")
        return "; ".join(parts)


def _percent(share: float) -> str:
    """A share as a percentage with two significant digits below 1% (``0.033%``), else one decimal (``3.1%``)."""
    return f"{100 * share:.2g}%" if 0 < share < 0.01 else f"{share:.1%}"


def default_kind(bench: Benchmark, split: str) -> Kind:
    """``"backward"`` when a cell with a backward edge holds ``split`` accuracy, unless the view trains the whole
    forward space but not the whole backward one (then the complete space is the default); else ``"forward"``."""
    bench.check_split(split)
    trained = np.isfinite(bench.accuracy[split])
    if not np.any(trained & (bench.kind_array == 1)):
        return "forward"
    sp = space()
    forward, backward = (bench.kind_array == 0) & trained, (bench.kind_array == 1) & trained
    whole_forward = forward.sum() == (~sp.is_backward).sum()
    return "forward" if whole_forward and backward.sum() < sp.is_backward.sum() else "backward"


def make_pool(bench: Benchmark, scores: Sequence[str], split: str = "test", kind: Kind | None = None,
              dist: Distribution = "paper") -> Pool:
    """The replay pool (see the module docstring); ``ValueError`` naming what is missing when empty."""
    bench.check_split(split)
    bench.check_scores(scores)
    kind = kind or default_kind(bench, split)
    ok = np.isfinite(bench.accuracy[split])
    for m in scores:
        ok &= ~np.isnan(bench.scores[m])  # -inf (singular kernel) is a valid, lowest score
    sp = space()
    full = sp.probabilities(kind, dist)
    base = full[bench.space_index] * ok  # 0 off the kind's space
    need = ", ".join([f"{split} accuracy", *scores])
    if not (base > 0).any():
        raise ValueError(f"replay: no {kind} cell of {bench.path} holds {need} (the view holds {bench.holds()})")
    if kind == "backward" and not (base[bench.kind_array == 1] > 0).any():
        raise ValueError(f"replay: the backward space needs cells with a backward edge, and no such cell of {bench.path} "
                         f"holds {need} (the view holds {bench.holds()}); use --kind forward")
    weight = np.zeros(len(base))
    coverage: dict[str, dict[str, float]] = {}
    for code, stratum in enumerate(("forward", "backward")):
        in_space = (sp.is_backward == bool(code)) & (full > 0)
        if not in_space.any():
            continue
        members = (bench.kind_array == code) & (base > 0)
        mass, held = float(full[in_space].sum()), float(base[members].sum())
        if held > 0:
            weight[members] = base[members] * (mass / held)
        coverage[stratum] = {"space": int(in_space.sum()), "pool": int(members.sum()), "mass": mass, "held": held}
    cells = np.flatnonzero(weight > 0)
    prob = weight[cells] / weight[cells].sum()
    return Pool(cells.astype(np.int32), prob, kind, dist, coverage)


MAX_DRAWS = 10**8  # one replay's draws (12 bytes each while they are made)


@lru_cache(maxsize=8)
def _alias(prob_bytes: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Walker/Vose alias table (acceptance probability, alias) of a probability vector."""
    prob = np.frombuffer(prob_bytes, dtype=np.float64)
    k = len(prob)
    scaled = prob * k
    accept = np.ones(k)
    alias = np.arange(k, dtype=np.int32)
    small = [i for i in range(k) if scaled[i] < 1.0]
    large = [i for i in range(k) if scaled[i] >= 1.0]
    scaled = scaled.tolist()
    while small and large:
        s, g = small.pop(), large.pop()
        accept[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    return accept, alias  # leftovers keep accept 1 (rounding)


def _check_counts(samples: int, trials: int) -> None:
    """``ValueError`` unless both are integers >= 1."""
    if not (is_integer(samples) and is_integer(trials)):
        raise ValueError(f"replay: samples and trials must be integers >= 1, got {samples!r} and {trials!r}")


def draw(pool: Pool, samples: int, trials: int, seed: int | np.random.Generator) -> np.ndarray:
    """``int32 [trials, samples]`` view indices drawn i.i.d. from the pool (alias method, seeded); at most
    ``MAX_DRAWS`` in all."""
    _check_counts(samples, trials)
    if samples * trials > MAX_DRAWS:
        raise ValueError(f"replay: N x trials = {samples:,} x {trials:,} draws, more than {MAX_DRAWS:,}; ask for fewer trials")
    rng = np.random.default_rng(seed)
    k = len(pool.cells)
    u = rng.random((trials, samples)) * k  # one uniform gives the slot (integer part) and the coin (fraction)
    slot = u.astype(np.int32)
    np.minimum(slot, k - 1, out=slot)
    if pool.dist != "uniform" or np.ptp(pool.prob) > 0:
        accept, alias = _alias(pool.prob.tobytes())
        u -= slot
        slot = np.where(u < accept[slot], slot, alias[slot])
    return pool.cells[slot]


def pick(draws: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Per trial, the first draw with the highest score (``[trials]`` view indices)."""
    return pick_by(draws, score[draws])


def pick_by(draws: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per trial, the first draw with the highest of ``values`` (one per draw, ``[trials, samples]``)."""
    return draws[np.arange(len(draws)), np.argmax(values, axis=1)]


def seed_scores(bench: Benchmark, metric: str, draws: np.ndarray, u: np.ndarray) -> np.ndarray:
    """One seed's ``metric`` score per draw (``[trials, samples]``): of the seeds the protocol holds for the drawn
    cell (ascending), the ``floor(u * count)``-th, ``u`` uniform in [0, 1) per draw."""
    _, by_seed = bench.scores_by_seed(metric)
    held = ~np.isnan(by_seed)
    count = held.sum(axis=1)
    compact = np.take_along_axis(by_seed, np.argsort(~held, axis=1, kind="stable"), axis=1)  # held seeds first
    k = np.minimum((u * count[draws]).astype(np.int64), np.maximum(count[draws] - 1, 0))
    return compact[draws, k]


def score_seeds(bench: Benchmark, metric: str, cells: np.ndarray) -> int:
    """The most scoring seeds any of ``cells`` (view indices) holds for ``metric``; 1 for a score the view holds no
    stored rows of (one added to ``bench.scores``: its values are all there is)."""
    try:
        _, by_seed = bench.scores_by_seed(metric)
    except ValueError:
        return 1
    return int((~np.isnan(by_seed[cells])).sum(axis=1).max()) if len(cells) else 0


def replay_picks(bench: Benchmark, samples: int, trials: int, scores: Sequence[str] = ("sahd",), *, split: str = "test",
                 kind: Kind | None = None, dist: Distribution = "paper", seed: int = 0,
                 mean_score: bool = False) -> tuple[Pool, dict[str, np.ndarray], int]:
    """The pool, each method's picked-cell ``split`` accuracy per trial (``float64 [trials]``; the same draws for
    every method, so two methods compare trial by trial) and the most scoring seeds a pool cell holds; see
    :func:`replay`."""
    _check_counts(samples, trials)
    pool = make_pool(bench, scores, split, kind, dist)
    draws = draw(pool, samples, trials, np.random.default_rng([seed, samples]))
    acc = bench.accuracy[split]
    held = {m: score_seeds(bench, m, pool.cells) for m in scores}
    most = max(held.values())
    # its own stream: the draws, hence random and oracle, are those of the mean-score replay
    u = None if mean_score or most <= 1 else np.random.default_rng([seed, samples, 1]).random(draws.shape)
    picked = {m: acc[pick(draws, bench.scores[m]) if u is None or held[m] <= 1 else
                     pick_by(draws, seed_scores(bench, m, draws, u))] for m in scores}
    picked["random"] = acc[draws[:, 0]]
    picked["oracle"] = acc[draws].max(axis=1)
    return pool, picked, most


def replay(bench: Benchmark, samples: int, trials: int, scores: Sequence[str] = ("sahd",), *, split: str = "test",
           kind: Kind | None = None, dist: Distribution = "paper", seed: int = 0, mean_score: bool = False) -> dict[str, Any]:
    """Picked-cell accuracy (mean, std over trials) for each score, random choice and the oracle best of N; each
    draw sees one seed's score (``mean_score``: the mean over seeds), see the module docstring."""
    pool, picked, most = replay_picks(bench, samples, trials, scores, split=split, kind=kind, dist=dist, seed=seed,
                                      mean_score=mean_score)
    return {
        "samples": samples, "trials": trials, "split": split, "kind": pool.kind, "dist": dist, "seed": seed,
        "pool": len(pool.cells), "coverage": pool.coverage, "table": str(bench.path), "protocols": bench.protocol_ids,
        "score_draw": "mean" if mean_score or most <= 1 else "seed", "score_seeds": most,
        "methods": {k: {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()), "max": float(v.max())}
                    for k, v in picked.items()},
    }


def replay_curve(bench: Benchmark, sizes: Sequence[int], trials: int, scores: Sequence[str] = ("sahd",), *,
                 split: str = "test", kind: Kind | None = None, dist: Distribution = "paper", seed: int = 0,
                 mean_score: bool = False) -> dict[str, Any]:
    """Accuracy against N (supplementary Fig. 3): :func:`replay` at each size."""
    if not len(sizes):
        raise ValueError("replay: no size N given")
    runs = [replay(bench, n, trials, scores, split=split, kind=kind, dist=dist, seed=seed, mean_score=mean_score)
            for n in sizes]
    methods = list(runs[0]["methods"])
    return {"sizes": list(sizes), "trials": trials, "split": split, "kind": runs[0]["kind"], "dist": dist, "seed": seed,
            "pool": runs[0]["pool"], "coverage": runs[0]["coverage"], "score_draw": runs[0]["score_draw"],
            "score_seeds": runs[0]["score_seeds"],
            "methods": {m: {"mean": [r["methods"][m]["mean"] for r in runs], "std": [r["methods"][m]["std"] for r in runs]}
                        for m in methods}}
