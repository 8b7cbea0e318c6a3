"""The fault suite: races, malformed rows, edited tables, I/O failures and the smaller promises of docs/table.md
("What we promise and how it is tested"). ``benchmarks/stress_faults.py`` repeats the same faults at random."""

from __future__ import annotations

import errno
import json
import os
import re
import resource
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import snnbench.table as table_module
from snnbench.builders.build import Stage, build
from snnbench.builders.ray_checks import check_address, check_gpus, wait_one
from snnbench.cli import main
from snnbench.space import Cell, space
from snnbench.table import (
    TableError, TableIOError, TableWriter, cell_hashes, journal_path, merge_tables, open_table, records_equal,
    remove_stale_temporaries,
)

CELLS = ["0302 0030 3003 0000", "0101 0010 0001 0000", "0004 0000 0000 0000", "0232 0000 0001 0000", "0302 0030 0003 0000"]
ENV = {"python": "3.x"}
BASE = {"dataset": {"name": "digits"}, "network": {"preset": "bench"}, "device": "cpu"}
SCORE = {**BASE, "score": {"metrics": ["sahd"], "batch_size": 8, "repeats": 2}}
TRAIN = {**BASE, "train": {"epochs": 2}}
CLI = "import sys; from snnbench.cli import main; sys.argv[0] = 'snnbench'; main()"


def _score_values(c: Cell, seed: int) -> dict:
    """A score row as docs/table.md lists its columns (one metric, two batches)."""
    x = int(c.hash[:6], 16) / 1e6 + seed
    return {"scores/sahd": x, "batch_scores/sahd": [x, x + 1], "singular/sahd": bool(seed % 2), "params": 100 + seed,
            "seconds": 0.5, "spikes_per_image": 2.0 * x, "spike_rate": x / 10, "metric_seconds/sahd": 0.25}


def _train_values(c: Cell, seed: int) -> dict:
    """A train row as docs/table.md lists its columns (two epochs, 27 LIF slots)."""
    x = int(c.hash[:6], 16) / 1e7 + seed / 100
    curve = [x, x + 0.01]
    return {"val_acc": x, "test_acc": x + 0.02, "spikes_per_image": 3.0, "spike_rate": 0.1, "train_seconds": 1.0,
            "seconds": 1.5, "params": 200, "spike_layers/spikes_per_image": [0.5] * 27, "spike_layers/rate": [0.01] * 27,
            **{f"curves/{k}": curve for k in ("lr", "train_loss", "train_acc", "val_acc", "test_acc", "epoch_seconds")}}


def _records(values: Callable[[Cell, int], dict], cells: list[str] = CELLS, seeds: tuple[int, ...] = (0, 1)) -> list[dict]:
    return [{"hash": Cell.from_text(t).hash, "seed": s, "values": values(Cell.from_text(t), s)} for t in cells for s in seeds]


def _table(path: Path, cells: list[str] = CELLS) -> dict[str, str]:
    """A table with a score and a train protocol holding every documented column; returns their ids by type."""
    with TableWriter(path) as w:
        ids = {}
        for type_, settings, values in (("score", SCORE, _score_values), ("train", TRAIN, _train_values)):
            p = w.ensure_protocol(type_, settings, command="snnbench build t", environment=ENV, shard=None)
            w.add(p.id, _records(values, cells))
            ids[type_] = p.id
    return ids


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def _one_line(code: int, output: str, want_code: int, match: str) -> None:
    assert code == want_code and output.startswith("Error: ") and output.count("\n") == 1, output
    assert re.search(match, output), output
    assert "Traceback" not in output


# --------------------------------------------------------------------------- 1. merge claims its output atomically


