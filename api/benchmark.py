"""The query layer: a table read once into per-cell numpy columns, then queried in microseconds.

A :class:`Benchmark` is a *view* of one table through at most one ``score`` protocol and one
``train`` protocol (chosen by id prefix, else the largest pair on the same dataset and network, else on
named variants of one dataset, e.g. scores on ``cifar10-jpeg`` and trainings on its subset ``cifar10-jpeg-12k``). Its cells
are the table's cells that either protocol holds a row for; every per-cell column is indexed by the
view index (``0 .. len - 1``, in space-index order) and holds NaN where a protocol lacks
the cell. Means are over the seeds a protocol holds for the cell.

Invariants
----------
* The file is read once, when the view is opened; queries never touch it again.
* A query maps any accepted matrix form (unpruned, isomorphic, whole-number floats) to the canonical
  cell, so every member of a class returns the same record. An invalid matrix raises the cell
  type's ``ValueError``; a valid cell without results raises :class:`CellNotFound` (a ``KeyError``).
* Records are fresh JSON-ready dicts (``docs/api.md`` lists every field); mutating one changes nothing.
* One builder makes every record (``Benchmark._assemble``), from packed rows of means or of one seed's row; a
  record at ``epoch=E`` is that record as training stood after epoch E (``Benchmark._at_epoch``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np

from snnbench.api.lookup import Key, cell_key
from snnbench.names import METRIC_ALIASES
from snnbench.space import NUM_NODES, Cell, space, texts_of, to_text
from snnbench.table import METRIC_SECONDS, SPIKE_LAYERS, Protocol, Table, dataset_matches, open_table, resolve_table

_KINDS = ("forward", "backward")


def _num(v: float) -> float | None:
    """NaN (no result) and +-inf (a singular kernel's score) -> ``None``, so records stay valid JSON."""
    return None if v - v != 0 else v  # inf - inf and nan - nan are nan


def _clean(row: list[Any], bad: float) -> list[Any]:
    """A packed row as record values: every non-finite value -> None when ``bad`` (the row's ``_bad`` flag), then a
    trailing None, which position -1 (a column the protocol lacks) reads."""
    if bad:
        row = [_num(x) for x in row]
    row.append(None)
    return row


def _clean_curves(curves: list[list[float]], has_nan: float) -> list[list[float | None]] | list[list[float]]:
    """Curves ``[C][E]`` with NaN (an epoch without that value) -> None when ``has_nan`` (the row's ``_nan`` flag)."""
    return [[None if x != x else x for x in v] for v in curves] if has_nan else curves


def seconds_to_epochs(train_seconds: float | np.ndarray, epoch_seconds: np.ndarray | None, epochs: int) -> np.ndarray:
    """Simulated seconds to reach each epoch ``1 .. epochs`` (``[..., epochs]``): the whole training's
    ``train_seconds`` (what :class:`api.algorithms.Oracle` charges) split over the epochs in proportion to
    ``epoch_seconds`` (equally when None), cumulated, so the last equals ``train_seconds``."""
    each = np.ones(epochs) if epoch_seconds is None else np.asarray(epoch_seconds, dtype=np.float64)
    total = np.asarray(train_seconds, dtype=np.float64)[..., None]
    return total * np.cumsum(each, axis=-1) / each.sum(axis=-1, keepdims=True)


_HEX = np.full(256, 255, dtype=np.uint8)
_HEX[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16, dtype=np.uint8)


def _hash_ints(hashes: np.ndarray) -> np.ndarray:
    """``uint64 [R]`` value of ``|S16`` hex hashes (fast sorting and matching, vectorised)."""
    nibbles = _HEX[np.ascontiguousarray(hashes, dtype="S16").view(np.uint8).reshape(-1, 16)].astype(np.uint64)
    if (nibbles == 255).any():
        raise ValueError("table: a cell hash is not 16 lowercase hex digits")
    return (nibbles << (np.arange(60, -1, -4, dtype=np.uint64))).sum(axis=1, dtype=np.uint64)


def _rows_in_cells(cell_hash: np.ndarray, proto_hashes: list[np.ndarray]) -> list[np.ndarray]:
    """Row of ``/cells`` of every protocol row, matched by hash (a protocol with one row per cell, in
    cell order, is recognised by one comparison)."""
    out: list[np.ndarray] = []
    order: np.ndarray | None = None
    sorted_ids = np.empty(0, dtype=np.uint64)  # set with order
    for h in proto_hashes:
        if len(h) == len(cell_hash) and np.array_equal(h, cell_hash):
            out.append(np.arange(len(h)))
            continue
        if order is None:
            cell_ids = _hash_ints(cell_hash)
            order = np.argsort(cell_ids)
            sorted_ids = cell_ids[order]
        out.append(order[np.searchsorted(sorted_ids, _hash_ints(h))])
    return out


class CellNotFound(KeyError, ValueError):
    """A valid cell that the table (or one of the view's protocols) holds no result for (a lookup miss, hence a
    ``KeyError``; a user-input error, hence a ``ValueError``, which the CLI prints as one line)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "cell not found"


class _MetricSlots(NamedTuple):
    """Where one metric's fields sit in a score protocol's packed row."""

    name: str
    score: int
    singular: int
    seconds: int


@dataclass(frozen=True)
class _Slots:
    """Where a protocol's record fields sit in its packed rows (:attr:`_Columns.names`); -1 reads the ``None``
    appended to every row, i.e. a column the protocol lacks."""

    has: int  # 1.0 where the view cell has a row of the protocol
    seconds: int  # score: ``seconds`` (the whole row); train: ``train_seconds``
    params: int
    metrics: tuple[_MetricSlots, ...] = ()  # score protocols
    train_acc: int = -1  # train protocols: the last epoch of ``curves/train_acc``
    val_acc: int = -1
    test_acc: int = -1
    spikes_per_image: int = -1
    spike_rate: int = -1


@dataclass
class _Columns:
    """One protocol's results aggregated per view cell (NaN where absent) and its rows per cell.

    Records read packed rows (one float64 row fetch per protocol: random queries miss the cache once), laid out as
    ``names``: the protocol's scalar columns, then ``_has``, ``_nan`` (the curves hold a NaN) and ``_bad`` (a value
    is not finite). ``packed`` holds per view cell the means over seeds; ``rows_packed()`` the same layout per
    protocol row, for one seed's record.
    """

    proto: Protocol
    has: np.ndarray  # bool [U]
    start: np.ndarray  # int64 [U]: first protocol row of the cell (rows of a cell are contiguous)
    count: np.ndarray  # int64 [U]
    mean: dict[str, np.ndarray] = field(default_factory=dict)  # numeric columns, mean over seeds, [U] or [U, ...]
    names: list[str] = field(default_factory=list)
    packed: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # float64 [U, len(names)]
    curve_names: list[str] = field(default_factory=list)
    curves: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)))  # float64 [U, C, E] mean curves
    seed_list: list[int] = field(default_factory=list)  # seed of every protocol row
    bounds: tuple[list[int], list[int]] = ([], [])  # per view cell: its rows' start and end in ``seed_list``
    slots: _Slots = _Slots(-1, -1, -1)
    _by_row: tuple[np.ndarray, np.ndarray] | None = None  # ``rows_packed()``, made on the first seeded query

    @property
    def id(self) -> str:
        return self.proto.id

    def cell_seeds(self, index: int) -> list[int]:
        """The seeds the protocol holds rows of for view cell ``index``."""
        return self.seed_list[self.bounds[0][index]:self.bounds[1][index]]

    def row_of(self, index: int, seed: int) -> int | None:
        """The protocol row of view cell ``index`` for ``seed`` (None: no such row)."""
        lo = self.bounds[0][index]
        for offset, held in enumerate(self.cell_seeds(index)):
            if held == seed:
                return lo + offset
        return None

    def rows_packed(self) -> tuple[np.ndarray, np.ndarray]:
        """``(float64 [R, len(names)], float64 [R, C, E])``: every protocol row in the layout of ``packed`` and its
        curves in ``curve_names`` order (made once)."""
        if self._by_row is None:
            cols, n = self.proto.columns, len(self.proto)
            rows = np.empty((n, len(self.names)))
            for j, name in enumerate(self.names[:-3]):
                rows[:, j] = _final_accuracy(cols, "train", n) if name == "_train_acc" else cols[name]
            curves = (np.stack([cols["curves/" + k] for k in self.curve_names], axis=1).astype(np.float64)
                      if self.curve_names else np.zeros((n, 0, 0)))
            rows[:, -3] = 1.0
            rows[:, -2] = np.isnan(curves).any(axis=(1, 2)) if self.curve_names else 0.0
            rows[:, -1] = ~np.isfinite(rows[:, :-3]).all(axis=1)
            self._by_row = (rows, curves)
        return self._by_row


def _aggregate(proto: Protocol, cell_of_row: np.ndarray, u_count: int) -> _Columns:
    """Mean over seeds of every numeric column, per view cell (rows are sorted by cell, then seed)."""
    if len(cell_of_row) > 1 and (cell_of_row[1:] < cell_of_row[:-1]).any():  # tables keep rows sorted; tolerate others
        order = np.argsort(cell_of_row, kind="stable")
        proto = Protocol(proto.id, proto.type, proto.settings, proto.commands, proto.environments, proto.shards,
                         proto.created, proto.modified, proto.hash[order], proto.seed[order],
                         {k: v[order] for k, v in proto.columns.items()})
        cell_of_row = cell_of_row[order]
    count = np.bincount(cell_of_row, minlength=u_count).astype(np.int64)
    start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
    has = count > 0
    cols = _Columns(proto, has, start, count)
    nonempty = start[has]
    single = bool(np.all(count[has] == 1))  # one seed per cell: the mean is the row
    every = single and len(cell_of_row) == u_count  # ... and every view cell has its row
    for name, col in proto.columns.items():
        if col.dtype.kind not in "biuf" or not len(col):
            continue
        values = col.astype(np.float64)
        if every:
            cols.mean[name] = values
            continue
        if single:
            sums = values
        else:
            sums = np.add.reduceat(values, nonempty, axis=0) if len(nonempty) else values[:0]
        out = np.full((u_count, *col.shape[1:]), np.nan)
        div = count[has].reshape(-1, *([1] * (col.ndim - 1)))
        if col.dtype.kind == "b" and not single:  # a flag: set if any seed set it
            out[has] = np.maximum.reduceat(col, nonempty, axis=0) if len(nonempty) else out[has]
        else:
            out[has] = sums / div
        cols.mean[name] = out
    return cols


def _current_names(proto: Protocol) -> Protocol:
    """``proto`` with every former metric name (:data:`snnbench.scores.METRIC_ALIASES`, e.g. ``sahd_release``) in its
    score settings and columns replaced by the current one (``sahd_2022a``); the protocol (id, file) is unchanged."""
    metrics = proto.settings.get("score", {}).get("metrics", [])
    if proto.type != "score" or not any(m in METRIC_ALIASES for m in metrics):
        return proto
    new = lambda m: METRIC_ALIASES.get(m, m)  # noqa: E731
    columns = {}
    for name, col in proto.columns.items():
        head, _, metric = name.rpartition("/")
        columns[f"{head}/{new(metric)}" if head else name] = col
    settings = {**proto.settings, "score": {**proto.settings["score"], "metrics": [new(m) for m in metrics]}}
    return Protocol(proto.id, proto.type, settings, proto.commands, proto.environments, proto.shards, proto.created,
                    proto.modified, proto.hash, proto.seed, columns)


def _candidates(table: Table, type_: str, key: str | None, dataset: str | None) -> list[Protocol]:
    """Protocols of a type that may serve the view: on ``dataset`` itself before its variants, then most
    rows first (ties: larger id)."""
    if key is not None:
        if not isinstance(key, str):
            raise TypeError(f"{type_}: expected a protocol id (str), got {key!r}")
        proto = table.protocol(key)
        if proto.type != type_:
            raise ValueError(f"{table.path}: protocol {proto.id} is a {proto.type} protocol, not a {type_} protocol")
        return [proto]

    def match(p: Protocol) -> int:
        return 2 if dataset is None else dataset_matches(str(p.settings.get("dataset", {}).get("name")), dataset)

    found = [p for p in table.protocols.values() if p.type == type_ and match(p)]
    return sorted(found, key=lambda p: (match(p), len(p), p.id), reverse=True)


def _pairing(a: Protocol, b: Protocol) -> int:
    """How comparable a score and a train protocol are: 2 the same dataset (files and split) and network;
    1 the same network on a named variant of the same dataset (``cifar10-jpeg-12k``, a subset of
    ``cifar10-jpeg``, either way round); 0 not comparable."""
    def setting(p: Protocol, key: str) -> str:
        return json.dumps(p.settings.get(key), sort_keys=True)

    if setting(a, "network") != setting(b, "network"):
        return 0
    if setting(a, "dataset") == setting(b, "dataset"):
        return 2
    na, nb = (str(p.settings.get("dataset", {}).get("name")) for p in (a, b))
    return int(bool(dataset_matches(na, nb) or dataset_matches(nb, na)))


def _final_accuracy(columns: dict[str, np.ndarray], split: str, n: int) -> np.ndarray:
    """Final ``split`` accuracy from a train protocol's columns (per row, or per cell means): ``train`` is the
    last epoch of ``curves/train_acc``, the others ``{split}_acc``; NaN [n] when the column is absent."""
    key = "curves/train_acc" if split == "train" else f"{split}_acc"
    if key not in columns:
        return np.full(n, np.nan)
    return columns[key][:, -1] if split == "train" else columns[key]


def _pick_pair(table: Table, score: str | None, train: str | None, dataset: str | None) -> list[Protocol]:
    """The view's protocols: the largest score/train pair on the same dataset and network, else on named
    variants of one dataset (scores on all of CIFAR-10, accuracies from training on a subset of it).

    Protocols named by id are taken as given. When both types exist but no pair matches, the caller
    must choose (a ``ValueError`` says how) rather than mix, say, CIFAR-10 scores with digits accuracies.
    """
    scores, trains = _candidates(table, "score", score, dataset), _candidates(table, "train", train, dataset)
    if not scores or not trains:
        return scores[:1] + trains[:1]
    if score is not None and train is not None:
        return [scores[0], trains[0]]
    for level in (2, 1):
        for train_proto in trains:
            for score_proto in scores:
                if _pairing(score_proto, train_proto) == level:
                    return [score_proto, train_proto]
    raise ValueError(f"{table.path}: its score and train protocols differ in dataset or network; choose with "
                     f"--dataset / --score-protocol / --train-protocol (score: {', '.join(p.id for p in scores)}; "
                     f"train: {', '.join(p.id for p in trains)})")


class Benchmark:
    """A table opened for queries (see the module docstring for the view and its invariants)."""

    def __init__(self, path: str | os.PathLike[str] | Table | None = None, *, score: str | None = None,
                 train: str | None = None, dataset: str | None = None) -> None:
        table = path if isinstance(path, Table) else open_table(resolve_table(path, dataset))
        self.path = table.path
        self.table = table
        picked = [_current_names(p) for p in _pick_pair(table, score, train, dataset)]
        if not picked:
            raise ValueError(f"{table.path}: no score or train protocol" + (f" on dataset {dataset!r}" if dataset else ""))
        cells = table.cells
        rows_of = _rows_in_cells(cells["hash"], [p.hash for p in picked])
        mask = np.zeros(len(cells["hash"]), dtype=bool)
        for r in rows_of:
            mask[r] = True
        used = np.flatnonzero(mask)
        view_of_row = np.full(len(mask), -1, dtype=np.int64)
        view_of_row[used] = np.arange(len(used))
        #: canonical matrices ``int8 [U, 4, 4]``, hashes ``|S16 [U]``, space indices of the view's cells
        self.matrices: np.ndarray = np.ascontiguousarray(cells["matrix"][used], dtype=np.int8)
        self.hash_array: np.ndarray = cells["hash"][used]
        self.kind_array: np.ndarray = cells["kind"][used].astype(np.uint8)  # 0 forward, 1 backward
        self.space_index: np.ndarray = cells["index"][used].astype(np.int64)
        self.raw_counts = {"forward": cells["raw_forward"][used].astype(np.int64),
                           "backward": cells["raw_backward"][used].astype(np.int64)}
        self._texts = texts_of(self.matrices)
        keys = self.matrices.reshape(len(used), -1).view(f"V{NUM_NODES * NUM_NODES}").ravel()
        self._rows = dict(zip(keys.tolist(), range(len(used))))  # canonical entries as bytes -> view index
        self._by_hash: dict[bytes, int] | None = None
        self._coverage: dict[str, dict[str, int]] | None = None
        n = len(used)
        cols = {p.type: _aggregate(p, view_of_row[r], n) for p, r in zip(picked, rows_of)}
        self._score: _Columns | None = cols.get("score")
        self._train: _Columns | None = cols.get("train")
        self._columns = [c for c in (self._score, self._train) if c is not None]
        self._derive()

    # ------------------------------------------------------------------ per-cell arrays for replay and search
    def _derive(self) -> None:
        n = len(self.hash_array)
        nan = np.full(n, np.nan)
        scoring, training = self._score, self._train
        stored = {k.split("/", 1)[1]: v for k, v in scoring.mean.items() if k.startswith("scores/")} if scoring else {}
        order = list(scoring.proto.settings.get("score", {}).get("metrics", [])) if scoring else []
        #: ``{metric: float64 [U]}`` mean score over seeds (NaN: absent), in the protocol's metric order
        self.scores: dict[str, np.ndarray] = {m: stored[m] for m in [*order, *sorted(set(stored) - set(order))] if m in stored}
        self._metrics = list(scoring.proto.settings.get("score", {}).get("metrics", self.scores)) if scoring else []
        #: seconds the score protocol spent per cell (all its metrics), mean over seeds
        self.score_seconds: np.ndarray = scoring.mean.get("seconds", nan) if scoring else nan
        #: ``{metric: float64 [U]}`` seconds one metric alone took per cell (metrics sharing a pass: the pass's
        #: time), mean over seeds; NaN for rows scored before the table stored it
        self.metric_seconds: dict[str, np.ndarray] = {m: scoring.mean.get(METRIC_SECONDS + m, nan) if scoring else nan
                                                      for m in self.scores}
        curves = training.mean if training else {}
        #: ``{split: float64 [U]}`` final accuracy, mean over seeds
        self.accuracy: dict[str, np.ndarray] = {split: _final_accuracy(curves, split, n) for split in ("train", "val", "test")}
        last_train = self.accuracy["train"]
        #: seconds training one seed of the cell took, mean over seeds
        self.train_seconds: np.ndarray = curves.get("train_seconds", nan)
        #: spikes per test image of the trained network (all LIF layers, all steps), mean over seeds (NaN: absent)
        self.spikes_per_image: np.ndarray = curves.get("spikes_per_image", nan)
        #: ``{"spikes_per_image", "rate"}: float64 [U, 27]`` per LIF layer (slots: ``snnbench.table.SPIKE_LAYERS``),
        #: mean over seeds, from training; NaN where a cell has no such layer (empty: the train protocol lacks them)
        self.spike_layers: dict[str, np.ndarray] = {k: curves[f"spike_layers/{k}"] for k in ("spikes_per_image", "rate")
                                                    if f"spike_layers/{k}" in curves}
        self._layer_items: dict[int, list[tuple[str, float, float]]] = {}  # per cell: its layers' (name, spikes, rate)
        params = [c.mean["params"] for c in self._columns if "params" in c.mean]
        self.params: np.ndarray = np.fmax.reduce(params) if params else nan
        for c in self._columns:
            scalars = {k: v for k, v in c.mean.items() if v.ndim == 1}
            if c is training:
                scalars["_train_acc"] = last_train
            curve_keys = [k for k, v in c.mean.items() if k.startswith("curves/") and v.ndim == 2]
            c.curve_names = [k.split("/", 1)[1] for k in curve_keys]
            c.curves = np.stack([c.mean[k] for k in curve_keys], axis=1) if curve_keys else np.zeros((n, 0, 0))
            nan_rows = np.isnan(c.curves).any(axis=(1, 2)) if curve_keys else np.zeros(n, bool)
            packed = np.empty((n, len(scalars) + 3))
            for j, v in enumerate(scalars.values()):
                packed[:, j] = v
            bad = ~np.isfinite(packed[:, :len(scalars)]).all(axis=1) if scalars else np.zeros(n, bool)
            for j, flag in enumerate((c.has, nan_rows, bad), start=len(scalars)):
                packed[:, j] = flag
            c.names = [*scalars, "_has", "_nan", "_bad"]
            c.packed = packed
            c.seed_list = c.proto.seed.tolist()
            c.bounds = (c.start.tolist(), (c.start + c.count).tolist())
            pos = {name: j for j, name in enumerate(c.names)}.get
            at = lambda name: pos(name, -1)  # noqa: E731  (-1: the None appended to a row)
            if c is scoring:
                c.slots = _Slots(at("_has"), at("seconds"), at("params"), metrics=tuple(
                    _MetricSlots(m, at("scores/" + m), at("singular/" + m), at(METRIC_SECONDS + m)) for m in self._metrics))
            else:
                c.slots = _Slots(at("_has"), at("train_seconds"), at("params"), train_acc=at("_train_acc"),
                                 val_acc=at("val_acc"), test_acc=at("test_acc"), spikes_per_image=at("spikes_per_image"),
                                 spike_rate=at("spike_rate"))
        self._raw_lists = (self.raw_counts["forward"].tolist(), self.raw_counts["backward"].tolist())
        self._protocol_types = {c.proto.type: c.id for c in self._columns}

    @property
    def hashes(self) -> list[str]:
        """Hash of every view cell, in view order."""
        return [h.decode() for h in self.hash_array]

    @property
    def kinds(self) -> list[str]:
        """Kind of every view cell, in view order."""
        return [_KINDS[k] for k in self.kind_array.tolist()]

    def coverage(self) -> dict[str, dict[str, int]]:
        """Per cell kind (``forward``: no backward edge; ``backward``: at least one), how many of the space's
        unique cells of that kind exist (``space``) and how many the view holds a score (``scored``) or a
        training (``trained``) of."""
        if self._coverage is None:
            sp = space()
            sizes = {"forward": int((~sp.is_backward).sum()), "backward": int(sp.is_backward.sum())}
            trained = self._train.has if self._train is not None else np.zeros(len(self), bool)
            scored = self._score.has if self._score is not None else np.zeros(len(self), bool)
            self._coverage = {kind: {"space": sizes[kind], "scored": int((scored & (self.kind_array == k)).sum()),
                                     "trained": int((trained & (self.kind_array == k)).sum())}
                              for k, kind in enumerate(_KINDS)}
        return {kind: dict(counts) for kind, counts in self._coverage.items()}

    def holds(self) -> str:
        """What the view covers, in words: ``"forward cells: 7,012 of 7,012 scored, 7,012 trained; cells with a
        backward edge: 0 of 95,584"``."""
        parts = []
        for kind, c in self.coverage().items():
            name = "forward cells" if kind == "forward" else "cells with a backward edge"
            if not c["scored"] and not c["trained"]:
                parts.append(f"{name}: 0 of {c['space']:,}")
            else:
                parts.append(f"{name}: {c['scored']:,} of {c['space']:,} scored, {c['trained']:,} trained")
        return "; ".join(parts)

    def _row(self, key: Key) -> int | None:
        try:
            return self._rows.get(bytes(key))
        except TypeError:  # whole-number floats given in a list
            return self._rows.get(bytes(map(int, key)))

    # ------------------------------------------------------------------ lookups
    def __len__(self) -> int:
        return len(self.hash_array)

    def __contains__(self, matrix: object) -> bool:
        try:
            return self._row(cell_key(matrix)) is not None
        except ValueError:
            return False

    def find(self, matrix: object) -> int | None:
        """View index of a cell (any accepted form), ``None`` if absent; ``ValueError`` if invalid."""
        return self._row(cell_key(matrix))

    def index(self, matrix: object) -> int:
        """View index of a cell (any accepted form); ``ValueError`` if invalid, :class:`CellNotFound` if absent."""
        key = cell_key(matrix)
        index = self._row(key)
        if index is None:
            raise self._not_found(key, self.protocol_ids)
        return index

    def index_of_hash(self, cell_hash: str) -> int:
        if self._by_hash is None:
            self._by_hash = {h: index for index, h in enumerate(self.hash_array.tolist())}
        index = self._by_hash.get(cell_hash.encode() if isinstance(cell_hash, str) else cell_hash)
        if index is None:
            raise CellNotFound(f"no cell with hash {cell_hash!r} in {self.path} (protocols {', '.join(self.protocol_ids)})")
        return index

    def _not_found(self, key: Key, lacking: list[str]) -> CellNotFound:
        text = to_text(np.array(key, dtype=np.int64).reshape(NUM_NODES, NUM_NODES))
        cell = Cell(text)
        kind = "a forward cell" if cell.kind == "forward" else "a cell with a backward edge"
        return CellNotFound(f"cell {cell.hash} ({text}, {kind}) is not in {self.path}: {self._lack(lacking)} (the view "
                            f"holds {self.holds()})")

    def _lack(self, pids: list[str]) -> str:
        """``"protocol ID (type) lacks it"`` / ``"protocols ID (type), ... lack it"``."""
        what = ", ".join(f"{pid} ({self.table.protocols[pid].type})" for pid in pids)
        return f"protocols {what} lack it" if len(pids) > 1 else f"protocol {what} lacks it"

    def check_split(self, split: str) -> None:
        """``ValueError`` unless the view has ``split`` accuracies (train, val, test)."""
        if split not in self.accuracy:
            raise ValueError(f"split: expected one of {', '.join(self.accuracy)}, got {split!r}")

    def check_scores(self, names: Sequence[str]) -> None:
        """``ValueError`` naming each of ``names`` the view holds no score of (and an empty list of names);
        ``TypeError`` for one string (``"sahd"`` would be read letter by letter)."""
        if isinstance(names, str):
            raise TypeError(f"scores: expected a list of score names, got the string {names!r} (write [{names!r}])")
        missing = [m for m in names if m not in self.scores]
        if missing or not names:
            what = f"{', '.join(map(repr, missing))} not in the view" if missing else "no score name given"
            renamed = [f"{m!r} is now {METRIC_ALIASES[m]!r}" for m in missing if m in METRIC_ALIASES]
            what += f" ({'; '.join(renamed)})" if renamed else ""
            raise ValueError(f"score: {what} (scores: {', '.join(self.scores) or 'none'})")

    def scoring_seconds(self, metric: str) -> tuple[np.ndarray, str]:
        """Seconds per cell that scoring by ``metric`` costs, and the column they come from: the metric's own
        (``metric_seconds/METRIC``) when every cell holding its score has it, else the whole score row's
        (``seconds``, all the protocol's metrics): never a mix of the two."""
        self.check_scores([metric])
        own = self.metric_seconds[metric]
        held = ~np.isnan(self.scores[metric])
        if held.any() and np.isfinite(own[held]).all():
            return own, METRIC_SECONDS + metric
        return self.score_seconds, "seconds"

    def accuracy_by_seed(self, split: str = "test") -> tuple[list[int], np.ndarray]:
        """Final ``split`` accuracy of every view cell per training seed: ``(seeds, float64 [U, len(seeds)])``,
        seeds ascending, NaN where a cell has no row for that seed (``accuracy[split]`` is its row mean)."""
        self.check_split(split)
        training = self._train
        if training is None:
            return [], np.zeros((len(self), 0))
        values = _final_accuracy(training.proto.columns, split, len(training.proto))
        return self._per_seed(training, values)

    def scores_by_seed(self, metric: str) -> tuple[list[int], np.ndarray]:
        """``metric``'s score of every view cell per scoring seed: ``(seeds, float64 [U, len(seeds)])``, seeds
        ascending, NaN where a cell has no row for that seed (``scores[metric]`` is its row mean). From the stored
        rows: a score added to ``scores`` (e.g. a derived one) has none (``ValueError``)."""
        self.check_scores([metric])
        scoring = self._score
        assert scoring is not None  # check_scores: the view holds the metric, hence a score protocol
        if "scores/" + metric not in scoring.proto.columns:
            raise ValueError(f"score: {metric!r} has no stored rows per seed (a score added to the view)")
        return self._per_seed(scoring, scoring.proto.columns["scores/" + metric])

    def _per_seed(self, c: _Columns, values: np.ndarray) -> tuple[list[int], np.ndarray]:
        """One value (or array ``[...]``) per protocol row of ``c`` laid out as ``(seeds, float64 [U, len(seeds),
        ...])``: seeds ascending, NaN where a cell has no row for that seed."""
        seeds = sorted({int(x) for x in c.proto.seed.tolist()})
        out = np.full((len(self), len(seeds), *values.shape[1:]), np.nan)
        cell = np.repeat(np.arange(len(self)), c.count)  # protocol rows are grouped by view cell
        out[cell, np.searchsorted(seeds, c.proto.seed.astype(np.int64))] = values
        return seeds, out

    @property
    def protocol_ids(self) -> list[str]:
        return [c.id for c in self._columns]

    # ------------------------------------------------------------------ records
    def query(self, matrix: object, seed: int | None = None, epoch: int | None = None) -> dict[str, Any]:
        """The record of a cell given in any accepted matrix form (see the module docstring)."""
        return self.record(self.index(matrix), seed, epoch)

    def query_hash(self, cell_hash: str, seed: int | None = None, epoch: int | None = None) -> dict[str, Any]:
        """The record of the cell with this hash."""
        return self.record(self.index_of_hash(cell_hash), seed, epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """``bench[i]``: the record of view cell ``i`` (negative counts from the end, as for a list)."""
        if isinstance(index, (int, np.integer)) and not isinstance(index, bool) and -len(self) <= index < 0:
            index += len(self)
        return self.record(index)

    def record(self, index: int, seed: int | None = None, epoch: int | None = None) -> dict[str, Any]:
        """The record of view cell ``index`` (``0 <= index < len(self)``): means over seeds, or one seed's values when
        ``seed`` is given; after training ends, or as it stood after ``epoch`` epochs (``1 .. self.epochs``:
        accuracies of that epoch, curves up to it, ``train_seconds`` the time to reach it)."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"record: expected a view index (int), got {index!r}")
        if not 0 <= index < len(self):
            raise IndexError(f"record: view index {index} out of range [0, {len(self)})")
        if epoch is not None:
            self.check_epoch(epoch)
        if seed is None:
            return self._mean_record(index, epoch)
        rows: dict[str, list[Any] | None] = {}
        missing: list[str] = []
        curves: list[list[Any]] | None = None
        layers: dict[str, dict[str, float]] | None = None
        for c in self._columns:
            row = c.row_of(index, seed)
            if row is None:
                rows[c.proto.type] = None
                missing.append(c.id)
                continue
            packed, per_row_curves = c.rows_packed()
            values = packed[row].tolist()
            _, has_nan, bad = values[-3:]
            rows[c.proto.type] = _clean(values, bad)
            if c is self._train:
                curves = _clean_curves(per_row_curves[row].tolist(), has_nan) if c.curve_names else None
                layers = self._row_layers(row)
        if len(missing) == len(self._columns):
            raise CellNotFound(f"cell {self.hash_array[index].decode()} ({self._texts[index].decode()}) has no row for seed {seed} "
                               f"in {self.path}: {self._lack(missing)}")
        return self._assemble(index, seed, epoch, rows.get("score"), rows.get("train"), curves, lambda _: layers, missing)

    def _mean_record(self, index: int, epoch: int | None = None) -> dict[str, Any]:
        """``record(index)`` for means over seeds, from the packed rows of means (the hot path of ``query``)."""
        scoring, training = self._score, self._train
        missing: list[str] = []
        score = train = curves = None
        if scoring is not None:
            values = scoring.packed[index].tolist()
            if not values[-3]:  # _has
                missing.append(scoring.id)
            score = _clean(values, values[-1])
        if training is not None:
            values = training.packed[index].tolist()
            has, has_nan, bad = values[-3:]
            if not has:
                missing.append(training.id)
            elif training.curve_names:
                curves = _clean_curves(training.curves[index].tolist(), has_nan)
            train = _clean(values, bad)
        return self._assemble(index, None, epoch, score, train, curves, self._mean_layers, missing)

    def _assemble(self, index: int, seed: int | None, epoch: int | None, score: list[Any] | None, train: list[Any] | None,
                  curves: list[list[Any]] | None, layers: Callable[[int], dict[str, dict[str, float]] | None],
                  missing: list[str]) -> dict[str, Any]:
        """The one place a query record is built (fields in ``docs/api.md``'s order), from view cell ``index``'s packed
        score and train rows (``_clean``; ``None``: the view lacks that protocol, or the cell that seed), its train
        curves (``[C][E]`` in ``curve_names`` order) and a function of ``index`` giving its per-layer spikes."""
        rec: dict[str, Any] = {
            "hash": self.hash_array[index].decode(), "matrix": self.matrices[index].tolist(), "text": self._texts[index].decode(),
            "kind": _KINDS[self.kind_array[index]],
            "raw_matrices": {"forward": self._raw_lists[0][index], "backward": self._raw_lists[1][index]}, "seed": seed,
            "epoch": epoch}
        params = spikes = train_seconds = score_seconds = None
        scoring, training = self._score, self._train
        if scoring is not None and score is not None:
            scores: dict[str, Any] = {}
            singular: dict[str, bool | None] = {}
            metric_seconds: dict[str, Any] = {}
            rec["scores"], rec["singular"] = scores, singular
            for m in scoring.slots.metrics:
                scores[m.name], metric_seconds[m.name] = score[m.score], score[m.seconds]
                singular[m.name] = None if score[m.singular] is None else score[m.singular] != 0.0
            score_seconds, params = score[scoring.slots.seconds], score[scoring.slots.params]
        else:
            rec["scores"], rec["singular"], metric_seconds = (dict.fromkeys(self._metrics) for _ in range(3))
        if training is not None and train is not None:
            at = training.slots
            rec["accuracy"] = {"train": train[at.train_acc], "val": train[at.val_acc], "test": train[at.test_acc]}
            train_seconds = train[at.seconds]
            if train[at.params] is not None:
                params = train[at.params]
            if train[at.spikes_per_image] is not None:
                spikes = {"per_image": train[at.spikes_per_image], "rate": train[at.spike_rate], "layers": layers(index)}
        else:
            rec["accuracy"] = {"train": None, "val": None, "test": None}
        rec["curves"] = None if curves is None or training is None else dict(zip(training.curve_names, curves))
        rec["metric_seconds"] = metric_seconds
        rec["params"] = None if params is None else int(params)
        rec["spikes"], rec["train_seconds"], rec["score_seconds"] = spikes, train_seconds, score_seconds
        rec["seeds"] = {c.proto.type: c.seed_list[c.bounds[0][index]:c.bounds[1][index]] for c in self._columns}
        rec["protocols"] = dict(self._protocol_types)
        rec["missing"] = missing
        if epoch is not None:
            self._at_epoch(rec, epoch)
        return rec

    def _at_epoch(self, rec: dict[str, Any], epoch: int) -> None:
        """Turn a record after training into the record after ``epoch`` epochs: accuracies at that epoch (``test``:
        None where that epoch was not tested), curves cut there, ``train_seconds`` the time to reach it
        (:func:`seconds_to_epochs`), spikes (measured after the last epoch) None before the last."""
        curves = rec["curves"]
        if curves is None:
            return
        last = epoch - 1
        rec["accuracy"] = {split: curves[f"{split}_acc"][last] if f"{split}_acc" in curves else None
                           for split in ("train", "val", "test")}
        if rec["train_seconds"] is not None:
            each = curves.get("epoch_seconds")
            rec["train_seconds"] = float(seconds_to_epochs(rec["train_seconds"], each, self.epochs)[last])
        rec["curves"] = {name: values[:epoch] for name, values in curves.items()}
        if epoch < self.epochs:
            rec["spikes"] = None

    @property
    def epochs(self) -> int:
        """Epochs of the train protocol's per-epoch curves (0: the view has none)."""
        training = self._train
        return int(training.curves.shape[-1]) if training is not None and training.curve_names else 0

    def check_epoch(self, epoch: int) -> None:
        """``TypeError`` unless ``epoch`` is an int; ``ValueError`` unless it is in ``1 .. self.epochs``."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)):
            raise TypeError(f"epoch: expected an int, got {epoch!r}")
        if not self.epochs:
            raise ValueError(f"epoch: the view of {self.path} holds no per-epoch curves")
        if not 1 <= epoch <= self.epochs:
            raise ValueError(f"epoch: expected 1 .. {self.epochs} (the view's trainings run {self.epochs} epochs), got {epoch}")

    def curve(self, name: str, seed: int | None = None) -> np.ndarray:
        """``float64 [U, epochs]``: per-epoch curve ``name`` (``self.curve_names``) of every view cell, mean over the
        training seeds or ``seed``'s values; NaN where a cell lacks a training (or that seed, or an epoch the curve
        skips: ``test_acc``)."""
        training = self._train
        if training is None or name not in training.curve_names:
            raise ValueError(f"curve: expected one of {', '.join(self.curve_names) or 'none (no per-epoch curves)'}, "
                             f"got {name!r}")
        if seed is None:
            return training.mean["curves/" + name]
        return self._seed_slice(training, training.proto.columns["curves/" + name], seed)

    @property
    def curve_names(self) -> list[str]:
        """Names of the view's per-epoch curves (``train_acc``, ``val_acc``, ``test_acc``, ``lr``, ...)."""
        return list(self._train.curve_names) if self._train is not None else []

    def time_to_epoch(self, seed: int | None = None) -> np.ndarray:
        """``float64 [U, epochs]``: simulated seconds to train each view cell up to each epoch (:func:`seconds_to_epochs`
        of its ``train_seconds`` and ``epoch_seconds`` curve; the last column is ``train_seconds``), mean over the
        training seeds or ``seed``'s; NaN where a cell lacks a training."""
        if not self.epochs:
            raise ValueError(f"time_to_epoch: the view of {self.path} holds no per-epoch curves")
        training = self._train
        assert training is not None
        if seed is None:
            total = self.train_seconds
        else:
            total = self._seed_slice(training, training.proto.columns["train_seconds"], seed)
        each = self.curve("epoch_seconds", seed) if "epoch_seconds" in training.curve_names else None
        return seconds_to_epochs(total, each, self.epochs)

    def _seed_slice(self, c: _Columns, values: np.ndarray, seed: int) -> np.ndarray:
        """``values`` (one per protocol row of ``c``) of ``seed`` per view cell (NaN where a cell lacks that seed);
        ``ValueError`` for a seed the protocol holds no row of."""
        seeds, laid = self._per_seed(c, values)
        if seed not in seeds:
            raise ValueError(f"seed: protocol {c.id} holds seeds {', '.join(map(str, seeds))}, not {seed!r}")
        return laid[:, seeds.index(seed)]

    def _mean_layers(self, index: int) -> dict[str, dict[str, float]] | None:
        """Per-layer spikes of cell ``index``, means over seeds (each cell's present layers found once, then cached)."""
        if len(self.spike_layers) < 2:
            return None
        items = self._layer_items.get(index)
        if items is None:
            x, r = self.spike_layers["spikes_per_image"][index], self.spike_layers["rate"][index]
            items = self._layer_items[index] = [(SPIKE_LAYERS[k], float(x[k]), float(r[k])) for k in np.flatnonzero(np.isfinite(x))]
        return {name: {"per_image": x, "rate": r} for name, x, r in items}

    def _row_layers(self, row: int) -> dict[str, dict[str, float]] | None:
        """Per-layer spikes of one train protocol row (None: the protocol has no per-layer columns)."""
        cols = self._train.proto.columns if self._train is not None else {}
        if "spike_layers/spikes_per_image" not in cols or "spike_layers/rate" not in cols:
            return None
        x, r = cols["spike_layers/spikes_per_image"][row], cols["spike_layers/rate"][row]
        return {SPIKE_LAYERS[k]: {"per_image": float(x[k]), "rate": float(r[k])} for k in np.flatnonzero(np.isfinite(x))}

    # ------------------------------------------------------------------ collections
    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Records of every cell of the view, in space-index order."""
        return (self.record(index) for index in range(len(self)))

    def sample(self, count: int, seed: int, *, replace: bool = False) -> list[dict[str, Any]]:
        """``count`` records drawn uniformly over the view's cells, reproducible by ``seed``."""
        if not replace and count > len(self):
            raise ValueError(f"sample: {count} cells asked, the view holds {len(self)} (use replace=True)")
        picks = np.random.default_rng(seed).choice(len(self), size=count, replace=replace)
        return [self.record(int(index)) for index in picks]

    @property
    def metadata(self) -> dict[str, dict[str, Any]]:
        """Per protocol of the view: type, settings, commands, environments, shards, times, rows, cells, seeds."""
        return {c.id: {"type": c.proto.type, "settings": c.proto.settings, "commands": c.proto.commands,
                       "environments": c.proto.environments, "shards": c.proto.shards, "created": c.proto.created,
                       "modified": c.proto.modified, "rows": len(c.proto), "cells": int(c.has.sum()),
                       "seeds": sorted(set(c.proto.seed.tolist()))} for c in self._columns}

    def to_dataframe(self, *, seeds: bool = False, curves: bool = False) -> Any:
        """One row per view cell (in view order; ``index`` is the view index): hash, text, kind, scores, accuracies,
        params, times, spikes (needs pandas); columns as the per-cell arrays (``score_METRIC``, ``SPLIT_acc``, ...).

        ``seeds``: one row per cell and seed instead (column ``seed``; cells with several seeds give several rows),
        each holding that seed's score and train rows (NaN where a protocol lacks the cell for that seed).
        ``curves``: a column ``curve_NAME`` per per-epoch curve, each value a ``float64 [epochs]`` array (the mean
        curve, or that seed's)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_dataframe needs pandas: pip install 'snnbench[plot]'") from None
        n = len(self)
        cell = {"index": np.arange(n), "hash": np.array(self.hashes, dtype=object),
                "text": np.array([t.decode() for t in self._texts], dtype=object), "kind": np.array(self.kinds, dtype=object)}
        scoring, training = self._score, self._train
        if not seeds:
            data = {**cell, **self._frame(self.scores, self.metric_seconds, scoring.mean if scoring else {},
                                          training.mean if training else {}, n, curves)}
            return pd.DataFrame(data)
        per_seed = {c.proto.type: (c, *self._per_seed_columns(c)) for c in self._columns}
        every = sorted({seed for _, held, _ in per_seed.values() for seed in held})
        parts = []
        for seed in every:
            cols: dict[str, dict[str, np.ndarray]] = {"score": {}, "train": {}}
            present = np.zeros(n, dtype=bool)
            for kind, (c, held, laid) in per_seed.items():
                if seed in held:
                    j = held.index(seed)
                    cols[kind] = {name: values[:, j] for name, values in laid.items()}
                    present |= ~np.isnan(laid["seed"][:, j])
            scores = {m: cols["score"].get("scores/" + m, np.full(n, np.nan)) for m in self.scores}
            metric_seconds = {m: cols["score"].get(METRIC_SECONDS + m, np.full(n, np.nan)) for m in self.scores}
            frame = {**cell, "seed": np.full(n, seed), **self._frame(scores, metric_seconds, cols["score"], cols["train"],
                                                                     n, curves)}
            parts.append(pd.DataFrame({k: v[present] if isinstance(v, np.ndarray) else [x for x, p in zip(v, present) if p]
                                       for k, v in frame.items()}))
        if not parts:
            return pd.DataFrame(columns=[*cell, "seed"])
        return pd.concat(parts).sort_values(["index", "seed"], kind="stable").reset_index(drop=True)

    def _per_seed_columns(self, c: _Columns) -> tuple[list[int], dict[str, np.ndarray]]:
        """Every numeric column of protocol ``c`` (and ``seed``) laid out per seed: ``(seeds, {name: [U, S, ...]})``."""
        laid: dict[str, np.ndarray] = {}
        seeds: list[int] = []
        for name, values in {**c.proto.columns, "seed": c.proto.seed}.items():
            if values.dtype.kind in "biuf":
                seeds, laid[name] = self._per_seed(c, values)
        return seeds, laid

    def _frame(self, scores: dict[str, np.ndarray], metric_seconds: dict[str, np.ndarray],
               score_cols: dict[str, np.ndarray], train_cols: dict[str, np.ndarray], n: int,
               curves: bool) -> dict[str, Any]:
        """The data-frame columns after the cell's own (one way for means and for one seed's rows): scores, accuracies
        (:func:`_final_accuracy`), params (the train protocol's, else the score protocol's), times, spikes, curves."""
        nan = np.full(n, np.nan)
        data: dict[str, Any] = {f"score_{m}": v for m, v in scores.items()}
        data.update({f"{split}_acc": _final_accuracy(train_cols, split, n) for split in ("train", "val", "test")})
        params = [cols["params"] for cols in (score_cols, train_cols) if "params" in cols]
        data.update({"params": np.fmax.reduce(params) if params else nan, "train_seconds": train_cols.get("train_seconds", nan),
                     "score_seconds": score_cols.get("seconds", nan)})
        data.update({f"metric_seconds_{m}": v for m, v in metric_seconds.items()})
        for name in ("spikes_per_image", "spike_rate"):
            if name in train_cols:
                data[name] = train_cols[name]
        if curves:
            for name in self.curve_names:
                values = train_cols.get("curves/" + name, np.full((n, self.epochs), np.nan))
                data[f"curve_{name}"] = list(values.astype(np.float64))
        return data

    def __repr__(self) -> str:
        return f"Benchmark({str(self.path)!r}, cells={len(self)}, protocols={self.protocol_ids})"


# (path, view) -> ((mtime_ns, size), view): one entry per path and view, replaced when the file changes
_OPEN: dict[tuple[str, str | None, str | None, str | None], tuple[tuple[int, int], Benchmark]] = {}


def load(table: str | os.PathLike[str] | None = None, *, score: str | None = None, train: str | None = None,
         dataset: str | None = None) -> Benchmark:
    """The :class:`Benchmark` of a table, opened once per process (reopened if the file changed)."""
    path = os.path.abspath(resolve_table(table, dataset))  # string ops and one stat: ~30 us, not pathlib's ~100
    st = os.stat(path)
    key, version = (path, score, train, dataset), (st.st_mtime_ns, st.st_size)
    held = _OPEN.get(key)
    if held is None or held[0] != version:
        held = _OPEN[key] = (version, Benchmark(path, score=score, train=train, dataset=dataset))
    return held[1]


def query(matrix: object, table: str | os.PathLike[str] | None = None, *, seed: int | None = None,
          epoch: int | None = None, score: str | None = None, train: str | None = None,
          dataset: str | None = None) -> dict[str, Any]:
    """Record of a cell in the table at ``table`` / ``$SNNBENCH_TABLE`` / the shipped table for ``dataset``
    (:meth:`Benchmark.record`: ``seed`` one seed's values, ``epoch`` as training stood after that epoch)."""
    return load(table, score=score, train=train, dataset=dataset).query(matrix, seed, epoch)
