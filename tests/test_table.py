"""The HDF5 table: round trip, layout, crash-safe journal, single writer, merge, and the promised errors."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from snnbench.cli import main
from snnbench.space import Cell, canonical_batch, prune_batch, raw_matrices, space
from snnbench.table import (
    FORMAT, SCHEMA_VERSION, SPIKE_LAYERS, TableError, TableWriter, cell_hashes, default_table_path, journal_path, merge_tables, open_table,
    protocol_id, records_equal, spike_layer_values,
)

CELLS = ["0302 0030 3003 0000", "0101 0010 0001 0000", "0004 0000 0000 0000", "0232 0000 0001 0000", "0302 0030 0003 0000"]
ENV = {"python": "3.x"}


def _records(cells: list[str], seeds: tuple[int, ...] = (0,), scale: float = 1.0) -> list[dict]:
    """Records with every column type: float, int, bool, text and a per-row float vector."""
    out = []
    for text in cells:
        c = Cell.from_text(text)
        for s in seeds:
            x = int(c.hash[:6], 16) / 1e6 * scale + s
            out.append({"hash": c.hash, "seed": s, "values": {
                "scores/sahd": x, "params": len(c.edges()) + s, "singular/sahd": bool(s % 2),
                "note": f"cell {c.text} ü", "curves/val_acc": [x, x / 2, float("nan")]}})
    return out


def _write(path: Path, records: list[dict], settings: dict | None = None, shard=None) -> str:
    with TableWriter(path) as w:
        p = w.ensure_protocol("score", settings or {"metric": "sahd"}, command="snnbench build t", environment=ENV, shard=shard)
        w.add(p.id, records)
        return p.id


def test_round_trip_layout_and_row_order(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    recs = _records(CELLS, seeds=(1, 0))
    pid = _write(path, list(reversed(recs)))
    t = open_table(path)
    assert t.attrs["format"] == FORMAT and t.attrs["schema_version"] == SCHEMA_VERSION
    p = t.protocol(pid[:5])
    assert p.settings == {"metric": "sahd"} and p.commands == ["snnbench build t"] and p.environments == [ENV]
    # rows sorted by (space index, seed), whatever order they were added in
    sp = space()
    order = sorted(((sp.hashes.index(r["hash"]), r["seed"]) for r in recs))
    got = [(sp.hashes.index(h.decode()), int(s)) for h, s in zip(p.hash, p.seed)]
    assert got == order
    by_key = {(r["hash"], r["seed"]): r["values"] for r in recs}
    for i, (h, s) in enumerate(zip(p.hash, p.seed)):
        v = by_key[(h.decode(), int(s))]
        assert p.columns["scores/sahd"][i] == v["scores/sahd"]
        assert p.columns["params"][i] == v["params"] and p.columns["params"].dtype == np.int64
        assert p.columns["singular/sahd"][i] == v["singular/sahd"] and p.columns["singular/sahd"].dtype == bool
        assert p.columns["note"][i] == v["note"]
        np.testing.assert_array_equal(p.columns["curves/val_acc"][i], v["curves/val_acc"])
    # /cells: canonical matrix, kind and raw counts by brute force over the raw spaces
    cells = t.cells
    assert sorted(cells["hash"].astype(str)) == sorted({Cell.from_text(c).hash for c in CELLS})
    raw_canon = {k: canonical_batch(prune_batch(raw_matrices(k))) for k in ("forward", "backward")}
    for i, h in enumerate(cells["hash"].astype(str)):
        text = next(c for c in CELLS if Cell.from_text(c).hash == h)
        canon = Cell.from_text(text).canonical
        np.testing.assert_array_equal(cells["matrix"][i], canon.matrix)
        assert cells["kind"][i] == (1 if Cell.from_text(text).kind == "backward" else 0)
        for k in ("forward", "backward"):
            assert cells[f"raw_{k}"][i] == (raw_canon[k] == canon.matrix).all(axis=(1, 2)).sum()
    # raw HDF5 view: chunked, compressed, checksummed, resizable; text is UTF-8; nothing pickled (no opaque types)
    with h5py.File(path) as f:
        ds = f[f"protocols/{pid}/scores/sahd"]
        assert ds.chunks and ds.compression == "gzip" and ds.fletcher32 and ds.maxshape == (None,)
        note = f[f"protocols/{pid}/note"]  # text: UTF-8, fixed width, compressed like the numbers
        assert h5py.check_string_dtype(note.dtype).encoding == "utf-8" and note.compression == "gzip" and note.fletcher32
        assert f["cells/hash"].dtype == np.dtype("S16")
        assert json.loads(f[f"protocols/{pid}"].attrs["settings"]) == {"metric": "sahd"}

        def no_opaque(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):
                assert obj.dtype.kind != "V", name

        f.visititems(no_opaque)


def test_protocol_id_is_stable_and_order_free() -> None:
    a = protocol_id("score", {"x": 1, "y": {"b": 2, "a": 3}})
    assert a == protocol_id("score", {"y": {"a": 3, "b": 2}, "x": 1})
    assert a != protocol_id("train", {"x": 1, "y": {"b": 2, "a": 3}}) and a != protocol_id("score", {"x": 2, "y": {"b": 2, "a": 3}})
    assert len(a) == 12 and int(a, 16) >= 0


def test_default_table_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SNNBENCH_TABLE", str(tmp_path / "x.h5"))
    assert default_table_path() == tmp_path / "x.h5"
    monkeypatch.delenv("SNNBENCH_TABLE")
    assert default_table_path() == Path.home() / ".cache" / "snnbench" / "snnbench.h5"


def test_journal_survives_a_crash_and_a_torn_line(tmp_path: Path) -> None:
    """A writer that dies before folding keeps its fsync'd results; a torn last line is dropped."""
    path = tmp_path / "t.h5"
    recs = _records(CELLS[:3])
    script = textwrap.dedent(f"""
        import json, os
        from snnbench.table import TableWriter
        recs = json.loads({json.dumps(json.dumps(recs))})
        w = TableWriter({str(path)!r})
        p = w.ensure_protocol("score", {{"metric": "sahd"}}, command="c", environment={{}}, shard=None)
        w.add(p.id, recs[:2])
        w.add(p.id, recs[2:])
        os._exit(0)  # dies without folding or closing
    """)
    subprocess.run([sys.executable, "-c", script], check=True)
    before = open_table(path)  # readers always see a complete file (here: the empty first fold)
    assert all(len(p) == 0 for p in before.protocols.values())
    with open(str(path) + ".journal", "a") as fh:
        fh.write('{"protocol": "abc", "hash": "00')  # a torn write from the crash
    with TableWriter(path) as w:
        assert w.replayed == 3
    p = next(iter(open_table(path).protocols.values()))
    assert len(p) == 3 and not Path(str(path) + ".journal").exists()
    ref = tmp_path / "ref.h5"
    _write(ref, recs)
    assert records_equal(p, next(iter(open_table(ref).protocols.values())))