def test_a_merge_that_loses_the_race_for_its_output_fails_and_keeps_the_winners_file(tmp_path: Path,
                                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The other merge writes OUT while this one computes (after the early "OUT exists" check): this one must not
    replace it; it fails with one line and the winner's table stays, byte for byte."""
    a, b, out = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "out.h5"
    _table(a, CELLS[:2])
    _table(b, CELLS[2:])
    real = table_module._write_file

    def racing(tmp: Path, protocols: list, created: str) -> None:
        real(tmp, protocols, created)
        if not out.exists():  # the winner (another process) lands between the check and the final write
            subprocess.run([sys.executable, "-c", CLI, "merge", str(out), str(a)], env=_env(), check=True,
                           capture_output=True)

    monkeypatch.setattr(table_module, "_write_file", racing)
    with pytest.raises(TableError, match="out.h5: already exists .*nothing was written"):
        merge_tables(out, [a, b])
    monkeypatch.setattr(table_module, "_write_file", real)
    winner = open_table(out)
    assert all(len(p) == 4 for p in winner.protocols.values())  # a's rows only: not overwritten by a + b
    assert not list(tmp_path.glob("*.tmp-*"))  # no temporary file left
    code, output = _cli("merge", str(tmp_path / "again.h5"), str(a), str(b))
    assert code == 0, output


@pytest.mark.slow
def test_racing_merge_processes_never_both_succeed(tmp_path: Path) -> None:
    """Two ``snnbench merge`` processes started together into one OUT: exactly one exits 0, the other exits 2 with
    one line, and OUT is a complete table holding one of the two results."""
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    _table(a, CELLS[:2])
    _table(b, CELLS[2:])
    script = textwrap.dedent("""
        import sys, time
        from snnbench.cli import main
        start = float(sys.argv[1])
        time.sleep(max(0.0, start - time.time()))
        main(sys.argv[2:])
    """)
    env = _env()
    out = tmp_path / "out.h5"  # one round here; benchmarks/stress_faults.py races more
    start = time.time() + 4.0
    procs = [subprocess.Popen([sys.executable, "-c", script, str(start), "merge", str(out), *ins], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for ins in ([str(a)], [str(a), str(b)])]
    outputs = [p.communicate(timeout=120) for p in procs]
    results = [(p.returncode, stdout, stderr) for p, (stdout, stderr) in zip(procs, outputs)]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 2] and "Traceback" not in "".join(r[2] for r in results), results
    loser = next(r for r in results if r[0] == 2)
    assert loser[2].count("\n") == 1 and "already exists" in loser[2], loser
    rows = {len(p) for p in open_table(out).protocols.values()}
    assert rows in ({4}, {10})


# --------------------------------------------------------------------------- 2. rows are checked before they are journalled


@pytest.mark.parametrize("column, value", [
    ("scores/sahd", "high"), ("scores/sahd", [1.0, 2.0]), ("batch_scores/sahd", 1.0), ("singular/sahd", 0.5),
    ("params", 1.5), ("params", 10**30), ("batch_scores/sahd", [[1.0], [2.0, 3.0]]),
], ids=["text", "2d-for-1d", "1d-for-2d", "float-for-bool", "float-params", "int-beyond-int64", "ragged"])
def test_rows_of_the_wrong_type_never_reach_the_journal(tmp_path: Path, column: str, value: object) -> None:
    """A protocol with no rows yet: a row whose column breaks the schema is refused before it is journalled, so the
    table stays readable (the bug: such rows were folded into a file every later read refused)."""
    path = tmp_path / "t.h5"
    with TableWriter(path) as w:
        p = w.ensure_protocol("score", SCORE, command="c", environment=ENV, shard=None)
        journal = w.journal_path.read_bytes()
        bad = _records(_score_values, CELLS[:1], (0,))[0]
        bad["values"][column] = value
        with pytest.raises(ValueError, match=f"column '{column}' holds"):
            w.add(p.id, [bad])
        assert w.journal_path.read_bytes() == journal and len(w.protocols[p.id]) == 0
        w.add(p.id, _records(_score_values, CELLS[1:2]))
    assert len(open_table(path).protocols[p.id]) == 2


def test_a_row_missing_a_required_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    with TableWriter(path) as w:
        p = w.ensure_protocol("train", TRAIN, command="c", environment=ENV, shard=None)
        rec = _records(_train_values, CELLS[:1], (0,))[0]
        del rec["values"]["curves/lr"]
        with pytest.raises(ValueError, match="lack the column 'curves/lr'"):
            w.add(p.id, [rec])
    assert len(open_table(path).protocols[p.id]) == 0


@pytest.mark.parametrize("value", ["high", [[1.0, 2.0]], -5], ids=["text", "2d", "negative-seed"])
def test_journal_rows_of_the_wrong_type_are_refused_and_the_table_stays_readable(tmp_path: Path, value: object) -> None:
    """The same rows arriving through a journal (a protocol defined there, no stored rows): the writer refuses the
    journal naming the line, leaves table and journal as they are, and every read keeps working."""
    path = tmp_path / "t.h5"
    _table(path, CELLS[:1])
    with TableWriter(path) as w:
        p = w.ensure_protocol("score", {**SCORE, "fresh": 1}, command="c", environment=ENV, shard=None)
        header = {"protocol_def": table_module._protocol_header(p)}
    rec = _records(_score_values, CELLS[1:2], (0,))[0]
    if value == -5:
        rec["seed"] = -5
    else:
        rec["values"]["scores/sahd"] = value
    journal = journal_path(path)
    journal.write_text(json.dumps(header) + "\n" + json.dumps({"protocol": p.id, **rec}) + "\n")
    before, lines = path.read_bytes(), journal.read_bytes()
    with pytest.raises(TableError, match=r"corrupt journal line 2 \(.*(scores/sahd|seed -5).*move the journal aside"):
        TableWriter(path)
    assert path.read_bytes() == before and journal.read_bytes() == lines
    assert len(open_table(path).protocols) == 3


def test_a_negative_seed_is_refused_by_the_writer(tmp_path: Path) -> None:
    with TableWriter(tmp_path / "t.h5") as w:
        p = w.ensure_protocol("score", SCORE, command="c", environment=ENV, shard=None)
        rec = _records(_score_values, CELLS[:1], (0,))[0]
        with pytest.raises(ValueError, match=r"seed -5 is not an integer in 0..2\^63-1"):
            w.add(p.id, [{**rec, "seed": -5}])


# --------------------------------------------------------------------------- 3. edited tables are detected at open


def _edit(path: Path, change: Callable[[h5py.File, dict[str, str]], None], ids: dict[str, str]) -> None:
    with h5py.File(path, "r+") as f:
        change(f, ids)


def _delete(name: str, type_: str) -> Callable[[h5py.File, dict[str, str]], None]:
    return lambda f, ids: f[f"protocols/{ids[type_]}"].__delitem__(name)


def _rewrite(where: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[h5py.File, dict[str, str]], None]:
    def change(f: h5py.File, ids: dict[str, str]) -> None:
        name = where.format(**ids)
        data = fn(f[name][()])
        del f[name]
        f.create_dataset(name, data=data)
    return change


def _set(a: np.ndarray, index: tuple, value: int) -> np.ndarray:
    a = a.copy()
    a[index] = value
    return a


@pytest.mark.parametrize("change, match", [
    (_delete("scores/sahd", "score"), "column 'scores/sahd' is missing"),
    (_delete("test_acc", "train"), "column 'test_acc' is missing"),
    (_delete("curves/lr", "train"), "column 'curves/lr' is missing"),
    (_rewrite("cells/hash", lambda a: np.roll(a, 1)), r"/cells/hash row 0 is '\w{16}', not the hash of its matrix"),
    (_rewrite("protocols/{train}/test_acc", lambda a: a > 0.5), r"column 'test_acc' has dtype bool .* expected 1-D numbers"),
    (_rewrite("cells/kind", lambda a: _set(a, (0,), 7)), r"/cells/kind row 0 is 7"),
    (_rewrite("cells/matrix", lambda a: _set(a, (0, 0, 3), 9)), r"/cells/matrix row 0 holds an invalid operation code"),
    (_rewrite("cells/index", lambda a: a[::-1].copy()), r"/cells/index is not sorted"),
    (_rewrite("protocols/{score}/seed", lambda a: a - 3), r"seed -3 is negative"),
], ids=["no-score", "no-test-acc", "no-curve", "permuted-hash", "bool-test-acc", "kind-7", "bad-code", "index-order", "neg-seed"])
def test_an_edited_table_is_refused_at_open_with_one_line(tmp_path: Path, change: Callable, match: str) -> None:
    """Each edit used to read as wrong answers (a missing column as None, a permuted hash as another cell's record,
    a bool as 0/1, invalid codes as "not in table") or a traceback (kind 7); now open, info, query, merge and a
    resumed build all stop with one line, and the resume leaves the file as it is."""
    path = tmp_path / "t.h5"
    ids = _table(path)
    _edit(path, change, ids)
    with pytest.raises(TableError, match=match) as info:
        open_table(path)
    assert "\n" not in str(info.value)
    for args in (["info", str(path)], ["query", "--table", str(path), CELLS[0]], ["merge", str(tmp_path / "m.h5"), str(path)]):
        _one_line(*_cli(*args), 2, match)
    before = path.read_bytes()
    with pytest.raises(TableError, match=match):
        TableWriter(path)
    assert path.read_bytes() == before and not (tmp_path / "m.h5").exists()


def test_a_value_edit_is_found_by_the_content_digest(tmp_path: Path) -> None:
    """An edit the structure checks cannot see (two rows' scores swapped): ``info --verify`` and a writer refuse it
    (a resume would make it permanent under a fresh digest); an untouched table verifies."""
    path = tmp_path / "t.h5"
    ids = _table(path)
    code, output = _cli("info", "--verify", str(path))
    assert code == 0 and "verified: the rows of 2 of 2 protocols match their content digests" in output, output
    _edit(path, _rewrite("protocols/{score}/scores/sahd", lambda a: a[[1, 0, *range(2, len(a))]]), ids)
    assert len(open_table(path).protocols[ids["score"]]) == 10  # plain reads stay fast: no digest recomputed
    match = rf"protocol {ids['score']}: its rows differ from what snnbench wrote: content digest mismatch"
    _one_line(*_cli("info", "--verify", str(path)), 2, match)
    with pytest.raises(TableError, match=match):
        open_table(path, verify=True)
    with pytest.raises(TableError, match=match):
        TableWriter(path)
    _one_line(*_cli("merge", str(tmp_path / "m.h5"), str(path)), 2, match)


def test_shipped_tables_pass_the_open_checks() -> None:
    """The checks hold for the shipped tables (written before digests were stored: verify checks structure only)."""
    from snnbench.table import SHIPPED

    for path in SHIPPED.values():
        t = open_table(path, verify=True)
        np.testing.assert_array_equal(cell_hashes(t.cells["matrix"]), t.cells["hash"])
        assert np.array_equal(t.cells["hash"].astype(str), np.array(space().hashes)[t.cells["index"]])


def test_cell_hashes_match_the_space() -> None:
    sp = space()
    idx = np.arange(0, len(sp.hashes), 97)
    assert cell_hashes(sp.matrices[idx]).astype(str).tolist() == [sp.hashes[i] for i in idx]


# --------------------------------------------------------------------------- 5. I/O errors: one line, exit 1, nothing lost


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"), RuntimeError("Can't write data")],
                         ids=["ENOSPC", "h5py-RuntimeError"])
