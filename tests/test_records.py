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
from snnbench.names import METRIC_ALIASES
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


# --------------------------------------------------------------------------- NAS-Bench-style access


@pytest.fixture(scope="module")
def digits() -> tuple[Benchmark, Naive, list[int]]:
    bench = Benchmark(dataset="digits")
    rng = np.random.default_rng(1)
    trained = np.flatnonzero(np.isfinite(bench.accuracy["val"]))
    untrained = np.flatnonzero(~np.isfinite(bench.accuracy["val"]))
    views = sorted({*rng.choice(trained, 40, replace=False).tolist(), *untrained[:5].tolist()})
    return bench, Naive(Path(bench.path)), views


def test_indexing_and_iteration_are_the_records(digits: tuple[Benchmark, Naive, list[int]]) -> None:
    bench, _, views = digits
    n = len(bench)
    for i in views:
        assert bench[i] == bench.record(i) == bench[i - n]
        assert bench[np.int64(i)]["hash"] == bench.hashes[i]
    assert bench[-1]["hash"] == bench.hashes[-1] and bench[0]["hash"] == next(iter(bench))["hash"]
    for bad in (n, -n - 1):
        with pytest.raises(IndexError, match="out of range"):
            bench[bad]
    for wrong in ("0303 0033 0003 0000", 1.0, True, slice(0, 2)):
        with pytest.raises(TypeError, match="view index"):
            bench[wrong]  # type: ignore[index]


def _naive_at_epoch(naive: Naive, cell_hash: str, train_id: str, epoch: int, seed: int | None) -> dict[str, Any]:
    """Accuracies at ``epoch``, curves up to it and the time to reach it (the whole training's seconds split in
    proportion to the epochs' own), from the file's rows of the cell."""
    _, _, by_cell = naive.protocols[train_id]
    rows = [r for r in by_cell.get(naive.row_of_hash[cell_hash], []) if seed is None or int(r["seed"]) == seed]
    if not rows:
        return {"accuracy": {"train": None, "val": None, "test": None}, "curves": None, "train_seconds": None}
    mean_curve = {k.split("/", 1)[1]: [sum(float(r[k][e]) for r in rows) / len(rows) for e in range(len(rows[0][k]))]
                  for k in rows[0] if k.startswith("curves/")}
    each = mean_curve["epoch_seconds"]
    total = sum(float(r["train_seconds"]) for r in rows) / len(rows)
    return {"accuracy": {s: _num(mean_curve[f"{s}_acc"][epoch - 1]) for s in ("train", "val", "test")},
            "curves": {k: [_num(x) for x in v[:epoch]] for k, v in mean_curve.items()},
            "train_seconds": total * sum(each[:epoch]) / sum(each)}


def test_records_at_an_epoch_equal_a_naive_read(digits: tuple[Benchmark, Naive, list[int]]) -> None:
    bench, naive, views = digits
    train_id = bench.protocol_ids[1]
    epochs = bench.epochs
    assert epochs == 12 and bench.curve_names == sorted(bench.curve_names) and "val_acc" in bench.curve_names
    for i in views:
        final = bench.record(i)
        for seed in (None, 0, 1):
            for epoch in (1, 4, 7, epochs):
                want = _naive_at_epoch(naive, final["hash"], train_id, epoch, seed)
                try:
                    got = bench.record(i, seed, epoch)
                except api.CellNotFound:  # neither protocol holds the seed
                    assert want["curves"] is None and seed is not None
                    continue
                assert got["epoch"] == epoch and got["seed"] == seed
                _close({k: got[k] for k in want}, want, f"cell {i} seed {seed} epoch {epoch}")
                whole = bench.record(i, seed)
                assert got["scores"] == whole["scores"] and got["params"] == whole["params"]
                assert got["spikes"] == (whole["spikes"] if epoch == epochs else None)  # measured after the last epoch
                if epoch == epochs and got["curves"] is not None:  # the last epoch is the final record
                    assert got["accuracy"] == whole["accuracy"] and got["curves"] == whole["curves"]
                    assert got["train_seconds"] == pytest.approx(whole["train_seconds"], rel=1e-12)
        assert bench.query(final["text"], epoch=3) == bench.record(i, None, 3) == api.query(final["text"], epoch=3)
    for bad in (0, epochs + 1, -1):
        with pytest.raises(ValueError, match=f"1 .. {epochs}"):
            bench.record(0, epoch=bad)
    for wrong in ("3", 3.0, True):
        with pytest.raises(TypeError, match="epoch"):
            bench.record(0, epoch=wrong)  # type: ignore[arg-type]