def test_torn_line_survives_a_second_crash(tmp_path: Path) -> None:
    """A torn last line is cut off the journal when it is replayed, so a row journalled after it (then a second
    crash before any fold) is not glued onto it: the next writer replays that row instead of refusing the journal."""
    path = tmp_path / "t.h5"
    recs = _records(CELLS[:2])
    pid = _write(path, recs[:1])
    with open(str(path) + ".journal", "a") as fh:
        fh.write('{"protocol": "abc", "hash": "00')  # a torn write from a first crash
    script = textwrap.dedent(f"""
        import json, os
        from snnbench.table import TableWriter
        w = TableWriter({str(path)!r})  # nothing to replay: no fold
        w.add({pid!r}, json.loads({json.dumps(json.dumps(recs[1:]))}))
        os._exit(0)  # the second crash, before any fold
    """)
    subprocess.run([sys.executable, "-c", script], check=True)
    with TableWriter(path) as w:
        assert w.replayed == 1
    ref = tmp_path / "ref.h5"
    _write(ref, recs)
    assert records_equal(open_table(path).protocols[pid], open_table(ref).protocols[pid])


def test_single_writer_and_rows_are_keyed(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    with TableWriter(path) as w:
        with pytest.raises(TableError, match="another process is writing"):
            TableWriter(path)
        p = w.ensure_protocol("score", {"m": 1}, command="c", environment=ENV, shard=None)
        w.add(p.id, _records(CELLS[:2]))
        w.add(p.id, _records(CELLS[:3], scale=2.0))  # first value wins for keys already stored
        with pytest.raises(ValueError, match="columns"):
            w.add(p.id, [{"hash": Cell.from_text(CELLS[3]).hash, "seed": 0, "values": {"other": 1.0}}])
    assert sorted(q.name for q in tmp_path.iterdir()) == ["t.h5"]  # a clean exit leaves no lock file (nor journal)
    p = next(iter(open_table(path).protocols.values()))
    assert len(p) == 3
    first = {r["hash"]: r["values"]["scores/sahd"] for r in _records(CELLS[:2])}
    for h, v in zip(p.hash, p.columns["scores/sahd"]):
        if h.decode() in first:
            assert v == first[h.decode()]


def _two_shards_and_whole(tmp_path: Path) -> list[dict]:
    """Writes a.h5 and b.h5 (shards 0/2 and 1/2 of the records, by position) and all.h5 (every record)."""
    recs = _records(CELLS, seeds=(0, 1))
    half = {r["hash"] for r in recs[: len(recs) // 2]}
    _write(tmp_path / "a.h5", [r for r in recs if r["hash"] in half], shard=(0, 2))
    _write(tmp_path / "b.h5", [r for r in recs if r["hash"] not in half], shard=(1, 2))
    _write(tmp_path / "all.h5", recs)
    return recs


def test_merge_joins_shards_and_refuses_other_settings(tmp_path: Path) -> None:
    recs = _two_shards_and_whole(tmp_path)
    merged = merge_tables(tmp_path / "m.h5", [tmp_path / "a.h5", tmp_path / "b.h5"])
    whole = open_table(tmp_path / "all.h5")
    (pid, p), = merged.protocols.items()
    assert p.shards is None and records_equal(p, whole.protocols[pid])
    np.testing.assert_array_equal(merged.cells["hash"], whole.cells["hash"])
    _write(tmp_path / "c.h5", recs[:2], settings={"metric": "hd"}, shard=(1, 2))
    with pytest.raises(TableError, match=r"c\.h5: built with different settings .*metric: 'hd' vs 'sahd'"):
        merge_tables(tmp_path / "m2.h5", [tmp_path / "a.h5", tmp_path / "c.h5"])
    with pytest.raises(TableError, match="already exists"):
        merge_tables(tmp_path / "m.h5", [tmp_path / "a.h5"])
    partial = merge_tables(tmp_path / "m3.h5", [tmp_path / "a.h5"])
    assert next(iter(partial.protocols.values())).shards == {"count": 2, "indices": [0]}
    _write(tmp_path / "empty.h5", [], settings={"metric": "hd"}, shard=(1, 2))  # a protocol with no rows yet
    assert len(next(iter(open_table(tmp_path / "empty.h5").protocols.values()))) == 0
    with pytest.raises(TableError, match=r"empty\.h5: built with different settings .*metric: 'hd' vs 'sahd'"):
        merge_tables(tmp_path / "m4.h5", [tmp_path / "a.h5", tmp_path / "empty.h5"])


def test_merge_union_keeps_protocols_of_some_inputs(tmp_path: Path) -> None:
    recs = _two_shards_and_whole(tmp_path)
    _write(tmp_path / "c.h5", recs[:3], settings={"metric": "hd"})
    merged = merge_tables(tmp_path / "m.h5", [tmp_path / "a.h5", tmp_path / "c.h5", tmp_path / "b.h5"], union=True)
    whole, other = open_table(tmp_path / "all.h5"), open_table(tmp_path / "c.h5")
    assert set(merged.protocols) == set(whole.protocols) | set(other.protocols) and len(merged.protocols) == 2
    (sahd,), (hd,) = whole.protocols, other.protocols
    assert merged.protocols[sahd].shards is None and records_equal(merged.protocols[sahd], whole.protocols[sahd])
    assert records_equal(merged.protocols[hd], other.protocols[hd]) and merged.protocols[hd].settings == other.protocols[hd].settings
    with pytest.raises(TableError, match="different settings"):  # strict without union
        merge_tables(tmp_path / "m2.h5", [tmp_path / "a.h5", tmp_path / "c.h5"])


def _timed(records: list[dict], seconds: float) -> list[dict]:
    """The records with a wall-clock ``seconds`` column (``seconds``, ``seconds + 1``, ...)."""
    return [{**r, "values": {**r["values"], "seconds": seconds + k}} for k, r in enumerate(records)]


def _own(records: list[dict], seconds: float) -> list[dict]:
    """The records with per-metric scoring seconds ``metric_seconds/sahd`` (``seconds``, ``seconds + 1``, ...)."""
    return [{**r, "values": {**r["values"], "metric_seconds/sahd": seconds + k}} for k, r in enumerate(records)]


def test_per_metric_seconds_are_optional_and_read_nan_where_not_stored(tmp_path: Path) -> None:
    """``metric_seconds/*`` may be absent from a protocol's older rows (or from some inputs of a merge): those
    rows read NaN; every other column must still be carried by every row, and the optional ones hold numbers."""
    old, new = _records(CELLS[:3]), _records(CELLS[3:])
    pid = _write(tmp_path / "t.h5", old)  # a table built before the column existed
    with TableWriter(tmp_path / "t.h5") as w:
        w.add(pid, _own(new, 5.0))
    p = open_table(tmp_path / "t.h5").protocols[pid]
    want = {Cell.from_text(c).hash: np.nan for c in CELLS[:3]} | {r["hash"]: 5.0 + k for k, r in enumerate(new)}
    got = dict(zip(p.hash.astype(str), p.columns["metric_seconds/sahd"].tolist()))
    assert got.keys() == want.keys() and all(got[h] == want[h] or (np.isnan(got[h]) and np.isnan(want[h])) for h in want)
    assert p.columns["metric_seconds/sahd"].dtype == np.float64
    # the reverse: stored rows carry it, a new row does not
    more = Cell.from_text("0001 0001 0001 0000").hash
    with TableWriter(tmp_path / "t.h5") as w:
        w.add(pid, [{"hash": more, "seed": 0, "values": old[0]["values"]}])
    p = open_table(tmp_path / "t.h5").protocols[pid]
    assert np.isnan(p.columns["metric_seconds/sahd"][p.hash.astype(str).tolist().index(more)]) and len(p) == 6
    # a required column missing, or a non-number in an optional one: refused, nothing added
    with TableWriter(tmp_path / "t.h5") as w:
        broken = {k: v for k, v in old[1]["values"].items() if k != "params"}
        with pytest.raises(ValueError, match="has columns"):
            w.add(pid, [{"hash": old[1]["hash"], "seed": 1, "values": broken}])
        with pytest.raises(ValueError, match=r"column 'metric_seconds/sahd' holds 'fast', expected seconds"):
            w.add(pid, [{"hash": old[1]["hash"], "seed": 1, "values": {**old[1]["values"], "metric_seconds/sahd": "fast"}}])
    assert len(open_table(tmp_path / "t.h5").protocols[pid]) == 6
    # merge: an input without the column and one with it recomputed (wall clock: not compared, the first kept)
    _write(tmp_path / "a.h5", old)
    _write(tmp_path / "b.h5", _own(old + new, 9.0))
    for first, second, expect in (("a", "b", np.nan), ("b", "a", 9.0)):
        m = merge_tables(tmp_path / f"m{first}.h5", [tmp_path / f"{first}.h5", tmp_path / f"{second}.h5"]).protocols[pid]
        assert len(m) == 5
        col = dict(zip(m.hash.astype(str), m.columns["metric_seconds/sahd"].tolist()))
        assert np.array_equal(col[old[0]["hash"]], expect, equal_nan=True) and col[new[0]["hash"]] == 12.0


def test_merge_refuses_a_row_that_two_inputs_hold_with_different_values(tmp_path: Path) -> None:
    """A (protocol, cell, seed) row held by several inputs must agree: a recomputation differing only in its
    wall-clock columns merges (the first input's kept), other values are refused with one line, never picked."""
    recs = _records(CELLS[:3])
    pid = _write(tmp_path / "a.h5", _timed(recs, 1.0))
    _write(tmp_path / "again.h5", _timed(recs + _records(CELLS[3:]), 50.0))  # the same rows recomputed, and two more
    merged = merge_tables(tmp_path / "m.h5", [tmp_path / "a.h5", tmp_path / "again.h5"]).protocols[pid]
    first = {r["hash"]: r["values"]["seconds"] for r in _timed(recs, 1.0)}
    assert len(merged) == len(CELLS) and all(merged.columns["seconds"][i] == first[h.decode()]
                                             for i, h in enumerate(merged.hash) if h.decode() in first)
    other = [dict(r) for r in recs]
    other[1] = {**recs[1], "values": {**recs[1]["values"], "scores/sahd": recs[1]["values"]["scores/sahd"] + 1e-9}}
    _write(tmp_path / "b.h5", _timed(other, 1.0))
    match = (rf"b\.h5: protocol {pid}: the row for cell {recs[1]['hash']} seed 0 differs from the one in \S*a\.h5 "
             r"\(column 'scores/sahd'\); refusing to merge")
    with pytest.raises(TableError, match=match):
        merge_tables(tmp_path / "m2.h5", [tmp_path / "a.h5", tmp_path / "b.h5"])
    for union in ([], ["--union"]):
        result = CliRunner().invoke(main, ["merge", *union, str(tmp_path / "m3.h5"), str(tmp_path / "a.h5"), str(tmp_path / "b.h5")])
        assert result.exit_code == 2 and re.search(match, result.output) and result.output.count("\n") == 1, result.output
    assert not (tmp_path / "m2.h5").exists() and not (tmp_path / "m3.h5").exists()


def test_merge_into_a_missing_folder_is_one_clear_line(tmp_path: Path) -> None:
    _write(tmp_path / "a.h5", _records(CELLS[:2]))
    out = tmp_path / "nowhere" / "out.h5"
    result = CliRunner().invoke(main, ["merge", str(out), str(tmp_path / "a.h5")])
    assert result.exit_code == 2 and result.output == f"Error: {out}: cannot write the merged table: no such folder {out.parent}\n"
    assert not out.parent.exists()


# --------------------------------------------------------------------------- promised errors


@pytest.fixture()
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.h5"
    _write(path, _records(CELLS))
    return path


def _one_line_error(path: Path, match: str) -> None:
    with pytest.raises(TableError, match=match) as info:
        open_table(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg
    result = CliRunner().invoke(main, ["info", str(path)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: ") and str(path) in result.output and result.output.count("\n") == 1


def test_missing_and_non_hdf5_files(tmp_path: Path) -> None:
    _one_line_error(tmp_path / "nope.h5", "no such table file")
    text = tmp_path / "notes.h5"
    text.write_text("hello\n")
    _one_line_error(text, "not an HDF5 file")
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    _one_line_error(empty, "not an HDF5 file")


def test_foreign_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(3)
    _one_line_error(path, "foreign HDF5 file")
    before = path.read_bytes()
    result = CliRunner().invoke(main, ["build", str(path), "--cells", "sample:2", "--train-epochs", "0", "--workers", "0", "--quiet"])
    assert result.exit_code == 2 and "foreign HDF5 file" in result.output and result.output.count("\n") == 1
    assert path.read_bytes() == before  # a build never overwrites a file it cannot read
    text = tmp_path / "notes.h5"
    text.write_text("hello\n")
    result = CliRunner().invoke(main, ["build", str(text), "--cells", "sample:2", "--train-epochs", "0", "--workers", "0", "--quiet"])
    assert result.exit_code == 2 and "not an HDF5 file" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.h5", "notes.h5"]  # no lock or journal beside them


def test_newer_schema(good: Path) -> None:
    with h5py.File(good, "r+") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1
    _one_line_error(good, "newer snnbench")


def test_truncated(good: Path) -> None:
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    _one_line_error(good, "truncated or corrupt")


def test_corrupt_chunk_is_detected_by_checksum(good: Path) -> None:
    with h5py.File(good) as f:
        pid = next(iter(f["protocols"]))
        offset = f[f"protocols/{pid}/scores/sahd"].id.get_chunk_info(0).byte_offset
    with open(good, "r+b") as fh:
        fh.seek(offset + 3)
        byte = fh.read(1)
        fh.seek(offset + 3)
        fh.write(bytes([byte[0] ^ 0xFF]))
    _one_line_error(good, "corrupt table")


def _replace(g: h5py.Group, name: str, data: np.ndarray) -> None:
    del g[name]
    g.create_dataset(name, data=data)


def _unknown_hash(f: h5py.File, g: h5py.Group) -> str:
    """Make row 0 of /cells a matrix that is no cell of the space (no edge 0 -> 3), with its own hash: a consistent
    row naming no cell. Returns that hash."""
    matrix, hashes, kind = f["cells/matrix"][()], f["cells/hash"][()], f["cells/kind"][()]
    matrix[0] = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    hashes[0], kind[0] = cell_hashes(matrix[:1])[0], 0
    assert hashes[0].decode() not in space().hashes
    for name, data in (("matrix", matrix), ("hash", hashes), ("kind", kind)):
        _replace(f["cells"], name, data)
    return hashes[0].decode()


def _malformed_hash(f: h5py.File, g: h5py.Group) -> None:
    hashes = f["cells/hash"][()]
    hashes[0] = b"0123456789abcdeZ"
    _replace(f["cells"], "hash", hashes)


def _duplicate_key(f: h5py.File, g: h5py.Group) -> None:
    """Point another row (every seed is 0) at the cell of ``CELLS[0]``: one protocol holding that row twice."""
    cell = g["cell"][()]
    row = list(f["cells/hash"][()]).index(Cell.from_text(CELLS[0]).hash.encode())
    assert (g["seed"][()] == 0).all() and (cell == row).sum() == 1
    cell[np.flatnonzero(cell != row)[-1]] = row
    _replace(g, "cell", cell)


@pytest.mark.parametrize("damage, match", [
    (lambda f, g: _replace(g, "cell", g["cell"][()].astype(np.float64)), r"'cell' has dtype float64 and shape \(5,\), expected 1-D integers"),
    (lambda f, g: _replace(g, "cell", g["cell"][()].reshape(-1, 1)), r"'cell' has dtype int32 and shape \(5, 1\), expected 1-D integers"),
    (lambda f, g: _replace(g, "seed", g["seed"][()][:-1]), "column 'seed' has 4 rows, expected 5"),
    (_malformed_hash, r"/cells/hash: b'0123456789abcdeZ' is not 16 hex digits"),
    (_duplicate_key, rf"more than one row for cell {Cell.from_text(CELLS[0]).hash} seed 0"),
    (lambda f, g: _replace(g["scores"], "sahd", np.stack([g["scores/sahd"][()]] * 3, axis=1)),
     r"column 'scores/sahd' has dtype float64 and shape \(5, 3\), expected 1-D numbers"),
    (lambda f, g: _replace(g, "params", np.array([b"x"] * len(g["params"]))),
     r"column 'params' has dtype object and shape \(5,\), expected 1-D numbers"),
    (lambda f, g: _replace(g["curves"], "val_acc", g["curves/val_acc"][()][:, 0]),
     r"column 'curves/val_acc' has dtype float64 and shape \(5,\), expected 2-D numbers"),
], ids=["float-cell", "2d-cell", "short-seed", "malformed-hash", "duplicate-key", "2d-score", "text-params", "1d-curve"])
def test_inconsistent_datasets_are_one_line_errors(good: Path, damage: Callable[[h5py.File, h5py.Group], None], match: str) -> None:
    """Key datasets of the wrong type or length and malformed hashes are refused on open, so info, merge and build
    stop with one line instead of a traceback (or, for build, a journal no fold can write)."""
    with h5py.File(good, "r+") as f:
        damage(f, f["protocols"][next(iter(f["protocols"]))])
    _one_line_error(good, f"corrupt table \\(.*{match}")
    out = good.with_name("merged.h5")
    result = CliRunner().invoke(main, ["merge", str(out), str(good)])
    assert result.exit_code == 2 and re.search(match, result.output) and result.output.count("\n") == 1, result.output
    assert not out.exists()


def test_a_hash_outside_the_space_is_refused_before_anything_is_written(good: Path) -> None:
    """A well-formed hash that names no cell: opening to read is left fast (no space lookup), but merge and a
    writer (hence build) refuse the table with one line before writing anything."""
    with h5py.File(good, "r+") as f:
        unknown = _unknown_hash(f, f["protocols"][next(iter(f["protocols"]))])
    before = good.read_bytes()
    match = rf"/cells/hash: '{unknown}' is not a cell of the space"
    with pytest.raises(TableError, match=match):
        TableWriter(good)
    out = good.with_name("merged.h5")
    result = CliRunner().invoke(main, ["merge", str(out), str(good)])
    assert result.exit_code == 2 and re.search(match, result.output) and result.output.count("\n") == 1, result.output
    assert not out.exists() and good.read_bytes() == before and not journal_path(good).exists()


def test_a_table_reached_through_a_symbolic_link_is_updated_in_place(tmp_path: Path) -> None:
    """Writing through a link replaces its target and keeps the link (os.replace on the link itself would have
    turned it into a new file and left the target stale); lock and journal sit by the target."""
    real, link = tmp_path / "data" / "t.h5", tmp_path / "t.h5"
    with TableWriter(real) as w:
        p = w.ensure_protocol("score", {"m": 1}, command="c", environment=ENV, shard=None)
        w.add(p.id, _records(CELLS[:2]))
    link.symlink_to(real)
    with TableWriter(link) as w:
        assert w.journal_path == journal_path(link) == journal_path(real) == real.with_name("t.h5.journal")
        w.add(p.id, _records(CELLS[2:4]))
    assert link.is_symlink() and len(open_table(real).protocols[p.id]) == 4
    assert not (tmp_path / "t.h5.journal").exists() and not (tmp_path / "t.h5.lock").exists()


def test_a_lock_whose_file_was_removed_meanwhile_is_retaken_on_the_current_file(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer that opened ``<table>.lock`` just before its holder removed it (a clean exit) locks that removed file:
    it must not count as holding the table's lock, since the next writer creates and locks a new file. It retries on
    the file the name links; a writer's lock is then the only lock on that file."""
    import fcntl

    import snnbench.table as table_module

    path = tmp_path / "t.h5"
    name = tmp_path / "t.h5.lock"
    calls: list[int] = []
    real = fcntl.flock

    def flock(fd, op):  # the holder exits between this writer's open and its flock
        calls.append(os.fstat(fd if isinstance(fd, int) else fd.fileno()).st_ino)
        if len(calls) == 1:
            os.unlink(name)
        return real(fd, op)

    name.touch()  # the holder's lock file
    monkeypatch.setattr(table_module.fcntl, "flock", flock)
    with TableWriter(path) as w:
        assert len(calls) == 2  # retried on the new file (its inode number may be the freed one)
        assert os.fstat(w._lock.fileno()).st_ino == name.stat().st_ino == calls[1]
        monkeypatch.setattr(table_module.fcntl, "flock", real)
        with pytest.raises(TableError, match="another process is writing"):
            TableWriter(path)
    assert not name.exists()


def test_a_writer_refuses_rows_of_a_cell_outside_the_space(tmp_path: Path) -> None:
    """Rows naming no cell of the space are refused before they are journalled (no fold could write them)."""
    path = tmp_path / "t.h5"
    with TableWriter(path) as w:
        p = w.ensure_protocol("score", {"m": 1}, command="c", environment=ENV, shard=None)
        w.add(p.id, _records(CELLS[:2]))
        journal = w.journal_path.read_bytes()
        bad = _records(CELLS[2:3])[0] | {"hash": "0123456789abcdef"}
        with pytest.raises(TableError, match="rows for '0123456789abcdef', which is not a cell of the space"):
            w.add(p.id, [*_records(CELLS[3:4]), bad])
        assert w.journal_path.read_bytes() == journal and len(w.protocols[p.id]) == 2
    assert len(open_table(path).protocols[p.id]) == 2


def test_failed_fold_keeps_results_in_the_journal(tmp_path: Path) -> None:
    """A fold that cannot write (unwritable directory) raises, and the journalled rows survive it."""
    d = tmp_path / "d"
    d.mkdir()
    path = d / "t.h5"
    w = TableWriter(path)
    p = w.ensure_protocol("score", {"m": 1}, command="c", environment=ENV, shard=None)
    w.add(p.id, _records(CELLS[:2]))
    if os.geteuid() == 0:  # root ignores directory permissions: make the temp-file name a directory instead
        Path(f"{path}.tmp-{os.getpid()}").mkdir()
    else:
        d.chmod(0o500)
    try:
        with pytest.raises(TableError, match="cannot write the table"):
            w.fold()
    finally:
        d.chmod(0o700)
        if Path(f"{path}.tmp-{os.getpid()}").is_dir():
            Path(f"{path}.tmp-{os.getpid()}").rmdir()
    w._lock.close()  # the process "dies" here, its journal intact
    with TableWriter(path) as w2:
        assert w2.replayed == 2
    assert len(next(iter(open_table(path).protocols.values()))) == 2


@pytest.mark.parametrize("mode", [0o640, 0o600])
def test_a_fold_keeps_the_table_files_permissions(tmp_path: Path, mode: int) -> None:
    """The new file that replaces the table takes the table's mode (the temporary file had the umask's 0644)."""
    path = tmp_path / "t.h5"
    pid = _write(path, _records(CELLS[:2]))
    path.chmod(mode)
    umask = os.umask(0o022)
    try:
        _write(path, _records(CELLS[2:4]))
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == mode and len(open_table(path).protocols[pid]) == 4


def test_a_read_only_table_is_refused_before_anything_is_computed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A table file the user may not write is refused by a writer (hence a build) with one line, and left as it is."""
    path = tmp_path / "t.h5"
    _write(path, _records(CELLS[:2]))
    assert not path.with_name("t.h5.lock").exists()  # the first writer removed its lock; a refused writer makes none
    path.chmod(0o444)
    if os.geteuid() == 0:  # root may write any file: have os.access answer as for another user
        access = os.access
        monkeypatch.setattr(os, "access", lambda p, m, **kw: m != os.W_OK and access(p, m, **kw) if Path(p).resolve() == path.resolve() else access(p, m, **kw))
    before = path.read_bytes()
    with pytest.raises(TableError, match=r"t\.h5: the table file is read-only \(no write permission\); refusing to replace it"):
        _write(path, _records(CELLS[2:4]))
    result = CliRunner().invoke(main, ["build", str(path), "--cells", "sample:2", "--train-epochs", "0", "--workers", "0", "--quiet"])
    assert result.exit_code == 2 and "read-only" in result.output and result.output.count("\n") == 1, result.output
    assert path.read_bytes() == before and stat.S_IMODE(path.stat().st_mode) == 0o444
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.h5"]  # no lock or journal beside it


def _row_line(pid: str, record: dict) -> str:
    return json.dumps({"protocol": pid, **record})


@pytest.mark.parametrize("line, problem", [
    ("[1, 2]", r"a JSON list, expected an object"),
    ('{"x": 1}', r"fields \['x'\], expected a protocol definition or a row"),
    ('{"protocol_def": {"id": "a"}}', r"protocol definition without the fields"),
    ("UNKNOWN_HASH", r"row for '0123456789abcdef', which is not a cell of the space"),
    ("STRING_SEED", r"seed '0' is not a 64-bit integer"),
    ("OTHER_COLUMNS", r"protocol \w{12}: record for cell \w{16} has columns \['x'\], stored rows have"),
    ("OTHER_PROTOCOL", r"names unknown protocol 'ffffffffffff'"),
], ids=["list", "other-object", "short-protocol-def", "unknown-hash", "string-seed", "other-columns", "unknown-protocol"])
def test_a_journal_line_of_the_wrong_shape_is_a_one_line_error(tmp_path: Path, line: str, problem: str) -> None:
    """A journal line that is JSON but not a row or protocol definition the writer wrote: the next writer refuses
    it naming the journal and the line, and leaves table and journal as they are (no KeyError or TypeError)."""
    path = tmp_path / "t.h5"
    recs = _records(CELLS[:3])
    pid = _write(path, recs[:1])
    bad = {"UNKNOWN_HASH": _row_line(pid, {**recs[2], "hash": "0123456789abcdef"}),
           "STRING_SEED": _row_line(pid, {**recs[2], "seed": "0"}),
           "OTHER_COLUMNS": _row_line(pid, {**recs[2], "values": {"x": 1.0}}),
           "OTHER_PROTOCOL": _row_line("ffffffffffff", recs[2])}.get(line, line)
    journal = journal_path(path)
    journal.write_text(_row_line(pid, recs[1]) + "\n" + bad + "\n")
    table, lines = path.read_bytes(), journal.read_bytes()
    with pytest.raises(TableError, match=rf"^{re.escape(str(journal))}: corrupt journal line 2 \({problem}") as info:
        TableWriter(path)
    assert "\n" not in str(info.value)
    assert path.read_bytes() == table and journal.read_bytes() == lines


def test_journal_rows_whose_values_cannot_form_columns_are_refused(tmp_path: Path) -> None:
    """Rows that are each well formed but cannot share a column (text where numbers are stored) are refused
    naming the journal, before any fold: table and journal stay as they are."""
    path = tmp_path / "t.h5"
    recs = _records(CELLS[:2])
    pid = _write(path, recs[:1])
    journal = journal_path(path)
    journal.write_text(_row_line(pid, {**recs[1], "values": {**recs[1]["values"], "scores/sahd": "high"}}) + "\n")
    table, lines = path.read_bytes(), journal.read_bytes()
    with pytest.raises(TableError, match=rf"^{re.escape(str(journal))}: corrupt journal line 1 \(protocol {pid}: record for "
                                         r"cell \w{16}: column 'scores/sahd' holds 'high', expected one of numbers per row\)"):
        TableWriter(path)
    assert path.read_bytes() == table and journal.read_bytes() == lines


# --------------------------------------------------------------------------- per-layer spikes


def test_spike_layer_slots_cover_every_network_in_forward_order() -> None:
    """Every LIF layer of a network (forward cells, cells with backward edges) has a slot, in the network's own
    order (``lif_layers``: registration order), so slot columns line up across cells."""
    from snnbench.network import build_network, network_config

    config, sp = network_config("digits", "bench"), space()
    picked = [*sp.indices("forward")[::701], *sp.indices("backward")[::4999]]
    assert len(picked) > 25
    for u in picked:
        names = [n for n, _ in build_network(Cell(sp.matrices[u].reshape(sp.n, sp.n)), config).lif_layers()]
        slots = [SPIKE_LAYERS.index(n) for n in names]  # raises if a layer has no slot
        assert slots == sorted(slots) and len(set(slots)) == len(names), sp.hashes[u]
    assert len(SPIKE_LAYERS) == len(set(SPIKE_LAYERS)) == 2 * 12 + 3


def test_spike_layer_values_place_each_layer_in_its_slot() -> None:
    layers = [{"name": "lif3", "spikes_per_image": 7.0, "rate": 0.5},
              {"name": "cell2.edges.e13.lif", "spikes_per_image": 2.5, "rate": 0.25}]
    v = spike_layer_values(layers)
    spikes, rate = np.array(v["spike_layers/spikes_per_image"]), np.array(v["spike_layers/rate"])
    k3, k13 = SPIKE_LAYERS.index("lif3"), SPIKE_LAYERS.index("cell2.edges.e13.lif")
    assert spikes[k3] == 7.0 and rate[k3] == 0.5 and spikes[k13] == 2.5 and rate[k13] == 0.25
    assert np.isnan(np.delete(spikes, [k3, k13])).all() and np.isnan(np.delete(rate, [k3, k13])).all()
    assert np.nansum(spikes) == 9.5
    with pytest.raises(ValueError, match="'cell3.edges.e01.lif' is not one of the table's LIF slots"):
        spike_layer_values([{"name": "cell3.edges.e01.lif", "spikes_per_image": 1.0, "rate": 0.1}])


def _spike_records(cells: list[str]) -> list[dict]:
    """Train-like records holding per-layer spikes as the legacy JSON text column."""
    out = []
    for n, text in enumerate(cells):
        layers = [{"name": "lif1", "neurons": 64, "steps": 5, "spikes_per_image": 10.0 + n, "rate": 0.1},
                  {"name": "cell1.edges.e01.lif", "neurons": 64, "steps": 5, "spikes_per_image": 3.0 * n, "rate": 0.01 * n}]
        out.append({"hash": Cell.from_text(text).hash, "seed": 0,
                    "values": {"test_acc": 0.5 + n / 100, "spike_layers": json.dumps(layers)}})
    return out


def test_legacy_spike_layer_text_reads_and_resumes_as_numeric_slots(tmp_path: Path) -> None:
    """Older tables stored per-layer spikes as JSON text: they read as the slot columns, a resumed build
    (new rows, and legacy rows replayed from a journal) extends them, and nothing is lost."""
    recs = _spike_records(CELLS[:4])
    expect = {r["hash"]: spike_layer_values(json.loads(r["values"]["spike_layers"])) for r in recs}
    path = tmp_path / "legacy.h5"
    pid = _write(path, recs[:2])
    with h5py.File(path, "r+") as f:  # rewrite as an older snnbench wrote it: one JSON text column
        g = f["protocols"][pid]
        texts = {h: r["values"]["spike_layers"] for r in recs for h in [r["hash"].encode()]}
        cell_hash = f["cells/hash"][()]
        legacy = [texts[cell_hash[i]] for i in g["cell"][()]]
        del g["spike_layers/spikes_per_image"], g["spike_layers/rate"], g["spike_layers"]
        g.create_dataset("spike_layers", data=np.array([t.encode() for t in legacy], dtype=h5py.string_dtype("utf-8", 400)))

    def check(n: int) -> None:
        p = open_table(path).protocol(pid)
        assert len(p) == n and "spike_layers" not in p.columns
        for h, sp, rt in zip(p.hash, p.columns["spike_layers/spikes_per_image"], p.columns["spike_layers/rate"]):
            want = expect[h.decode()]
            np.testing.assert_array_equal(sp, want["spike_layers/spikes_per_image"])
            np.testing.assert_array_equal(rt, want["spike_layers/rate"])

    check(2)
    script = textwrap.dedent(f"""
        import json, os
        from snnbench.table import TableWriter
        w = TableWriter({str(path)!r})
        p = w.ensure_protocol("score", {{"metric": "sahd"}}, command="snnbench build t", environment={ENV!r}, shard=None)
        w.add(p.id, json.loads({json.dumps(json.dumps(recs[2:3]))}))
        os._exit(0)  # a legacy row left in the journal, not folded
    """)
    subprocess.run([sys.executable, "-c", script], check=True)
    new = {**recs[3], "values": {"test_acc": recs[3]["values"]["test_acc"], **expect[recs[3]["hash"]]}}
    _write(path, [new])  # replays the journal, adds a row in the new form, folds
    check(4)
    with h5py.File(path, "r") as f:
        assert "spike_layers" in f["protocols"][pid] and isinstance(f["protocols"][pid]["spike_layers"], h5py.Group)
        assert f["protocols"][pid]["spike_layers/rate"].shape == (4, len(SPIKE_LAYERS))


def test_unreadable_legacy_spike_layers_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    pid = _write(path, _spike_records(CELLS[:1]))
    with h5py.File(path, "r+") as f:
        g = f["protocols"][pid]
        del g["spike_layers"]
        g.create_dataset("spike_layers", data=np.array([b"[{not json"], dtype=h5py.string_dtype("utf-8", 20)))
    _one_line_error(path, f"protocol {pid}: unreadable spike_layers")