def test_a_failed_fold_is_one_io_error_and_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         error: Exception) -> None:
    """The disk fills while a fold writes its temporary file (h5py raises OSError or RuntimeError): a
    TableIOError, the temporary file removed, the table and the journal's rows kept for the next writer."""
    path = tmp_path / "t.h5"
    ids = _table(path, CELLS[:2])
    before = path.read_bytes()
    real = table_module._dataset
    calls = 0

    def full(g: h5py.Group, name: str, data: np.ndarray) -> h5py.Dataset:
        nonlocal calls
        calls += 1
        if calls > 5:
            raise error
        return real(g, name, data)

    with pytest.raises(TableIOError, match=r"cannot write the table .*keeps its previous content") as info:
        with TableWriter(path) as w:
            w.add(ids["score"], _records(_score_values, CELLS[2:]))
            monkeypatch.setattr(table_module, "_dataset", full)
            w.fold()
    assert "\n" not in str(info.value)
    monkeypatch.setattr(table_module, "_dataset", real)
    assert path.read_bytes() == before and not list(tmp_path.glob("t.h5.tmp-*"))
    with TableWriter(path) as w:
        assert w.replayed == 6
    assert len(open_table(path).protocols[ids["score"]]) == 10


def test_a_failed_journal_append_is_one_io_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.h5"
    ids = _table(path, CELLS[:2])
    with pytest.raises(TableIOError, match="cannot append to the journal .*No space left"):
        with TableWriter(path) as w:
            def fsync(fd: int) -> None:
                raise OSError(errno.ENOSPC, "No space left on device")
            monkeypatch.setattr(os, "fsync", fsync)
            w.add(ids["score"], _records(_score_values, CELLS[2:3]))
    monkeypatch.undo()
    assert all(len(p) == 4 for p in open_table(path).protocols.values())