def test_the_query_command_answers_at_an_epoch(digits: tuple[Benchmark, Naive, list[int]]) -> None:
    """``snnbench query MATRIX --epoch E [--seed S] --json`` prints the API's record at that epoch; a bad epoch is
    one line, exit 2."""
    from click.testing import CliRunner

    from snnbench.cli import main

    bench, naive, views = digits
    text = next(r["text"] for r in map(bench.record, views) if r["seeds"].get("train") == [0, 1])
    for extra, seed in (([], None), (["--seed", "1"], 1)):
        out = CliRunner().invoke(main, ["query", text, "--table", str(bench.path), "--epoch", "5", *extra, "--json"])
        assert out.exit_code == 0, out.output
        assert json.loads(out.stdout) == json.loads(json.dumps(bench.query(text, seed, 5)))
    text_out = CliRunner().invoke(main, ["query", text, "--table", str(bench.path), "--epoch", "5"]).output
    assert f"after epoch 5 of {bench.epochs}" in text_out
    bad = CliRunner().invoke(main, ["query", text, "--table", str(bench.path), "--epoch", str(bench.epochs + 1)])
    assert bad.exit_code == 2 and bad.output.count("\n") == 1 and f"1 .. {bench.epochs}" in bad.output

def test_curve_arrays_and_time_to_epoch_equal_the_records(digits: tuple[Benchmark, Naive, list[int]]) -> None:
    bench, naive, views = digits
    train_id = bench.protocol_ids[1]
    for seed in (None, 0, 1):
        time = bench.time_to_epoch(seed)
        arrays = {name: bench.curve(name, seed) for name in bench.curve_names}
        assert time.shape == (len(bench), bench.epochs)
        for i in views:
            want = _naive_at_epoch(naive, bench.hashes[i], train_id, bench.epochs, seed)
            if want["curves"] is None:
                assert np.isnan(time[i]).all() and all(np.isnan(a[i]).all() for a in arrays.values())
                continue
            for name, values in want["curves"].items():
                assert arrays[name][i].tolist() == pytest.approx([np.nan if x is None else x for x in values], nan_ok=True)
            for epoch in (1, 6, bench.epochs):
                assert time[i, epoch - 1] == pytest.approx(
                    _naive_at_epoch(naive, bench.hashes[i], train_id, epoch, seed)["train_seconds"], rel=1e-12)
    assert np.allclose(bench.time_to_epoch()[:, -1], bench.train_seconds, equal_nan=True, rtol=1e-12)
    with pytest.raises(ValueError, match="expected one of"):
        bench.curve("val_accuracy")
    with pytest.raises(ValueError, match="not 7"):
        bench.curve("val_acc", seed=7)


def test_data_frame_rows_per_cell_and_per_seed(digits: tuple[Benchmark, Naive, list[int]]) -> None:
    bench, naive, views = digits
    score_id, train_id = bench.protocol_ids
    df = bench.to_dataframe(curves=True)
    assert list(df["index"]) == list(range(len(bench))) and list(df["hash"]) == bench.hashes
    for i in views:
        rec = bench.record(i)
        row = df.iloc[i]
        assert row["text"] == rec["text"] and row["kind"] == rec["kind"]
        assert _num(row["val_acc"]) == rec["accuracy"]["val"] and _num(row["score_sahd"]) == rec["scores"]["sahd"]
        if rec["curves"] is not None:
            assert row["curve_val_acc"].tolist() == rec["curves"]["val_acc"]
    per_seed = bench.to_dataframe(seeds=True, curves=True)
    expected = sorted((naive.row_of_hash[h], int(r["seed"])) for pid in (score_id, train_id)
                      for cell, rows in naive.protocols[pid][2].items() for r in rows for h in [naive.hash[cell]])
    got = sorted((naive.row_of_hash[h], int(s)) for h, s in zip(per_seed["hash"], per_seed["seed"]))
    assert got == sorted(set(expected))  # one row per (cell, seed) that either protocol holds
    assert list(per_seed["index"]) == sorted(per_seed["index"])
    for i in views:
        for _, row in per_seed[per_seed["index"] == i].iterrows():
            want = naive_record(naive, row["hash"], score_id, train_id, int(row["seed"]))
            assert _num(row["score_sahd"]) == pytest.approx(want["scores"]["sahd"], rel=1e-12)
            assert _num(row["score_seconds"]) == pytest.approx(want["score_seconds"], rel=1e-12)
            for split in ("train", "val", "test"):
                assert _num(row[f"{split}_acc"]) == pytest.approx(want["accuracy"][split], rel=1e-12)
            assert _num(row["train_seconds"]) == pytest.approx(want["train_seconds"], rel=1e-12)
            assert int(row["params"]) == want["params"]
            if want["curves"] is None:
                assert np.isnan(row["curve_val_acc"]).all()
            else:
                assert row["curve_val_acc"].tolist() == pytest.approx(want["curves"]["val_acc"])
