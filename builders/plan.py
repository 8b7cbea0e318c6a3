"""Which work a build does: cell selections, shard slices, per-cell seeds and work items.

Invariants
----------
* Every selection is a list of cell hashes in space-index order and depends only on its spec, the
  kind and (``top:``, ``strata:``) the table's stored scores, never on the order results arrived in.
* A shard ``I/N`` keeps the cells whose hash, read as a 64-bit number, is ``I`` modulo ``N``: shards
  are disjoint, cover the selection, and do not depend on the other cells selected.
* A row's seed is :func:`cell_seed` of the cell hash and the requested seed, so a result never
  depends on which worker computed it, in which batch, or whether the build was resumed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from snnbench.space import KINDS, PUBLISHED_CELLS, Cell, space, to_text
from snnbench.table import Protocol

CELL_SPECS = "all | paper | sample:N[:SEED] | top:K:METRIC | strata:N:METRIC[:BINS[:SEED]] | FILE"
_FORMS = {  # selection form -> (pattern, usage for the error message)
    "sample": (re.compile(r"sample:(\d+)(?::(\d+))?"), "sample:N or sample:N:SEED with N >= 1"),
    "top": (re.compile(r"top:(\d+):([\w/.-]+)"), "top:K:METRIC (e.g. top:20:sahd)"),
    "strata": (re.compile(r"strata:(\d+):([\w/.-]+?)(?::(\d+))?(?::(\d+))?"),
               "strata:N:METRIC[:BINS[:SEED]] with N, BINS >= 1 (e.g. strata:200:sahd)"),
}


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``; ``None`` passes through."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not int(m[1]) < int(m[2]):
        raise ValueError(f"shard: expected I/N with 0 <= I < N (e.g. 0/4), got {text!r}")
    return int(m[1]), int(m[2])


def in_shard(cell_hash: str, shard: tuple[int, int] | None) -> bool:
    """True when the cell belongs to shard ``(I, N)`` (always for ``None``)."""
    return shard is None or int(cell_hash, 16) % shard[1] == shard[0]


def select_cells(spec: str, kind: str, protocols: Mapping[str, Protocol] | None = None,
                 scored_by: Sequence[str] = ()) -> list[str]:
    """Hashes of the cells ``spec`` names within ``kind``'s space, in space-index order.

    ``all``: every unique cell; ``paper``: the cells the SNASNet paper publishes (``snnbench.space.PUBLISHED_CELLS``,
    those of ``kind``'s space; none is refused); ``sample:N[:SEED]``: N distinct cells drawn uniformly (seed 0 by
    default; the first N of one seeded permutation, so a larger N keeps the smaller sample's cells; the whole
    space when N exceeds it); ``top:K:METRIC``: the K best cells by the mean of METRIC over seeds in a score protocol
    (those of ``scored_by`` first, else the only stored one holding METRIC; ties by space index);
    ``strata:N:METRIC[:BINS[:SEED]]``: N cells spread evenly over BINS (default 10) equal-count bins of the
    cells ranked by METRIC (singular, -inf scores rank lowest; NaN ones are left out), drawn uniformly
    within each bin (seed 0 by default; nested as N grows, like ``sample:``); a FILE: one cell per line (text form, JSON list or 16-hex hash; ``#`` comments).
    """
    spec = spec.strip()
    form, m = _parse(spec, kind)
    sp = space()
    pool = sp.indices(kind)  # type: ignore[arg-type]
    if form == "all":
        chosen = pool
    elif form == "paper":
        chosen = np.array(sorted(sp.index_of(Cell(t).pruned.matrix) for t in _published(kind)), dtype=np.int64)
    elif form == "sample":
        n = min(int(m[1]), len(pool))
        chosen = np.sort(np.random.default_rng(int(m[2] or 0)).permutation(pool)[:n])  # samples nest as N grows
    elif form == "top":
        chosen = _top(spec, m, pool, protocols or {}, scored_by)
    elif form == "strata":
        chosen = _strata(spec, m, pool, protocols or {}, scored_by)
    else:
        chosen = _from_file(Path(spec), kind)
    return [sp.hashes[int(u)] for u in chosen]


def check_cells(spec: str, kind: str) -> str:
    """The form (``all``, ``paper``, ``sample``, ``top``, ``strata`` or ``file``) of ``spec``, a well-formed selection for
    ``kind`` (a FILE is read and checked), else ``ValueError``; needs no table, so a build can refuse a bad
    selection before it writes anything."""
    form = _parse(spec.strip(), kind)[0]
    if form == "file":
        _from_file(Path(spec.strip()), kind)
    return form


def ranking_column(spec: str, kind: str) -> str | None:
    """The score column (``scores/METRIC``) a ``top:``/``strata:`` selection ranks by; ``None`` for other forms."""
    form, m = _parse(spec.strip(), kind)
    return _column(m[2]) if form in ("top", "strata") else None


def _column(metric: str) -> str:
    return metric if metric.startswith("scores/") else f"scores/{metric}"


def _parse(spec: str, kind: str) -> tuple[str, Any]:
    """The selection's form (``all``, ``paper``, ``sample``, ``top``, ``strata`` or ``file``) and its regex match."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    if spec == "all":
        return "all", None
    if spec == "paper":
        _published(kind)
        return "paper", None
    form = spec.split(":", 1)[0]
    if form not in _FORMS or ":" not in spec:
        return "file", None
    pattern, usage = _FORMS[form]
    m = pattern.fullmatch(spec)
    if not m or int(m[1]) < 1 or (form == "strata" and m[3] is not None and int(m[3]) < 1):
        raise ValueError(f"cells: expected {usage}, got {spec!r}")
    return form, m


def _published(kind: str) -> list[str]:
    """The published cells in ``kind``'s space; ``ValueError`` when none is (they have backward edges)."""
    cells = [t for t in PUBLISHED_CELLS if kind == "backward" or Cell(t).kind == "forward"]
    if not cells:
        raise ValueError(f"cells: the paper's published cells ({', '.join(PUBLISHED_CELLS)}) have backward edges; "
                         "use --kind backward")
    return cells


def _ranked(spec: str, metric: str, pool: np.ndarray, protocols: Mapping[str, Protocol],
            scored_by: Sequence[str]) -> list[tuple[float, int]]:
    """``(mean METRIC over seeds, space index)`` of the pool's cells in one score protocol, best first
    (ties by space index); cells with a NaN score are left out, singular ones (-inf) come last."""
    column = _column(metric)
    for p in protocols.values():
        p.settle()
    holders = [p for p in protocols.values() if p.type == "score" and column in p.columns]
    preferred = [p for p in holders if p.id in scored_by]
    if preferred:
        holders = preferred
    if len(holders) != 1:
        what = "no score protocol" if not holders else f"{len(holders)} score protocols ({', '.join(p.id for p in holders)})"
        raise ValueError(f"cells: {spec!r} needs exactly one stored score protocol with metric {metric!r}, found {what}")
    proto = holders[0]
    sp = space()
    index_of = sp.hash_index
    sums: dict[int, list[float]] = {}
    for h, v in zip(proto.hash, proto.columns[column]):
        sums.setdefault(index_of[h.decode()], []).append(float(v))
    allowed = set(pool.tolist())
    scored = [(float(np.mean(v)), u) for u, v in sums.items() if u in allowed and not np.isnan(v).any()]
    scored.sort(key=lambda t: (-t[0], t[1]))
    return scored


def _top(spec: str, m: Any, pool: np.ndarray, protocols: Mapping[str, Protocol], scored_by: Sequence[str]) -> np.ndarray:
    scored = [t for t in _ranked(spec, m[2], pool, protocols, scored_by) if np.isfinite(t[0])]
    return np.sort(np.array([u for _, u in scored[:int(m[1])]], dtype=np.int64))


def _strata(spec: str, m: Any, pool: np.ndarray, protocols: Mapping[str, Protocol], scored_by: Sequence[str]) -> np.ndarray:
    n, bins, seed = int(m[1]), int(m[3] or 10), int(m[4] or 0)
    ranked = np.array([u for _, u in _ranked(spec, m[2], pool, protocols, scored_by)], dtype=np.int64)
    if len(ranked) < bins:
        raise ValueError(f"cells: {spec!r} needs at least {bins} scored cells, the table holds {len(ranked)}")
    rng = np.random.default_rng(seed)
    strata = [rng.permutation(group) for group in np.array_split(ranked, bins)]  # one draw per bin, fixed order
    per_bin = [n // bins + (b < n % bins) for b in range(bins)]
    return np.sort(np.concatenate([group[:k] for group, k in zip(strata, per_bin)]))


def _from_file(path: Path, kind: str) -> np.ndarray:
    if not path.is_file():
        raise ValueError(f"cells: {str(path)!r} is neither a selection ({CELL_SPECS}) nor a readable file")
    sp = space()
    index_of = sp.hash_index
    chosen: set[int] = set()
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"cells: {path}: not a text file of cells (byte {err.start} is not UTF-8)") from None
    for number, line in enumerate(content.splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            h = text if re.fullmatch(r"[0-9a-f]{16}", text) else Cell.from_text(text).hash
        except ValueError as err:
            raise ValueError(f"cells: {path}:{number}: {err}") from None
        if h not in index_of:
            raise ValueError(f"cells: {path}:{number}: unknown cell hash {h}")
        if kind == "forward" and sp.is_backward[index_of[h]]:
            raise ValueError(f"cells: {path}:{number}: {text} is a backward cell; use --kind backward")
        chosen.add(index_of[h])
    if not chosen:
        raise ValueError(f"cells: {path} names no cell")
    return np.array(sorted(chosen), dtype=np.int64)


@dataclass
class WorkItem:
    """A batch of (cell, seed) rows of one protocol, sent to a worker as plain data."""

    stage: str
    protocol: str
    settings: dict[str, Any]
    rows: list[tuple[str, str, int]] = field(default_factory=list)  # (hash, canonical text, seed)
    source: str | None = None  # where a worker loads the dataset from, when not from its name (an .npz path)
    pack: int = 1  # train: networks trained together as one pack (not a setting: it changes no number)

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "protocol": self.protocol, "settings": self.settings, "rows": self.rows,
                "source": self.source, "pack": self.pack}


def plan_items(stage: str, proto: Protocol, hashes: Sequence[str], seeds: Sequence[int],
               shard: tuple[int, int] | None, batch: int, source: str | None = None,
               pack: int = 1) -> tuple[list[WorkItem], int]:
    """Work items for the rows of ``hashes x seeds`` in ``shard`` that ``proto`` lacks; also the rows skipped.
    Each item holds ``batch`` rows (its last fewer) and trains them in packs of ``pack``.

    Rows run in hash order (a cell's seeds together): hashes are uniform pseudo-random, so the rows an
    interrupted build holds are a uniform random subset of its selection, the same one on every rerun.
    """
    done = proto.done()
    sp = space()
    index_of = sp.hash_index
    todo, skipped = [], 0
    for h in sorted(hashes):
        if not in_shard(h, shard):
            continue
        for s in seeds:
            if (h, s) in done:
                skipped += 1
            else:
                todo.append((h, to_text(sp.matrices[index_of[h]]), int(s)))
    items = [WorkItem(stage, proto.id, proto.settings, todo[i:i + batch], source, pack)
             for i in range(0, len(todo), max(1, batch))]
    return items, skipped