def fake_work(item: dict) -> list[dict]:
    return [{"hash": h, "seed": s, "values": {"v": float(s)}} for h, _, s in item["rows"]]


def test_a_build_whose_journal_fills_the_disk_stops_with_one_io_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the CLI's error handling: exit 1 (not 2: the input was fine), one line, no traceback."""
    import click

    from snnbench.cli.common import SnnbenchGroup

    path = tmp_path / "t.h5"
    real_fsync = os.fsync
    full = False

    def fsync(fd: int) -> None:
        if full:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    def work(item: dict) -> list[dict]:
        nonlocal full
        full = True  # the disk fills while the first item runs
        return fake_work(item)

    monkeypatch.setattr(os, "fsync", fsync)

    @click.command()
    def run() -> None:
        build(path, [Stage("score", {"fake": 1}, "sample:6", "forward", (0,), batch=2, command="c")], work=work,
              progress=False)

    group = SnnbenchGroup()
    group.add_command(run)
    result = CliRunner().invoke(group, ["run"])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "No space left" in result.output, result.output
    monkeypatch.undo()
    assert not list(tmp_path.glob("t.h5.tmp-*")) and journal_path(path).exists()
    report = build(path, [Stage("score", {"fake": 1}, "sample:6", "forward", (0,), batch=2, command="c")], work=fake_work,
                   progress=False)  # with room again, the same build completes
    assert report.stages[0].rows == 6 and len(open_table(path).protocols) == 1


