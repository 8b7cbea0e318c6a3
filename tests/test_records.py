"""Query records of the shipped tables against a naive reader of the HDF5 file (h5py, row by row, no snnbench code)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from snnbench import api
from snnbench.api.benchmark import Benchmark
from snnbench.fields import METRIC_ALIASES
from snnbench.table import SPIKE_LAYERS

TABLES = Path(api.__file__).resolve().parent.parent / "snnbench" / "tables"


def _read_group(group: h5py.Group, prefix: str = "") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, item in group.items():
        if isinstance(item, h5py.Group):
            out.update(_read_group(item, f"{prefix}{name}/"))
        else:
            out[prefix + name] = item[()]
    return out


class Naive:
    """A table read with h5py: per protocol, each cell's rows as ``{column: value}`` dicts, in file order."""

    def __init__(self, path: Path) -> None:
        with h5py.File(path, "r") as f:
            self.hash = [h.decode() for h in f["cells/hash"][()]]
            self.matrix = f["cells/matrix"][()]
            self.protocols: dict[str, tuple[str, dict[str, Any], dict[int, list[dict[str, Any]]]]] = {}
            for pid, g in f["protocols"].items():
                cols = _read_group(g)
                rows: dict[int, list[dict[str, Any]]] = {}
                for i, cell in enumerate(cols["cell"].tolist()):
                    rows.setdefault(cell, []).append({k: v[i] for k, v in cols.items()})
                self.protocols[pid] = (g.attrs["type"], json.loads(g.attrs["settings"]), rows)
        self.row_of_hash = {h: i for i, h in enumerate(self.hash)}


def _num(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _mean(rows: list[dict[str, Any]], key: str) -> Any:
    """Mean of a column over rows (NaN: the protocol has no such column)."""
    return sum(r[key] for r in rows) / len(rows) if key in rows[0] else math.nan


def naive_record(naive: Naive, cell_hash: str, score_id: str | None, train_id: str | None,
                 seed: int | None = None) -> dict[str, Any]:
    """The documented record (docs/api.md) computed field by field from the file's rows of the cell."""
    cell = naive.row_of_hash[cell_hash]
    rec: dict[str, Any] = {"hash": cell_hash, "seed": seed}
    picked, missing = {}, []
    for pid in (score_id, train_id):
        if pid is None:
            continue
        type_, settings, by_cell = naive.protocols[pid]
        rows = by_cell.get(cell, [])
        picked[type_] = (settings, rows, [r for r in rows if seed is None or int(r["seed"]) == seed])
        if not picked[type_][2]:
            missing.append(pid)
    rec["seeds"] = {t: [int(r["seed"]) for r in rows] for t, (_, rows, _) in picked.items()}
    params = None
    if "score" in picked:
        settings, _, rows = picked["score"]
        metrics = [METRIC_ALIASES.get(m, m) for m in settings["score"]["metrics"]]
        stored = settings["score"]["metrics"]
        rec["scores"] = {m: _num(_mean(rows, f"scores/{s}")) if rows else None for m, s in zip(metrics, stored)}
        rec["singular"] = {m: any(bool(r[f"singular/{s}"]) for r in rows) if rows else None for m, s in zip(metrics, stored)}
        rec["metric_seconds"] = {m: _num(_mean(rows, f"metric_seconds/{s}")) if rows else None
                                 for m, s in zip(metrics, stored)}
        rec["score_seconds"] = _num(_mean(rows, "seconds")) if rows else None
        params = _num(_mean(rows, "params")) if rows else None
    if "train" in picked:
        _, _, rows = picked["train"]
        if rows:
            rec["accuracy"] = {"train": _num(_mean([{"a": r["curves/train_acc"][-1]} for r in rows], "a")),
                               "val": _num(_mean(rows, "val_acc")), "test": _num(_mean(rows, "test_acc"))}
            names = sorted(k.split("/", 1)[1] for k in rows[0] if k.startswith("curves/"))
            rec["curves"] = {k: [_num(x) for x in _mean(rows, f"curves/{k}")] for k in names}
            rec["train_seconds"] = _num(_mean(rows, "train_seconds"))
            params = _num(_mean(rows, "params"))
            per_image, rate = _mean(rows, "spike_layers/spikes_per_image"), _mean(rows, "spike_layers/rate")
            rec["spikes"] = {"per_image": _num(_mean(rows, "spikes_per_image")), "rate": _num(_mean(rows, "spike_rate")),
                             "layers": {SPIKE_LAYERS[k]: {"per_image": float(per_image[k]), "rate": float(rate[k])}
                                        for k in range(len(SPIKE_LAYERS)) if math.isfinite(per_image[k])}}
        else:
            rec["accuracy"] = {"train": None, "val": None, "test": None}
            rec["curves"] = rec["spikes"] = rec["train_seconds"] = None
    rec["params"] = None if params is None else int(params)
    rec["missing"] = missing
    rec["text"] = " ".join("".join(str(x) for x in row) for row in naive.matrix[cell])
    return rec


def _close(got: Any, want: Any, where: str) -> None:
    """Equal, floats to 1e-12 relative (the view sums seeds in another order)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{where}: {got} != {want}"
        for k in want:
            _close(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: {got} != {want}"
        for k, (g, w) in enumerate(zip(got, want)):
            _close(g, w, f"{where}[{k}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-12, abs=0), f"{where}: {got} != {want}"
    else:
        assert got == want and type(got) is type(want), f"{where}: {got!r} != {want!r}"


@pytest.mark.parametrize("dataset", ["digits", "cifar10"])
def test_records_equal_a_naive_h5py_read(dataset: str) -> None:
    bench = Benchmark(dataset=dataset)
    naive = Naive(Path(bench.path))
    ids = bench.metadata
    score_id = next((p for p, m in ids.items() if m["type"] == "score"), None)
    train_id = next((p for p, m in ids.items() if m["type"] == "train"), None)
    rng = np.random.default_rng(0)
    trained_backward = np.flatnonzero((bench.kind_array == 1) & np.isfinite(bench.accuracy["test"]))
    views = sorted({*rng.choice(len(bench), 150, replace=False).tolist(), *trained_backward[:40].tolist(), 0, len(bench) - 1})
    seeds = sorted({int(s) for m in ids.values() for s in m["seeds"]})
    for u in views:
        rec = bench.record(u)
        json.dumps(rec, allow_nan=False)
        want = naive_record(naive, rec["hash"], score_id, train_id)
        _close({k: rec[k] for k in want}, want, f"{dataset} cell {u}")
        for seed in seeds:
            want = naive_record(naive, rec["hash"], score_id, train_id, seed)
            if len(want["missing"]) == len(ids):
                with pytest.raises(api.CellNotFound, match=f"no row for seed {seed}"):
                    bench.record(u, seed)
                continue
            got = bench.record(u, seed)
            _close({k: got[k] for k in want}, want, f"{dataset} cell {u} seed {seed}")
