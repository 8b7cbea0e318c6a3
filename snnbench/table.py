"""The snnbench table: one HDF5 file of cells and per-protocol results (reader and crash-safe writer).

Layout (``docs/table.md`` documents every group, dataset, dtype, unit and attribute)::

    /                      attrs: format="snnbench-table", schema_version, created, modified, snnbench_version
    /cells/                every cell some protocol holds a row for, sorted by space index
        index  int32 [U]        unique index in snnbench.space.space() (canonical-key order)
        matrix int8 [U,4,4]     canonical matrix
        hash   |S16 [U]         snnbench cell hash (16 hex digits, ASCII)
        kind   uint8 [U]        0 forward, 1 backward (attr labels)
        raw_forward, raw_backward int32 [U]  raw matrices of that space mapping to the cell
    /protocols/<id>/       attrs: id, type ("score" | "train"), settings, commands, environments, shards (JSON), created, modified,
                           digest (sha256 of the rows, :func:`rows_digest`)
        cell int32 [R] (row of /cells), seed int64 [R], then one dataset per result column

Invariants
----------
* The file on disk is only ever *replaced* (write a temporary file, fsync, ``os.replace``), never edited,
  so a reader always opens a complete table and ``kill -9`` can never corrupt it.
* Results reach disk first through an append-only, fsync'd JSON-lines journal next to the file
  (``<table>.journal``); :meth:`TableWriter.fold` moves them into a new file atomically. Replaying a
  journal is idempotent: a row is keyed by (protocol, cell hash, seed) and the first value wins.
* Rows of a protocol are sorted by (cell space index, seed), so the file content depends on which
  results it holds, never on the order they arrived in.
* Nothing is pickled: numbers are native HDF5 types, text is UTF-8, structured settings are JSON strings.
* A writer never produces a file its reader refuses: rows are checked against the protocol's column schema
  (:func:`required_columns`, :func:`column_schema`) before they are journalled and again before a file is
  written. Every write stores a content digest per protocol (:func:`rows_digest`); a writer opening a table
  checks it, so a resume never folds an edited or damaged table into a file with a fresh digest.
* A new file that must not replace another (``merge``'s OUT) is claimed atomically (``os.link``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import glob
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Mapping, Sequence

import h5py
import numpy as np

from snnbench.space import NUM_NODES, NUM_OPS, cell_hashes, edge_name, space

FORMAT = "snnbench-table"
SCHEMA_VERSION = 1
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_KIND_LABELS = ("forward", "backward")
_KEY_COLUMNS = ("cell", "seed")
#: Wall-clock columns: not reproducible, so two computations of the same row may differ in them only.
WALL_CLOCK = ("seconds", "train_seconds", "curves/epoch_seconds")
#: Prefix of the per-metric scoring seconds ``metric_seconds/<metric>``: wall clock too, and the one optional
#: column family (rows scored before it was stored lack it and read NaN).
METRIC_SECONDS = "metric_seconds/"
PROTOCOL_TYPES = ("score", "train")


class TableError(ValueError):
    """A table file that cannot be used: the one-line message names the file and the problem."""


class TableIOError(TableError):
    """Reading or writing a table's files failed (disk full, EIO, a file-size limit): nothing stored is lost (the
    table is only ever replaced whole, the journal keeps what it held). The CLI exits 1 on it, not 2 (bad input)."""

    exit_code = 1


class ProtocolNotFound(KeyError, ValueError):
    """No protocol, or more than one, matches an id (prefix): a lookup miss and a user-input error."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "protocol not found"