def _fsize_limited(limit: int) -> Callable[[], None]:
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes beyond the limit fail with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


@pytest.mark.slow
def test_merge_on_a_full_disk_is_one_line_exit_1_and_leaves_nothing(tmp_path: Path) -> None:
    """A real write failure inside HDF5 (a file-size limit the merge's output exceeds): exit 1, one line on stderr,
    no traceback, no temporary file, no OUT; the same merge then succeeds with room."""
    a, out = tmp_path / "a.h5", tmp_path / "out.h5"
    _table(a)
    cmd = [sys.executable, "-c", CLI, "merge", str(out), str(a)]
    env = _env()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, preexec_fn=_fsize_limited(20_000), timeout=120)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "cannot write the table" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert records_equal(open_table(out).protocols[next(iter(open_table(a).protocols))],
                         open_table(a).protocols[next(iter(open_table(a).protocols))])


def test_stale_temporary_files_of_dead_processes_are_removed(tmp_path: Path) -> None:
    """A fold or merge killed mid-write leaves ``<table>.tmp-<pid>``; the next write removes it unless its process
    is alive."""
    path = tmp_path / "t.h5"
    _table(path, CELLS[:2])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale, live = tmp_path / f"t.h5.tmp-{dead.pid}", tmp_path / f"t.h5.tmp-{alive.pid}"
        other = tmp_path / f"u.h5.tmp-{dead.pid}"
        for p in (stale, live, other):
            p.write_bytes(b"x" * 1000)
        _table(path, CELLS[2:])
        assert not stale.exists() and live.exists() and other.exists()
        merge_out = tmp_path / "u.h5"
        merge_tables(merge_out, [path])
        assert not other.exists()
        assert remove_stale_temporaries(path) == []
    finally:
        alive.kill()
        alive.wait()


# --------------------------------------------------------------------------- 6. smaller promises


def test_a_blank_trailing_journal_line_is_harmless(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    ids = _table(path, CELLS[:2])
    rec = _records(_score_values, CELLS[2:3], (0,))[0]
    journal_path(path).write_text(json.dumps({"protocol": ids["score"], **rec}) + "\n\n  \n")
    with TableWriter(path) as w:
        assert w.replayed == 1
    assert len(open_table(path).protocols[ids["score"]]) == 5


def test_a_corrupt_journal_line_says_how_to_recover(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    _table(path, CELLS[:2])
    journal_path(path).write_text("not json\n")
    with pytest.raises(TableError, match=r"corrupt journal line 1 \(not JSON\); the table holds every row folded "
                                         r"before it: fix or delete that line, or move the journal aside"):
        TableWriter(path)


def test_info_names_only_options_it_has(tmp_path: Path) -> None:
    code, output = _cli("info", str(tmp_path / "missing.h5"))
    assert code == 2 and "--table" not in output and "TABLE argument" in output, output


def test_a_random_bytes_npz_is_one_clear_line(tmp_path: Path) -> None:
    from snnbench.data import load_dataset

    (tmp_path / "train.npz").write_bytes(np.random.default_rng(0).bytes(4000))
    (tmp_path / "test.npz").write_bytes(np.random.default_rng(1).bytes(4000))
    with pytest.raises(ValueError, match=r"train.npz: not a readable .npz file \(no zip signature\)") as info:
        load_dataset(tmp_path / "train.npz")
    assert "unsafe" not in str(info.value) and "pickle" not in str(info.value)
    pickled = tmp_path / "p" / "train.npz"  # a real zip whose member is a pickled object array
    pickled.parent.mkdir()
    with zipfile.ZipFile(pickled, "w") as z:
        with z.open("images.npy", "w") as fh:
            np.save(fh, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        with z.open("labels.npy", "w") as fh:
            np.save(fh, np.zeros(1, dtype=np.int64))
    with pytest.raises(ValueError, match="holds Python objects") as info:
        load_dataset(pickled)
    assert "unsafe" not in str(info.value)


def test_a_score_batch_beyond_the_dataset_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    code, output = _cli("build", str(path), "--score-batch", "100000000", "--train-epochs", "0", "--cells", "sample:2",
                        "--workers", "0", "--quiet")
    _one_line(code, output, 2, r"--score-batch 100000000: exceeds the 1,294 training images of digits")
    assert not path.exists()


# --------------------------------------------------------------------------- 4. Ray: fail in seconds, clean stdout


def test_an_unreachable_ray_address_fails_in_seconds() -> None:
    import socket
    import time

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(ValueError, match=rf"--ray-address 127.0.0.1:{port}: no Ray cluster answers there within 1 s"):
        check_address(f"127.0.0.1:{port}", timeout=1.0)
    assert time.monotonic() - start < 30
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        check_address("nowhere")
    check_address(None)


def test_a_ray_build_at_an_unreachable_address_is_one_line_in_seconds(tmp_path: Path) -> None:
    """Through the CLI, before Ray starts and before the table file exists (Ray itself retried for minutes)."""
    import socket

    pytest.importorskip("ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "t.h5"
    start = time.monotonic()
    code, output = _cli("build", str(path), "--executor", "ray", "--ray-address", f"127.0.0.1:{port}", "--train-epochs",
                        "0", "--cells", "sample:2", "--quiet")
    _one_line(code, output, 2, rf"--ray-address 127.0.0.1:{port}: no Ray cluster answers there within 3 s")
    assert time.monotonic() - start < 60 and not path.exists()


@pytest.mark.parametrize("gpus, available, match", [
    (1.0, 0, "this machine has 0 GPUs, so no task could ever start"), (1e308, 0, "has 0 GPUs"), (2.0, 1, "has 1 GPU,"),
    (1.5, 4, "a fraction below 1 or a whole number"),
])
def test_gpu_requests_no_task_could_meet_are_refused(gpus: float, available: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_gpus(gpus, available, "this machine")
    check_gpus(0.5, 1, "this machine")


def test_a_ray_build_asking_gpus_this_machine_lacks_is_refused_before_ray_starts(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    path = tmp_path / "t.h5"
    for extra in (["--gpus-per-task", "1"], ["--gpus-per-task", "1e308"], ["--device", "cuda"]):
        code, output = _cli("build", str(path), "--executor", "ray", *extra, "--train-epochs", "0", "--cells", "sample:2",
                            "--quiet")
        if extra[0] == "--device":  # refused by the device check or by the GPU check: either way one line, no file
            assert code == 2 and output.count("\n") == 1 and "Traceback" not in output, output
        else:
            _one_line(code, output, 2, r"--gpus-per-task .*: this machine has 0 GPUs")
        assert not path.exists()


def test_json_output_stays_clean_of_what_libraries_print(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """What a library or child process writes to stdout during a ``--json`` build (Ray's "(raylet) ..." lines) goes to
    stderr: stdout is exactly the JSON summary."""
    from snnbench.builders.cli import _stdout_to_stderr

    with _stdout_to_stderr():
        os.write(1, b"(raylet) A worker died\n")
        print("a library's print")
        subprocess.run([sys.executable, "-c", "print('child')"], check=True)
    print("after")
    out, err = capfd.readouterr()
    assert out == "after\n" and "(raylet) A worker died" in err and "child" in err and "a library's print" in err


def test_waiting_for_ray_tasks_stops_once_the_cluster_cannot_run_them() -> None:
    """A fake Ray whose tasks never finish: the wait re-checks the cluster and stops with one line once its GPUs (or
    CPUs) are gone, instead of waiting forever; a result that comes is returned."""
    from types import SimpleNamespace

    checks = []

    def resources() -> dict[str, float]:
        checks.append(1)
        return {"CPU": 4.0, "GPU": 1.0 if len(checks) < 3 else 0.0}  # the GPU node leaves after two checks

    stuck = SimpleNamespace(wait=lambda refs, num_returns, timeout: ([], refs), cluster_resources=resources)
    with pytest.raises(ValueError, match="the Ray cluster now has 0 GPUs"):
        wait_one(stuck, ["a", "b"], 1.0, every=0.001)
    assert len(checks) == 3
    no_cpu = SimpleNamespace(wait=lambda refs, num_returns, timeout: ([], refs), cluster_resources=lambda: {"GPU": 1.0})
    with pytest.raises(ValueError, match="no CPU left"):
        wait_one(no_cpu, ["a"], 0.0, every=0.001)
    answers = iter([([], ["a"]), (["a"], [])])
    late = SimpleNamespace(wait=lambda refs, num_returns, timeout: next(answers), cluster_resources=lambda: {"CPU": 1.0})
    assert wait_one(late, ["a"], 0.0, every=0.001) == ["a"]


def _descendants(root: int) -> dict[int, str]:
    """Pid -> start time of every process below ``root`` (Linux /proc)."""
    procs = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                fields = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            procs[int(d)] = (int(fields[1]), fields[19])
    out, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, start) in procs.items():
            if ppid == parent and pid not in out:
                out[pid] = start
                frontier.append(pid)
    return out


def _alive(pid: int, start: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19] == start
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reaper is Linux-only")
def test_no_ray_process_outlives_a_driver_killed_with_sigkill(tmp_path: Path) -> None:
    """A local Ray instance's processes (GCS, raylet, its dashboard and runtime-env agents, workers) are all gone
    soon after the driver is killed with SIGKILL (the agents used to outlive it)."""
    pytest.importorskip("ray")
    script = ("import time; from builders.executors import RayExecutor; e = RayExecutor(num_cpus=1); "
              "print('ready', flush=True); time.sleep(300)")
    driver = subprocess.Popen([sys.executable, "-c", script], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True)
    ray_procs: dict[int, str] = {}
    try:
        assert driver.stdout is not None and driver.stdout.readline() == "ready\n"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the raylet has started its agents
            ray_procs = _descendants(driver.pid)
            names = [Path(f"/proc/{p}/cmdline").read_bytes() for p in ray_procs if Path(f"/proc/{p}/cmdline").exists()]
            if sum(b"Agent" in n for n in names) >= 2:
                break
            time.sleep(0.5)
        time.sleep(2.5)  # the reaper records the tree every second
        ray_procs = _descendants(driver.pid)
        assert len(ray_procs) >= 4, ray_procs
    finally:
        driver.kill()
        driver.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(p, s) for p, s in ray_procs.items()):
        time.sleep(0.5)
    left = [p for p, s in ray_procs.items() if _alive(p, s)]
    for p in left:  # leave the machine clean whatever the outcome
        os.kill(p, signal.SIGKILL)
    assert not left, [Path(f"/proc/{p}/cmdline").read_bytes()[:60] for p in left if Path(f"/proc/{p}/cmdline").exists()]