def default_table_path() -> Path:
    """``$SNNBENCH_TABLE`` if set, else ``~/.cache/snnbench/snnbench.h5``."""
    env = os.environ.get("SNNBENCH_TABLE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "snnbench" / "snnbench.h5"


#: The tables shipped inside the package (``docs/results.md``), by dataset.
SHIPPED_DIR = Path(__file__).resolve().parent / "tables"
SHIPPED = {"digits": SHIPPED_DIR / "digits.h5", "cifar10": SHIPPED_DIR / "cifar10.h5"}


def dataset_matches(name: str, wanted: str) -> int:
    """How well a protocol's dataset ``name`` answers a request for ``wanted``: 2 the same name, 1 a named
    variant of it (``cifar10-jpeg`` for ``cifar10``: the same dataset from other files), 0 no match."""
    return 2 if name == wanted else int(name.startswith(wanted + "-"))


def shipped_table(dataset: str | None) -> Path | None:
    """The shipped table for ``dataset`` or the dataset it is a variant of (``digits`` for None)."""
    wanted = dataset or "digits"
    return SHIPPED.get(wanted) or next((p for d, p in SHIPPED.items() if dataset_matches(wanted, d)), None)


def resolve_table(path: str | os.PathLike[str] | None = None, dataset: str | None = None, *,
                  name_it: str = "--table") -> Path:
    """The table to open: ``path``, else ``$SNNBENCH_TABLE``, else the table shipped with the package for
    ``dataset`` (:func:`~snnbench.table.shipped_table`, ``digits`` when None; see ``docs/results.md``).

    The default output of ``snnbench build`` (``~/.cache/snnbench/snnbench.h5``) is never opened unless named:
    a build, finished or interrupted, does not change what queries answer. Raises ``FileNotFoundError``
    saying what to do when the table does not exist (``name_it``: how the calling command names a table,
    e.g. ``--table`` or a ``TABLE`` argument).
    """
    if path is not None or os.environ.get("SNNBENCH_TABLE"):
        chosen = Path(path if path is not None else os.environ["SNNBENCH_TABLE"]).expanduser()
        if not chosen.exists():
            origin = "given path" if path is not None else "$SNNBENCH_TABLE"
            raise FileNotFoundError(f"no snnbench table at {chosen} ({origin}): build one with `snnbench build {chosen}`, "
                                    f"or name another table ({name_it}) or set SNNBENCH_TABLE")
        return chosen
    shipped = shipped_table(dataset)
    if shipped is None or not shipped.exists():
        wanted = dataset or "digits"
        raise FileNotFoundError(
            f"no table for dataset {wanted!r}: none ships with this snnbench (shipped: "
            f"{', '.join(d for d, p in SHIPPED.items() if p.exists()) or 'none'}); build one with "
            f"`snnbench build PATH --dataset {wanted}` and name it ({name_it} PATH or SNNBENCH_TABLE=PATH)")
    return shipped


def table_datasets(path: str | os.PathLike[str]) -> set[str]:
    """Dataset names of a table's protocols, read from their attributes only; empty for an unreadable file
    (:func:`open_table` says what is wrong with it)."""
    try:
        with h5py.File(path, "r") as f:
            return {str(json.loads(g.attrs["settings"]).get("dataset", {}).get("name"))
                    for g in f["protocols"].values()}
    except (OSError, KeyError, ValueError, TypeError, AttributeError):
        return set()


def protocol_id(type_: str, settings: Mapping[str, Any]) -> str:
    """Stable 12-hex-digit id of a protocol: a hash of its type and canonical-JSON settings."""
    text = json.dumps({"type": type_, "settings": settings}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(("snnbench-protocol-v1:" + text).encode()).hexdigest()[:12]


def now() -> str:
    """Current UTC time, ISO 8601 with seconds."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


# --------------------------------------------------------------------------- in-memory model


@dataclass
class Protocol:
    """One protocol's settings and result rows; ``columns`` excludes the keys ``hash`` and ``seed``.

    ``hash`` (``|S16``) and ``seed`` (int64) identify rows; every column has ``len(self)`` rows.
    """

    id: str
    type: str
    settings: dict[str, Any]
    commands: list[str] = field(default_factory=list)
    environments: list[dict[str, Any]] = field(default_factory=list)
    shards: dict[str, Any] | None = None
    created: str = ""
    modified: str = ""
    hash: np.ndarray = field(default_factory=lambda: np.zeros(0, "S16"))
    seed: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    digest: str = ""  # the content digest stored in the file read ("" if none; a write stores a fresh one)
    _pending: list[Mapping[str, Any]] = field(default_factory=list, repr=False, compare=False)
    _keys: set[tuple[str, int]] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.hash) + len(self._pending)

    def done(self) -> set[tuple[str, int]]:
        """Keys ``(cell hash, seed)`` this protocol holds a row for (rows change only through :func:`add_rows`)."""
        if self._keys is None:
            self._keys = {(h.decode(), int(s)) for h, s in zip(self.hash, self.seed)}
            self._keys.update((str(r["hash"]), int(r["seed"])) for r in self._pending)
        return self._keys

    def settle(self) -> None:
        """Move rows added by :func:`add_rows` into the column arrays (done before any write)."""
        fresh = self._pending
        if not fresh:
            return
        optional = sorted({n for r in fresh for n in r["values"] if n.startswith(METRIC_SECONDS)}
                          | {n for n in self.columns if n.startswith(METRIC_SECONDS)})
        new_cols = {n: _column(n, [r["values"][n] for r in fresh]) for n in _required(fresh[0]["values"])}
        new_cols.update({n: np.array([r["values"].get(n, np.nan) for r in fresh], dtype=np.float64) for n in optional})
        columns = {}
        for n, c in sorted(new_cols.items()):
            if n in self.columns:
                c = _concat(n, self.columns[n], c)
            elif len(self.hash):  # an optional column the stored rows lack
                c = np.concatenate([np.full(len(self.hash), np.nan), c])
            columns[n] = c
        self.hash = np.concatenate([self.hash, np.array([r["hash"] for r in fresh], dtype="S16")])
        self.seed = np.concatenate([self.seed, np.array([int(r["seed"]) for r in fresh], dtype=np.int64)])
        self.columns, self._pending = columns, []


@dataclass
class Table:
    """A table read fully into memory (the file is closed): cells and protocols by id."""

    path: Path
    attrs: dict[str, Any]
    cells: dict[str, np.ndarray]
    protocols: dict[str, Protocol]

    def protocol(self, key: str) -> Protocol:
        """The protocol whose id is ``key`` or starts with it (unique prefix)."""
        hits = [p for pid, p in self.protocols.items() if pid.startswith(key)]
        if len(hits) != 1:
            known = ", ".join(self.protocols) or "none"
            raise ProtocolNotFound(f"{self.path}: {'no' if not hits else 'ambiguous'} protocol {key!r} (protocols: {known})")
        return hits[0]


# --------------------------------------------------------------------------- reading


def _fail(path: Path, problem: str) -> TableError:
    return TableError(f"{path}: {problem}")


def open_table(path: str | os.PathLike[str], *, verify: bool = False) -> Table:
    """Read and check a table file; :class:`TableError` for a missing, foreign, truncated, corrupt or newer file.

    Every open checks the structure (:func:`_check_cells`, column schemas, required columns); ``verify`` also
    recomputes each protocol's content digest (:func:`rows_digest`) and refuses a protocol whose rows changed since
    snnbench wrote them (protocols written before digests were stored have none to check).
    """
    path = Path(path)
    with _table_file(path) as f:
        table = _read(path, f)
    if verify:
        _verify(table)
    return table


def _verify(table: Table) -> None:
    """Each protocol's rows hash to the digest stored with them (if one is)."""
    for p in table.protocols.values():
        if p.digest and rows_digest(p.hash, p.seed, p.columns) != p.digest:
            raise _fail(table.path, f"corrupt table (protocol {p.id}: its rows differ from what snnbench wrote: content "
                                    "digest mismatch; the file was edited or damaged)")


@contextlib.contextmanager
def _table_file(path: Path) -> Iterator[h5py.File]:
    """``path`` opened for reading once its header is checked (an HDF5 file of snnbench's format and a schema this
    version reads; no data is read); an error in the body is a :class:`TableError` naming the file."""
    if not path.exists():
        raise _fail(path, "no such table file")
    if path.is_dir():
        raise _fail(path, "is a directory, not a table file")
    with open(path, "rb") as fh:
        head = fh.read(len(_HDF5_SIGNATURE))
    if head != _HDF5_SIGNATURE:
        raise _fail(path, "not an HDF5 file (no HDF5 signature): not an snnbench table")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise _fail(path, f"truncated or corrupt HDF5 file ({_h5_reason(err)})") from None
    try:
        with f:
            fmt = f.attrs.get("format")
            if isinstance(fmt, bytes):
                fmt = fmt.decode(errors="replace")
            if fmt != FORMAT:
                raise _fail(path, f"foreign HDF5 file, not an snnbench table (format attribute {fmt!r}, expected {FORMAT!r})")
            version = int(f.attrs.get("schema_version", -1))
            if version > SCHEMA_VERSION:
                raise _fail(path, f"written by a newer snnbench (schema version {version} > {SCHEMA_VERSION}); upgrade snnbench")
            if version < 1:
                raise _fail(path, f"corrupt table (schema_version {version})")
            yield f
    except TableError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as err:
        raise _fail(path, f"corrupt table ({_h5_reason(err)})") from None


def _h5_reason(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:160] or type(err).__name__


def _read(path: Path, f: h5py.File) -> Table:
    """The table in ``f``, whose header :func:`_table_file` checked."""
    attrs = {k: _attr(v) for k, v in f.attrs.items()}
    cg = f["cells"]
    cells = {name: cg[name][()] for name in ("index", "matrix", "hash", "kind", "raw_forward", "raw_backward")}
    n = len(cells["index"])
    if any(len(v) != n for v in cells.values()):
        raise _fail(path, "corrupt table (/cells datasets differ in length)")
    _check_hashes(path, cells["hash"])
    _check_cells(path, cells)
    protocols: dict[str, Protocol] = {}
    for pid, g in f["protocols"].items():
        protocols[pid] = _read_protocol(path, pid, g, cells["hash"])
    return Table(path, attrs, cells, protocols)


def _check_hashes(path: Path, hashes: np.ndarray) -> None:
    """``/cells/hash`` is 1-D 16-hex-digit strings. Cheap (no space lookup), so opening a table stays fast;
    the writers (:class:`TableWriter`, :func:`merge_tables`) also check that each names a cell of the space."""
    if hashes.ndim != 1 or hashes.dtype.kind != "S" or hashes.dtype.itemsize != 16:
        raise _fail(path, f"corrupt table (/cells/hash has dtype {hashes.dtype} and shape {hashes.shape}, expected 1-D hash strings)")
    digits = np.frombuffer(hashes.tobytes(), dtype=np.uint8).reshape(-1, 16)
    bad = ~(((digits >= ord("0")) & (digits <= ord("9"))) | ((digits >= ord("a")) & (digits <= ord("f")))).all(axis=1)
    if bad.any():
        raise _fail(path, f"corrupt table (/cells/hash: {bytes(hashes[bad][0])!r} is not 16 hex digits)")


def _check_cells(path: Path, cells: Mapping[str, np.ndarray]) -> None:
    """``/cells`` is consistent (vectorised, no space lookup, so opening stays fast): sorted unique non-negative
    ``index``; ``matrix`` 4x4 with operation codes 0-4 and a zero diagonal; ``kind`` 0/1 and backward exactly when
    the matrix has an edge below the diagonal; each ``hash`` the hash of its ``matrix`` (a permuted or edited
    ``/cells/hash`` would make rows answer for another cell)."""
    index, m, kind = cells["index"], cells["matrix"], cells["kind"]
    for name, arr, ndim in (("index", index, 1), ("kind", kind, 1), ("matrix", m, 3),
                            ("raw_forward", cells["raw_forward"], 1), ("raw_backward", cells["raw_backward"], 1)):
        if arr.ndim != ndim or arr.dtype.kind not in "iu":
            raise _fail(path, f"corrupt table (/cells/{name} has dtype {arr.dtype} and shape {arr.shape}, expected {ndim}-D integers)")
    if m.shape[1:] != (NUM_NODES, NUM_NODES):
        raise _fail(path, f"corrupt table (/cells/matrix has shape {m.shape}, expected [cells, {NUM_NODES}, {NUM_NODES}])")
    if len(index) and (index.min() < 0 or not (np.diff(index) > 0).all()):
        raise _fail(path, "corrupt table (/cells/index is not sorted unique cell indices)")
    bad = ((m < 0) | (m >= NUM_OPS)).any(axis=(1, 2)) | (np.diagonal(m, axis1=1, axis2=2) != 0).any(axis=1)
    if bad.any():
        raise _fail(path, f"corrupt table (/cells/matrix row {int(np.argmax(bad))} holds an invalid operation code or a non-zero diagonal)")
    backward = (np.tril(np.ones((NUM_NODES, NUM_NODES), dtype=bool), -1) & (m != 0)).any(axis=(1, 2))
    wrong = (kind > 1) | (kind.astype(bool) != backward)
    if wrong.any():
        k = int(np.argmax(wrong))
        raise _fail(path, f"corrupt table (/cells/kind row {k} is {int(kind[k])}, its matrix is a "
                          f"{_KIND_LABELS[int(backward[k])]} cell)")
    moved = cell_hashes(m) != cells["hash"]
    if moved.any():
        k = int(np.argmax(moved))
        raise _fail(path, f"corrupt table (/cells/hash row {k} is {cells['hash'][k].decode(errors='replace')!r}, not the "
                          "hash of its matrix: hashes edited or permuted)")


def _check_known(table: Table) -> None:
    """Every cell of ``table`` is a cell of :func:`snnbench.space.space` (checked before anything is written)."""
    known = space().hash_index
    unknown = [h for h in table.cells["hash"].astype(str).tolist() if h not in known]
    if unknown:
        raise _fail(table.path, f"corrupt table (/cells/hash: {unknown[0]!r} is not a cell of the space)")


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _read_protocol(path: Path, pid: str, g: h5py.Group, cell_hash: np.ndarray) -> Protocol:
    a = g.attrs
    proto = Protocol(
        id=str(a["id"]),
        type=str(a["type"]),
        settings=json.loads(a["settings"]),
        commands=json.loads(a["commands"]),
        environments=json.loads(a["environments"]),
        shards=json.loads(a["shards"]),
        created=str(a["created"]),
        modified=str(a["modified"]),
    )
    if proto.id != pid or protocol_id(proto.type, proto.settings) != pid:
        raise _fail(path, f"corrupt table (protocol {pid}: id does not match its settings)")
    cell, seed = g["cell"][()], g["seed"][()]
    for name, key in zip(_KEY_COLUMNS, (cell, seed)):
        if key.ndim != 1 or key.dtype.kind not in "iu":
            raise _fail(path, f"corrupt table (protocol {pid}: {name!r} has dtype {key.dtype} and shape {key.shape}, expected 1-D integers)")
    if len(cell) and (cell.min() < 0 or cell.max() >= len(cell_hash)):
        raise _fail(path, f"corrupt table (protocol {pid}: cell index out of range)")
    if len(seed) and seed.min() < 0:
        raise _fail(path, f"corrupt table (protocol {pid}: seed {int(seed.min())} is negative)")
    if len(seed) == len(cell):
        _check_unique(path, pid, cell, seed, cell_hash)
    cols: dict[str, np.ndarray] = {"seed": seed}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and name not in _KEY_COLUMNS:
            cols[name] = obj.asstr()[()] if h5py.check_string_dtype(obj.dtype) else obj[()]

    g.visititems(visit)
    for name, col in cols.items():
        if len(col) != len(cell):
            raise _fail(path, f"corrupt table (protocol {pid}: column {name!r} has {len(col)} rows, expected {len(cell)})")
    proto.hash, proto.seed = cell_hash[cell].astype("S16"), cols.pop("seed").astype(np.int64)
    try:
        cols = _upgrade_columns(cols)
    except (ValueError, KeyError, TypeError) as err:
        raise _fail(path, f"corrupt table (protocol {pid}: unreadable spike_layers: {err})") from None
    problem = _columns_problem(proto.type, proto.settings, cols) if len(cell) else ""
    if problem:
        raise _fail(path, f"corrupt table (protocol {pid}: {problem})")
    proto.digest = str(a.get("digest", ""))
    proto.columns = dict(sorted(cols.items()))
    return proto


_NUMBERS_1D = ("test_acc", "val_acc", "seconds", "train_seconds", "spike_rate", "spikes_per_image")
_CURVES = ("curves/lr", "curves/train_loss", "curves/train_acc", "curves/val_acc", "curves/test_acc", "curves/epoch_seconds")
_TRAIN_COLUMNS = ("val_acc", "test_acc", "params", "seconds", "train_seconds", "spikes_per_image", "spike_rate",
                  "spike_layers/spikes_per_image", "spike_layers/rate", *_CURVES)
_KIND_WORDS = {"biu": "booleans", "iu": "numbers (integers)", "iuf": "numbers"}


def column_schema(name: str) -> tuple[int, str] | None:
    """``(dimensions, numpy dtype kinds)`` of a column the readers use (rows, or rows x entries); ``None`` for
    another column (free: any type, the same for every row)."""
    group = name.split("/", 1)[0] if "/" in name else None
    if group in ("curves", "batch_scores", "spike_layers"):
        return 2, "iuf"
    if group == "singular":
        return 1, "biu"
    if name == "params":
        return 1, "iu"
    return (1, "iuf") if group in ("scores", METRIC_SECONDS.rstrip("/")) or name in _NUMBERS_1D else None


def required_columns(type_: str, settings: Mapping[str, Any]) -> set[str]:
    """Columns every row of a protocol carries, those the readers answer from (``docs/table.md``): a score
    protocol's ``scores/`` and ``singular/`` of each metric of ``settings.score.metrics``, ``params`` and ``seconds``;
    a train protocol's accuracies, spikes, curves, ``params`` and both seconds. Empty for settings of another form
    (protocols written through the library with their own columns)."""
    part = settings.get("score" if type_ == "score" else "train")
    if type_ == "score" and isinstance(part, Mapping) and isinstance(part.get("metrics"), list):
        return {"params", "seconds", *(f"{g}/{m}" for m in part["metrics"] for g in ("scores", "singular"))}
    return set(_TRAIN_COLUMNS) if type_ == "train" and isinstance(part, Mapping) else set()


def _columns_problem(type_: str, settings: Mapping[str, Any], cols: Mapping[str, np.ndarray]) -> str:
    """What makes a protocol's stored columns unusable ("" if nothing): a required column missing, or a column the
    readers use of the wrong type or shape."""
    missing = sorted(required_columns(type_, settings) - set(cols))
    if missing:
        return f"column {missing[0]!r} is missing"
    for name, col in cols.items():
        schema = column_schema(name)
        if schema and (col.ndim != schema[0] or col.dtype.kind not in schema[1]):
            return (f"column {name!r} has dtype {col.dtype} and shape {col.shape}, expected {schema[0]}-D "
                    f"{_KIND_WORDS[schema[1]]}")
    return ""


def is_wall_clock(name: str) -> bool:
    """Whether a column holds wall-clock seconds (:data:`WALL_CLOCK` or :data:`METRIC_SECONDS`)."""
    return name in WALL_CLOCK or name.startswith(METRIC_SECONDS)


def _required(names: Iterable[str]) -> list[str]:
    """The column names every row of a protocol must carry: all but the optional :data:`METRIC_SECONDS` ones."""
    return sorted(n for n in names if not n.startswith(METRIC_SECONDS))


def _check_unique(path: Path, pid: str, cell: np.ndarray, seed: np.ndarray, cell_hash: np.ndarray) -> None:
    """No two rows of a protocol share a (cell, seed) key. Linear for the sorted rows every writer stores; a sort
    only for a table whose rows are out of order."""
    order = np.arange(len(cell))
    ascending = np.diff(cell) > 0
    if not (ascending | ((np.diff(cell) == 0) & (np.diff(seed) > 0))).all():
        order = np.lexsort((seed, cell))
    same = (cell[order][1:] == cell[order][:-1]) & (seed[order][1:] == seed[order][:-1])
    if same.any():
        i = order[int(np.argmax(same))]
        raise _fail(path, f"corrupt table (protocol {pid}: more than one row for cell {cell_hash[cell[i]].decode()} seed {int(seed[i])})")


# --------------------------------------------------------------------------- per-layer spikes


def _cell_lifs(c: int, n: int = NUM_NODES) -> tuple[str, ...]:
    """LIF names of cell ``c``'s possible edges in the network's registration order: forward edges by
    target then source node, then backward edges by target then source."""
    fwd = [f"cell{c}.edges.{edge_name(i, j)}.lif" for j in range(n) for i in range(j)]
    back = [f"cell{c}.edges.{edge_name(i, j)}.lif" for j in range(n) for i in range(j + 1, n)]
    return (*fwd, *back)


SPIKE_LAYERS: tuple[str, ...] = (*_cell_lifs(1), "lif1", *_cell_lifs(2), "lif2", "lif3")
"""Slots of the ``spike_layers/*`` columns: every LIF layer any cell's network can have, in forward order."""
_SLOT = {name: k for k, name in enumerate(SPIKE_LAYERS)}


def spike_layer_values(layers: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """Per-layer spike records (``snnbench.network.spike_stats``: ``name, spikes_per_image, rate``) as the two
    fixed-width columns ``spike_layers/spikes_per_image`` and ``spike_layers/rate``, one slot per
    :data:`SPIKE_LAYERS` entry; NaN where the cell's network has no such layer."""
    spikes, rate = [float("nan")] * len(SPIKE_LAYERS), [float("nan")] * len(SPIKE_LAYERS)
    for layer in layers:
        k = _SLOT.get(layer["name"])
        if k is None:
            raise ValueError(f"spike layer {layer['name']!r} is not one of the table's LIF slots")
        spikes[k], rate[k] = float(layer["spikes_per_image"]), float(layer["rate"])
    return {"spike_layers/spikes_per_image": spikes, "spike_layers/rate": rate}


def _upgrade_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """A record's values with a legacy ``spike_layers`` JSON text (older tables) as the numeric slots."""
    out = dict(values)
    if isinstance(out.get("spike_layers"), str):
        out.update(spike_layer_values(json.loads(out.pop("spike_layers"))))
    return out


def _upgrade_columns(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """:func:`_upgrade_values` for whole columns (a file's legacy text column reads as the numeric ones)."""
    if "spike_layers" not in cols or cols["spike_layers"].dtype != object:
        return cols
    rows = [spike_layer_values(json.loads(text)) for text in cols.pop("spike_layers")]
    for name in ("spike_layers/spikes_per_image", "spike_layers/rate"):
        cols[name] = np.array([r[name] for r in rows], dtype=np.float64).reshape(len(rows), len(SPIKE_LAYERS))
    return cols


# --------------------------------------------------------------------------- records -> columns


def _plain(value: Any) -> Any:
    """A JSON-ready Python value (numbers, strings, nested lists) from numpy/torch scalars and arrays."""
    if isinstance(value, Mapping):
        raise TypeError("nested mappings must be flattened into 'a/b' column names")
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _column(name: str, values: list[Any]) -> np.ndarray:
    """One typed column from per-row values: bool, int64, float64, UTF-8 str, or a fixed-shape array per row."""
    if all(isinstance(v, bool) for v in values):
        return np.array(values, dtype=bool)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.int64)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.float64)
    if all(isinstance(v, str) for v in values):
        return np.array(values, dtype=object)
    if all(isinstance(v, list) for v in values):
        try:
            arr = np.array(values)
        except ValueError:
            raise ValueError(f"column {name!r}: rows hold arrays of different shapes") from None
        if arr.dtype.kind in "iub":
            return arr.astype(np.int64)
        if arr.dtype.kind == "f":
            return arr.astype(np.float64)
    raise ValueError(f"column {name!r}: values must all be numbers, all strings or all equal-shape numeric arrays")


def _concat(name: str, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    if old.shape[1:] != new.shape[1:]:
        raise ValueError(f"column {name!r}: new rows have shape {new.shape[1:]}, stored rows {old.shape[1:]}")
    if old.dtype == object or new.dtype == object:
        if not (old.dtype == object and new.dtype == object):
            raise ValueError(f"column {name!r}: mixes text and numbers")
        return np.concatenate([old, new])
    if old.dtype != new.dtype:
        return np.concatenate([old, new]).astype(np.result_type(old.dtype, new.dtype))
    return np.concatenate([old, new])


def _value_kind(value: Any) -> tuple[str, tuple[int, ...]]:
    """The numpy dtype kind (``b``, ``i`` or ``f``; ``s`` text) and entry shape of the column a record value makes
    (:func:`_column`: a list of bools or ints is stored as int64); ``?`` for a value no column holds (an int beyond
    int64, a ragged or non-numeric list)."""
    if isinstance(value, bool):
        return "b", ()
    if isinstance(value, int):
        return ("i" if -2**63 <= value < 2**63 else "?"), ()
    if isinstance(value, float):
        return "f", ()
    if isinstance(value, str):
        return "s", ()
    if isinstance(value, list):
        try:
            arr = np.asarray(value)
        except (ValueError, OverflowError):
            return "?", ()
        return {"b": "i", "i": "i", "u": "i", "f": "f"}.get(arr.dtype.kind, "?"), arr.shape
    return "?", ()


def _array_kind(col: np.ndarray) -> tuple[str, tuple[int, ...]]:
    """:func:`_value_kind` of a stored column's rows."""
    kind = col.dtype.kind
    return ("i" if kind == "u" else "s" if kind in "OUS" else kind), tuple(col.shape[1:])


def _same_type(a: tuple[str, tuple[int, ...]], b: tuple[str, tuple[int, ...]]) -> bool:
    """Two rows can share a column: the same entry shape, and both numbers (int and float), both bools or both text."""
    def family(k: str) -> str:
        return "n" if k in "if" else k
    return a[1] == b[1] and family(a[0]) == family(b[0])


def _kind_problem(name: str, kind: tuple[str, tuple[int, ...]], value: Any) -> str:
    """Why ``value`` (of :func:`_value_kind` ``kind``) cannot be a row of column ``name`` whatever the other rows (""):
    exactly what the reader (:func:`_columns_problem`) would refuse in the stored column."""
    if kind[0] == "?":
        return f"column {name!r} holds {value!r:.60}, which is no number, text or equal-shape numeric array"
    schema = column_schema(name)
    if schema is None:
        return ""
    ndim, kinds = schema
    if kind[0] not in kinds or len(kind[1]) + 1 != ndim:
        return (f"column {name!r} holds {value!r:.60}, expected {'a list of ' if ndim == 2 else 'one of '}"
                f"{_KIND_WORDS[kinds]} per row")
    return ""


def add_rows(proto: Protocol, records: Iterable[Mapping[str, Any]]) -> int:
    """Add records (``{"hash", "seed", "values": {column: value}}``) whose key is new; returns rows added.

    Every record must fit the protocol's column schema, or ``ValueError`` is raised and nothing is added: the
    columns every row carries (:func:`required_columns`) present, the columns the readers use of their type and
    shape (:func:`column_schema`), every column of one type and entry shape in all rows, stored and new, the same
    columns in every row except the optional :data:`METRIC_SECONDS` ones (numbers, NaN in the rows that lack them),
    and a seed in 0..2^63-1. So a fold never meets rows it cannot store and a table never holds rows its reader
    refuses. Rows are buffered; :meth:`Protocol.settle` turns them into columns.
    """
    seen = proto.done()
    fresh: list[dict[str, Any]] = []
    keys: set[tuple[str, int]] = set()
    for r in records:
        seed = r["seed"]
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
            raise ValueError(f"protocol {proto.id}: record for cell {r['hash']}: seed {seed!r} is not an integer in 0..2^63-1")
        key = (str(r["hash"]), int(seed))
        if key not in seen and key not in keys:
            keys.add(key)
            fresh.append({"hash": key[0], "seed": key[1], "values": {k: _plain(v) for k, v in _upgrade_values(r["values"]).items()}})
    if not fresh:
        return 0
    if proto._pending:
        ref = {n: _value_kind(v) for n, v in proto._pending[0]["values"].items()}
    elif len(proto.hash):
        ref = {n: _array_kind(c) for n, c in proto.columns.items()}
    else:
        ref = {n: _value_kind(v) for n, v in fresh[0]["values"].items()}
    names = _required(ref)
    missing = sorted(required_columns(proto.type, proto.settings) - set(names))
    if missing:
        raise ValueError(f"protocol {proto.id}: rows lack the column {missing[0]!r} every row of a {proto.type} protocol carries")
    for r in fresh:
        if _required(r["values"]) != names:
            raise ValueError(f"protocol {proto.id}: record for cell {r['hash']} has columns {_required(r['values'])}, "
                             f"stored rows have {names}")
        for n, v in r["values"].items():
            kind = _value_kind(v)
            if n.startswith(METRIC_SECONDS) and not _same_type(kind, ("f", ())):
                problem = f"column {n!r} holds {v!r:.60}, expected seconds (a number)"
            else:
                problem = _kind_problem(n, kind, v)
            if not problem and n in ref and not _same_type(ref[n], kind):
                problem = f"column {n!r} holds {v!r:.60}, unlike the protocol's other rows"
            if problem:
                raise ValueError(f"protocol {proto.id}: record for cell {r['hash']}: {problem}")
    proto._pending.extend(fresh)
    seen.update(keys)
    return len(fresh)


# --------------------------------------------------------------------------- writing a whole file


_DS_OPTS = dict(compression="gzip", compression_opts=4, shuffle=True, fletcher32=True)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _dataset(g: h5py.Group, name: str, data: np.ndarray) -> h5py.Dataset:
    """A chunked, compressed, checksummed dataset, resizable along its first axis."""
    rows = max(1, min(len(data), 8192))
    chunks = (rows, *data.shape[1:]) if data.ndim > 1 else (rows,)
    if data.dtype == object:  # UTF-8 text, fixed width (its longest row) so that the filters apply (variable-length
        raw = [str(v).encode() for v in data]  # text sits in HDF5's global heap, uncompressed); read back as str
        width = max([1, *map(len, raw)])
        return g.create_dataset(name, data=np.array(raw, dtype=h5py.string_dtype("utf-8", width)), maxshape=(None,),
                                chunks=chunks, **_DS_OPTS)
    return g.create_dataset(name, data=data, maxshape=(None, *data.shape[1:]), chunks=chunks, **_DS_OPTS)


def write_table(path: str | os.PathLike[str], protocols: Iterable[Protocol], attrs: Mapping[str, Any] | None = None,
                *, exclusive: bool = False) -> None:
    """Write a complete table atomically: a temporary file next to ``path``, fsync, ``os.replace``. A symbolic
    link is followed: its target is replaced and the link kept.

    With ``exclusive`` the file is claimed, not replaced: ``os.link`` creates ``path`` only if it does not exist
    (no check-then-replace window), so of two writers racing to one new file exactly one succeeds; the other gets
    a :class:`TableError` and leaves the winner's file as it is. Temporary files of dead processes left beside
    ``path`` (a writer killed mid-write) are removed first. A failure to write (disk full, EIO) is a
    :class:`TableIOError`: the temporary file is removed and ``path`` keeps its previous content.
    """
    path = Path(os.path.realpath(path))
    _check_writable(path)
    remove_stale_temporaries(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        try:
            _write_file(tmp, sorted(protocols, key=lambda p: p.id), str((attrs or {}).get("created", now())))
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            with contextlib.suppress(FileNotFoundError):  # the new file keeps the table's permissions
                os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        except (OSError, RuntimeError) as err:  # h5py reports some write failures (ENOSPC) as RuntimeError
            raise TableIOError(f"{path}: cannot write the table ({_h5_reason(err)}); the file keeps its previous "
                               "content and no temporary file is left") from None
        except (ValueError, TypeError) as err:
            raise _fail(path, f"cannot write the table ({_h5_reason(err)})") from None
        if exclusive:
            _claim(tmp, path)
        else:
            _install(tmp, path)
    finally:
        with contextlib.suppress(OSError):  # gone already (replaced) or not ours to remove
            os.unlink(tmp)
    _fsync_dir(path.parent)


def _install(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except OSError as err:
        raise TableIOError(f"{path}: cannot replace the table ({_h5_reason(err)}); it keeps its previous content") from None


def _claim(tmp: Path, path: Path) -> None:
    """Create ``path`` as ``tmp``'s content only if no file is there (atomic: ``os.link``; where the file system has
    no hard links, an ``O_EXCL`` placeholder claims the name first)."""
    taken = _fail(path, "already exists (another process wrote it meanwhile?); nothing was written: rerun with a "
                        "new output name, or remove it")
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise taken from None
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
            raise TableIOError(f"{path}: cannot create the table ({_h5_reason(err)})") from None
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        raise taken from None
    except OSError as err:
        raise TableIOError(f"{path}: cannot create the table ({_h5_reason(err)})") from None
    _install(tmp, path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the ``<table>.tmp-<pid>`` files beside ``path`` whose writing process is gone (killed mid-fold or
    mid-merge); returns them. A live process's temporary file is left alone."""
    path = Path(path)
    removed = []
    with contextlib.suppress(OSError):
        for tmp in path.parent.glob(f"{glob.escape(path.name)}.tmp-*"):
            pid = tmp.name.rsplit("-", 1)[1]
            if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                with contextlib.suppress(OSError):
                    tmp.unlink()
                    removed.append(tmp)
    return removed


def _check_writable(path: Path) -> None:
    """Refuse a table file the user may not write (a read-only table is left as it is, not replaced)."""
    if path.exists() and not os.access(path, os.W_OK):
        raise _fail(path, "the table file is read-only (no write permission); refusing to replace it")


def _write_file(tmp: Path, protocols: list[Protocol], created: str) -> None:
    from snnbench import __version__

    for p in protocols:
        p.settle()
        problem = _columns_problem(p.type, p.settings, p.columns) if len(p) else ""
        if problem:  # what the reader would refuse is never written
            raise ValueError(f"protocol {p.id}: {problem}")
    sp = space()
    index_of = sp.hash_index
    hashes = sorted({h.decode() for p in protocols for h in p.hash}, key=index_of.__getitem__)
    idx = np.array([index_of[h] for h in hashes], dtype=np.int32)
    row_of = {h.encode(): i for i, h in enumerate(hashes)}
    # built in memory, then written with plain file I/O: a full disk is then one clean OSError, never an HDF5 write
    # failure (whose half-closed objects print tracebacks as they are freed and can crash the interpreter at exit)
    with h5py.File(tmp, "w", driver="core", backing_store=False, libver=("v110", "v110"), track_order=True) as f:
        f.attrs["format"] = FORMAT
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["created"] = created
        f.attrs["modified"] = now()
        f.attrs["snnbench_version"] = __version__
        cg = f.create_group("cells")
        _dataset(cg, "index", idx)
        _dataset(cg, "matrix", sp.matrices[idx].astype(np.int8).reshape(len(idx), sp.n, sp.n))
        _dataset(cg, "hash", np.array(hashes, dtype="S16"))
        ds = _dataset(cg, "kind", sp.is_backward[idx].astype(np.uint8))
        ds.attrs["labels"] = json.dumps(_KIND_LABELS)
        _dataset(cg, "raw_forward", sp.raw_counts["forward"][idx].astype(np.int32))
        _dataset(cg, "raw_backward", sp.raw_counts["backward"][idx].astype(np.int32))
        pg = f.create_group("protocols")
        for p in protocols:
            _write_protocol(pg, p, row_of, index_of)
        f.flush()
        image = f.id.get_file_image()
    with open(tmp, "wb") as fh:
        fh.write(image)


def _write_protocol(pg: h5py.Group, p: Protocol, row_of: dict[bytes, int], index_of: dict[str, int]) -> None:
    g = pg.create_group(p.id)
    for key, value in (
        ("id", p.id),
        ("type", p.type),
        ("settings", json.dumps(p.settings, sort_keys=True)),
        ("commands", json.dumps(p.commands)),
        ("environments", json.dumps(p.environments, sort_keys=True)),
        ("shards", json.dumps(p.shards)),
        ("created", p.created),
        ("modified", p.modified),
    ):
        g.attrs[key] = value
    order = np.lexsort((p.seed, np.array([index_of[h.decode()] for h in p.hash], dtype=np.int64)))
    _dataset(g, "cell", np.array([row_of[h] for h in p.hash], dtype=np.int32)[order])
    _dataset(g, "seed", p.seed[order])
    columns = {name: col[order] for name, col in p.columns.items()}
    for name, col in columns.items():
        _dataset(g, name, col)
    g.attrs["digest"] = rows_digest(p.hash[order], p.seed[order], columns)


def rows_digest(hashes: np.ndarray, seeds: np.ndarray, columns: Mapping[str, np.ndarray]) -> str:
    """sha256 (hex) of a protocol's rows in stored order: cell hashes, seeds, then each column by name (its type,
    entry shape and values; text as UTF-8). Stored as the protocol's ``digest`` attribute by every write and
    recomputed by ``open_table(..., verify=True)`` and by a writer opening the table."""
    h = hashlib.sha256(b"snnbench-rows-v1\0")
    h.update(np.ascontiguousarray(hashes, dtype="S16").tobytes())
    h.update(np.ascontiguousarray(seeds, dtype="<i8").tobytes())
    for name in sorted(columns):
        col = columns[name]
        kind = col.dtype.kind
        h.update(f"\0{name}\0{kind if kind in 'bf' else 'i' if kind in 'iu' else 's'}{col.shape[1:]}\0".encode())
        if kind in "OUS":
            h.update(json.dumps([str(v) for v in col]).encode())
        else:
            h.update(np.ascontiguousarray(col, dtype="|b1" if kind == "b" else "<f8" if kind == "f" else "<i8").tobytes())
    return h.hexdigest()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- the single writer


def journal_path(path: str | os.PathLike[str]) -> Path:
    """Where a writer of the table at ``path`` journals rows not yet folded into it (``<table>.journal`` next to
    the file a symbolic link points to)."""
    real = Path(os.path.realpath(path))
    return real.with_name(real.name + ".journal")


class TableWriter:
    """The one process allowed to change a table: holds ``<table>.lock``, journals results, folds atomically.

    Opening replays a journal left by an interrupted writer. Use as a context manager; :meth:`close`
    folds pending results.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(os.path.realpath(path))  # a link's target: one lock and journal however it is reached
        self.journal_path = journal_path(self.path)
        if self.path.exists():  # no lock file is left beside a foreign or read-only file (read under the lock)
            _check_writable(self.path)
            with _table_file(self.path):
                pass
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = _lock_file(self.path)
        try:
            _check_writable(self.path)
            if self.path.exists():
                try:
                    table = open_table(self.path)
                    _check_known(table)
                    _verify(table)  # a resume must not make an edited table's damage permanent
                except TableError as err:
                    raise TableError(f"{err}; a writer never folds into a damaged table: restore the file from a copy, "
                                     "or build into a new one") from None
                self.attrs, self.protocols = table.attrs, table.protocols
            else:
                self.attrs, self.protocols = {}, {}
            replayed = self._replay()
            self._journal = open(self.journal_path, "a", encoding="utf-8")
            if replayed or not self.path.exists():
                self.fold()
        except BaseException:
            _unlock(self._lock)
            raise
        self.replayed = replayed

    def _replay(self) -> int:
        """Fold the complete lines of a leftover journal into memory; a torn last line is dropped and cut off
        the file, so the journal stays whole lines (the next line appended is not glued onto the fragment)."""
        if not self.journal_path.exists():
            return 0
        known = space().hash_index
        added = 0
        data = self.journal_path.read_bytes()
        end = data.rfind(b"\n") + 1  # data[end:] is empty or an unterminated (torn) line
        hint = ("; the table holds every row folded before it: fix or delete that line, or move the journal aside "
                "to drop its unfolded rows")
        for number, line in enumerate(data[:end].decode("utf-8", errors="replace").split("\n")[:-1], 1):
            if not line.strip():  # a blank line (an editor's trailing newline) holds no row
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                raise _fail(self.journal_path, f"corrupt journal line {number} (not JSON){hint}") from None
            problem = _journal_problem(entry, self.protocols, known)
            if problem:
                raise _fail(self.journal_path, f"corrupt journal line {number} ({problem}){hint}")
            if "protocol_def" in entry:
                d = entry["protocol_def"]
                old = self.protocols.get(d["id"])
                fresh = Protocol(**d)
                if old is not None:
                    fresh.hash, fresh.seed, fresh.columns, fresh.created = old.hash, old.seed, old.columns, old.created
                self.protocols[d["id"]] = fresh
                continue
            try:
                added += add_rows(self.protocols[entry["protocol"]], [entry])
            except (ValueError, TypeError, KeyError) as err:
                raise _fail(self.journal_path, f"corrupt journal line {number} ({err}){hint}") from None
        for proto in self.protocols.values():
            try:
                proto.settle()
            except (ValueError, OverflowError) as err:
                raise _fail(self.journal_path, f"corrupt journal ({err})") from None
        if end < len(data):
            os.truncate(self.journal_path, end)
        return added

    def __enter__(self) -> "TableWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            self.close()
            return
        with contextlib.suppress(TableError):  # the first error is the one to report; the journal keeps the rows
            self.close()

    def ensure_protocol(self, type_: str, settings: dict[str, Any], *, command: str, environment: dict[str, Any],
                        shard: tuple[int, int] | None) -> Protocol:
        """The protocol with these settings (created if new); records the command, environment and shard (new ones appended)."""
        if type_ not in PROTOCOL_TYPES:
            raise ValueError(f"protocol type: expected one of {PROTOCOL_TYPES}, got {type_!r}")
        pid = protocol_id(type_, settings)
        stamp = now()
        part = None if shard is None else {"count": shard[1], "indices": [shard[0]]}
        proto = self.protocols.get(pid)
        if proto is None:
            proto = Protocol(pid, type_, json.loads(json.dumps(settings)), created=stamp, modified=stamp, shards=part)
            self.protocols[pid] = proto
        else:
            proto.shards = merge_shards(proto.shards, part)
        if command not in proto.commands:
            proto.commands.append(command)
        if environment not in proto.environments:
            proto.environments.append(environment)
        self._write_lines([{"protocol_def": _protocol_header(proto)}])
        return proto

    def add(self, pid: str, records: list[dict[str, Any]]) -> None:
        """Journal result records of protocol ``pid`` (one fsync) and add them in memory."""
        if not records:
            return
        proto = self.protocols[pid]
        known = space().hash_index
        unknown = [r["hash"] for r in records if r["hash"] not in known]
        if unknown:  # a journal line no fold could write: refused before anything is journalled
            raise _fail(self.path, f"rows for {unknown[0]!r}, which is not a cell of the space; none of these rows was written")
        proto.modified = now()
        lines = [{"protocol": pid, "hash": r["hash"], "seed": int(r["seed"]), "values": {k: _plain(v) for k, v in r["values"].items()}} for r in records]
        add_rows(proto, lines)
        self._write_lines(lines)

    def _write_lines(self, entries: list[dict[str, Any]]) -> None:
        """Append one JSON line per entry to the journal, then fsync once; a failed append (disk full) is a
        :class:`TableIOError` (a partly written last line is torn, dropped by the next replay)."""
        try:
            self._journal.write("".join(json.dumps(entry) + "\n" for entry in entries))
            self._journal.flush()
            os.fsync(self._journal.fileno())
        except OSError as err:
            raise TableIOError(f"{self.journal_path}: cannot append to the journal ({_h5_reason(err)}); the rows "
                               "journalled before are kept") from None

    def fold(self) -> None:
        """Write every protocol to a new file that atomically replaces the table, then empty the journal."""
        write_table(self.path, self.protocols.values(), self.attrs)
        self.attrs.setdefault("created", now())
        with open(self.journal_path, "w"):
            pass

    def close(self) -> None:
        """Fold, delete the journal and release the lock (its file removed); if the fold fails the journal stays, for
        the next writer."""
        if self._lock.closed:
            return
        try:
            self.fold()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.journal_path)
        finally:
            with contextlib.suppress(OSError):  # a failed flush of a full disk: the fsync'd lines are what counts
                self._journal.close()
            _unlock(self._lock)


def _lock_file(path: Path) -> IO[str]:
    """``<path>.lock``, open and ``flock``-ed by this process. The lock is valid only on the file the name
    currently links: a writer releasing it removes the file (:func:`_unlock`), so one that locked a file
    unlinked meanwhile retries on the new one. Two writers thus never both hold the lock of one table."""
    name = path.with_name(path.name + ".lock")
    while True:
        lock = open(name, "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise _fail(path, f"another process is writing this table (lock {name})") from None
        try:
            if os.stat(name).st_ino == os.fstat(lock.fileno()).st_ino:
                return lock
        except FileNotFoundError:
            pass
        lock.close()  # the file was removed by the writer that held it: lock the current one


def _unlock(lock: IO[str]) -> None:
    """Remove the lock file (still holding it, so no writer is locking it) and release it."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(lock.name)
    lock.close()


_HEADER_TYPES: dict[str, type | tuple[type, ...]] = {
    "id": str, "type": str, "settings": dict, "commands": list, "environments": list, "shards": (dict, type(None)),
    "created": str, "modified": str}


def _journal_problem(entry: Any, protocols: Mapping[str, Protocol], known: Mapping[str, int]) -> str:
    """What makes a parsed journal line unusable ("" if nothing): it must be a protocol definition as
    :meth:`TableWriter.ensure_protocol` writes it, or a row of a defined protocol for a cell of the space."""
    if not isinstance(entry, dict):
        return f"a JSON {type(entry).__name__}, expected an object"
    if "protocol_def" in entry:
        d = entry["protocol_def"]
        if set(entry) != {"protocol_def"} or not isinstance(d, dict) or set(d) != set(_HEADER_TYPES):
            return f"protocol definition without the fields {sorted(_HEADER_TYPES)}"
        wrong = [k for k, t in _HEADER_TYPES.items() if not isinstance(d[k], t)]
        if wrong:
            return f"protocol definition field {wrong[0]!r} has type {type(d[wrong[0]]).__name__}"
        if d["type"] not in PROTOCOL_TYPES or protocol_id(d["type"], d["settings"]) != d["id"]:
            return f"protocol {d['id']!r}: id does not match its type and settings"
        if d["shards"] is not None and set(d["shards"]) != {"count", "indices"}:
            return f"protocol {d['id']!r}: shards {d['shards']!r}, expected null or {{'count', 'indices'}}"
        return ""
    if set(entry) != {"protocol", "hash", "seed", "values"}:
        return f"fields {sorted(entry)}, expected a protocol definition or a row ['hash', 'protocol', 'seed', 'values']"
    if not isinstance(entry["protocol"], str) or entry["protocol"] not in protocols:
        return f"names unknown protocol {entry['protocol']!r}"
    if not isinstance(entry["hash"], str) or entry["hash"] not in known:
        return f"row for {entry['hash']!r}, which is not a cell of the space"
    if not isinstance(entry["seed"], int) or isinstance(entry["seed"], bool) or not 0 <= entry["seed"] < 2**63:
        return f"seed {entry['seed']!r} is not a 64-bit integer >= 0"
    if not isinstance(entry["values"], dict):
        return "row values are not an object"
    return ""


def _protocol_header(p: Protocol) -> dict[str, Any]:
    return {"id": p.id, "type": p.type, "settings": p.settings, "commands": p.commands, "environments": p.environments,
            "shards": p.shards, "created": p.created, "modified": p.modified}


def merge_shards(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """Shards covered after adding shard set ``b`` to ``a`` (``None`` = the whole cell selection)."""
    if a is None or b is None:
        return None
    if a["count"] != b["count"]:
        raise ValueError(f"shards: cannot combine a 1/{a['count']} slicing with a 1/{b['count']} slicing")
    indices = sorted(set(a["indices"]) | set(b["indices"]))
    return None if len(indices) == a["count"] else {"count": a["count"], "indices": indices}


def settings_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    """The first setting (dotted path) where two settings dicts differ, as ``"path: a vs b"`` ("" if equal)."""
    def flat(d: Any, prefix: str = "") -> dict[str, Any]:
        if not isinstance(d, Mapping):
            return {prefix or "(value)": d}
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out

    fa, fb = flat(a), flat(b)
    for key in sorted(set(fa) | set(fb)):
        if fa.get(key, "(unset)") != fb.get(key, "(unset)"):
            return f"{key}: {fa.get(key, '(unset)')!r} vs {fb.get(key, '(unset)')!r}"
    return ""


def merge_tables(out: str | os.PathLike[str], inputs: Sequence[str | os.PathLike[str]], *, union: bool = False) -> Table:
    """Join tables (typically shards) into a new file ``out``; refuses inputs built with different settings.

    Every input must hold the same protocols (same ids, i.e. same settings) sliced the same way; with
    ``union`` a protocol may be missing from some inputs (e.g. a GPU training run joined to a score table)
    and is built from those that hold it. Rows are united; a row present in several inputs must hold the same
    values in each (except wall-clock columns, :func:`is_wall_clock`: taken from the first). ``out`` must not exist,
    and is claimed atomically when written (:func:`write_table` ``exclusive``): of two merges racing to one ``out``
    the loser raises :class:`TableError` and the winner's file stays. Inputs are checked against their digests.
    """
    out = Path(out)
    if not inputs:
        raise ValueError("merge: no input table given")
    if out.exists():
        raise _fail(out, "already exists; merge writes a new file (remove it or choose another name)")
    if not out.parent.is_dir():
        raise _fail(out, f"cannot write the merged table: no such folder {out.parent}")
    tables = [open_table(p) for p in inputs]
    for t in tables:
        _check_known(t)
        _verify(t)
    ref = tables[0]
    for t in tables[1:]:
        if not union and set(t.protocols) != set(ref.protocols):
            extra = sorted(set(t.protocols) ^ set(ref.protocols))[0]
            mine, other_table = (t.protocols[extra], ref) if extra in t.protocols else (ref.protocols[extra], t)
            twins = [p for p in other_table.protocols.values() if p.type == mine.type]
            detail = settings_diff(mine.settings, twins[0].settings) if twins else f"no {mine.type} protocol"
            raise _fail(t.path, f"built with different settings than {ref.path} ({detail}); refusing to merge")
    merged: dict[str, Protocol] = {}
    for pid in dict.fromkeys(pid for t in tables for pid in t.protocols):
        holders = [t for t in tables if pid in t.protocols]
        for k, t in enumerate(holders):
            for earlier in holders[:k]:
                _check_agree(pid, earlier, t)
        first = holders[0].protocols[pid]
        proto = Protocol(pid, first.type, first.settings, list(first.commands), [], first.shards,
                         first.created, first.modified)
        for t in holders:
            p = t.protocols[pid]
            if t is not holders[0]:
                try:
                    proto.shards = merge_shards(proto.shards, p.shards)
                except ValueError as err:
                    raise _fail(t.path, f"{err}; refusing to merge") from None
            proto.commands += [c for c in p.commands if c not in proto.commands]
            proto.environments += [e for e in p.environments if e not in proto.environments]
            proto.created, proto.modified = min(proto.created, p.created), max(proto.modified, p.modified)
            add_rows(proto, iter_records(p))
        merged[pid] = proto
    write_table(out, merged.values(), {"created": min(str(t.attrs["created"]) for t in tables)}, exclusive=True)
    return open_table(out)


def iter_records(proto: Protocol) -> Iterator[dict[str, Any]]:
    """Rows of a protocol as records ``{"hash", "seed", "values"}`` (the form :func:`add_rows` takes)."""
    for i in range(len(proto)):
        yield {"hash": proto.hash[i].decode(), "seed": int(proto.seed[i]),
               "values": {name: _plain(col[i]) for name, col in proto.columns.items()}}


def records_equal(a: Protocol, b: Protocol, *, ignore: Iterable[str] = ()) -> bool:
    """True when two protocols hold the same keys and bit-identical columns (except ``ignore``)."""
    skip = set(ignore)
    if len(a) != len(b) or sorted(a.columns) != sorted(b.columns):
        return False
    oa = np.lexsort((a.seed, a.hash))
    ob = np.lexsort((b.seed, b.hash))
    if not (np.array_equal(a.hash[oa], b.hash[ob]) and np.array_equal(a.seed[oa], b.seed[ob])):
        return False
    return all(_same_rows(a.columns[name][oa], b.columns[name][ob]).all() for name in a.columns if name not in skip)


def _same_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per row: whether two equally long columns hold the same value (floats bit for bit, NaN included)."""
    if x.shape[1:] != y.shape[1:]:
        return np.zeros(len(x), dtype=bool)
    if x.dtype == np.float64 and y.dtype == np.float64:
        x, y = x.view(np.uint64), y.view(np.uint64)
    return np.asarray(np.asarray(x == y).reshape(len(x), -1).all(axis=1))


def _check_agree(pid: str, a: Table, b: Table) -> None:
    """Refuse rows that ``a`` and ``b`` both hold for protocol ``pid`` with different values; the wall-clock
    columns (:func:`is_wall_clock`) of two identical computations differ and are not compared."""
    pa, pb = a.protocols[pid], b.protocols[pid]
    row_of = {key: i for i, key in enumerate(zip(pa.hash.tolist(), pa.seed.tolist()))}
    pairs = [(row_of[key], j) for j, key in enumerate(zip(pb.hash.tolist(), pb.seed.tolist())) if key in row_of]
    if not pairs:
        return
    ia, ib = np.array(pairs).T
    for name in sorted(set(pa.columns) | set(pb.columns)):
        if is_wall_clock(name):
            continue
        if name not in pa.columns or name not in pb.columns:
            same = np.zeros(len(ia), dtype=bool)
        else:
            same = _same_rows(pa.columns[name][ia], pb.columns[name][ib])
        if not same.all():
            k = int(np.argmin(same))
            raise _fail(b.path, f"protocol {pid}: the row for cell {pa.hash[ia[k]].decode()} seed {int(pa.seed[ia[k]])} "
                                f"differs from the one in {a.path} (column {name!r}); refusing to merge")


__all__ = [
    "FORMAT", "METRIC_SECONDS", "SCHEMA_VERSION", "WALL_CLOCK", "Protocol", "Table", "TableError", "TableIOError", "TableWriter",
    "add_rows", "cell_hashes", "column_schema", "default_table_path", "remove_stale_temporaries", "required_columns", "rows_digest",
    "SHIPPED", "SPIKE_LAYERS", "spike_layer_values", "table_datasets",
    "is_wall_clock", "iter_records", "merge_shards", "merge_tables", "open_table", "protocol_id", "records_equal", "settings_diff", "write_table",
]
