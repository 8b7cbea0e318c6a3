"""Query API, replay and correlation, on a table the builder makes (checked against naive re-computations)."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from api_tables import TINY_BUILD, tiny_table, with_fixed_times, without_metric_seconds
from click.testing import CliRunner

from snnbench.api.benchmark import Benchmark, CellNotFound, load, query, resolve_table
from snnbench.api.algorithms import CompareSettings, compare
from snnbench.api.correlate import correlate, seed_agreement, top_k_precision
from snnbench.api.report import report, report_sections
from snnbench.api.lookup import cell_key
from snnbench.api.replay import draw, make_pool, pick, replay, replay_curve
from snnbench.cli import main
from snnbench.space import Cell, Distribution, canonical_batch, prune_batch, raw_matrices, space, to_text, validate
from snnbench.table import SHIPPED, SPIKE_LAYERS, default_table_path, open_table, table_datasets


@pytest.fixture(scope="module")
def table() -> Path:
    return tiny_table()


@pytest.fixture(scope="module")
def bench(table: Path) -> Benchmark:
    return Benchmark(table)


def _naive_rows(table: Path) -> dict[str, dict[str, list[tuple[int, dict]]]]:
    """{protocol type: {cell hash: [(seed, {column: value})]}} read row by row from the file."""
    out: dict[str, dict[str, list[tuple[int, dict]]]] = {}
    for p in open_table(table).protocols.values():
        rows = out.setdefault(p.type, {})
        for i in range(len(p)):
            rows.setdefault(p.hash[i].decode(), []).append((int(p.seed[i]), {k: v[i] for k, v in p.columns.items()}))
    return out


def _naive_layers(rows: list[dict]) -> dict[str, dict]:
    """Per-layer spikes, means over the rows, slot by slot (layers no row has left out)."""
    out = {}
    for k, name in enumerate(SPIKE_LAYERS):
        x = [float(v["spike_layers/spikes_per_image"][k]) for v in rows]
        r = [float(v["spike_layers/rate"][k]) for v in rows]
        if not np.isnan(x).all():
            out[name] = {"per_image": pytest.approx(sum(x) / len(x), rel=1e-12), "rate": pytest.approx(sum(r) / len(r), rel=1e-12)}
    return out


# --------------------------------------------------------------------------- matrix -> cell


def test_lookup_equals_the_space_canonical_form_on_every_raw_matrix() -> None:
    raw = raw_matrices("backward")
    expected = canonical_batch(prune_batch(raw)).reshape(len(raw), 16).tolist()
    got = [list(cell_key(m)) for m in raw.reshape(len(raw), 4, 4).tolist()]
    assert got == expected


@pytest.mark.parametrize("n", [3, 5])
def test_lookup_equals_the_space_canonical_form_for_other_node_counts(n: int) -> None:
    rng = np.random.default_rng(n)
    for _ in range(400):
        m = np.zeros((n, n), dtype=np.int64)
        for i, j in itertools.combinations(range(n), 2):
            op, back = int(rng.integers(0, 5)), rng.random() < 0.5
            m[(j, i) if back and (i, j) != (0, n - 1) else (i, j)] = op if (i, j) != (0, n - 1) else max(op, 1)
        expected = canonical_batch(prune_batch(validate(m, nodes=n)[None]))[0]
        assert cell_key(m.tolist(), n) == tuple(expected.ravel().tolist())


def test_lookup_accepts_every_form_the_cell_type_accepts() -> None:
    rng = np.random.default_rng(0)
    raw = raw_matrices("backward")
    for m in raw[rng.choice(len(raw), 200, replace=False)]:
        want = tuple(Cell(m).canonical.matrix.ravel().tolist())
        text = Cell(m).text
        forms = [m, m.astype(np.int64), m.astype(np.float32), m.tolist(), tuple(map(tuple, m.tolist())),
                 [[float(x) for x in r] for r in m.tolist()], text, " ".join(text.split()).replace(" ", ","),
                 json.dumps(m.tolist()), Cell(m), np.asfortranarray(m)]
        for f in forms:
            assert cell_key(f) == want, f
    import torch

    assert cell_key(torch.tensor(raw[5].astype(np.int64))) == tuple(Cell(raw[5]).canonical.matrix.ravel().tolist())


@pytest.mark.parametrize("bad", [
    [[0, 3, 0, 2], [0, 0, 3, 0], [3, 0, 0, 3], [0, 0, 0, 5]],  # code out of range
    [[0, 3, 0, 0], [0, 0, 3, 0], [0, 0, 0, 3], [0, 0, 0, 0]],  # no input-output edge
    [[1, 3, 0, 2], [0, 0, 3, 0], [0, 0, 0, 3], [0, 0, 0, 0]],  # diagonal
    [[0, 3, 0, 2], [3, 0, 3, 0], [0, 0, 0, 3], [0, 0, 0, 0]],  # both directions of a pair
    [[0, 3, 0, 2], [0, 0, 3, 0], [0, 0, 0, 3], [1, 0, 0, 0]],  # both directions of the input-output pair
    [[0, 3, 0, 2.5], [0, 0, 3, 0], [0, 0, 0, 3], [0, 0, 0, 0]],  # not a whole number
    [[0, 3, 0, math.nan], [0, 0, 3, 0], [0, 0, 0, 3], [0, 0, 0, 0]],
    [[0, 3, 2], [0, 0, 3], [0, 0, 0]],  # shape
    "0302 0030 3003 000", "0302 0030 3003 00a0", "hello", [[0, -1, 0, 2], [0, 0, 3, 0], [0, 0, 0, 3], [0, 0, 0, 0]],
])
def test_invalid_matrices_raise_the_cell_types_error(bench: Benchmark, bad: object) -> None:
    with pytest.raises(ValueError) as want:
        Cell(bad)
    for read in (bench.query, bench.find):
        with pytest.raises(ValueError) as got:
            read(bad)
        assert str(got.value) == str(want.value)


def test_wrong_argument_types_and_ranges_are_named(bench: Benchmark, table: Path) -> None:
    """Each was an obscure internal error (AttributeError, numpy's seed message, an IndexError, a record of the
    last cell for -1) or a score name read letter by letter."""
    for call, error, message in [
        (lambda: Cell.from_text(None), TypeError, "matrix: expected text"),  # type: ignore[arg-type]
        (lambda: Benchmark(table, score=5), TypeError, "score: expected a protocol id"),  # type: ignore[arg-type]
        (lambda: bench.record(-1), IndexError, f"view index -1 out of range \\[0, {len(bench)}\\)"),
        (lambda: bench.record(len(bench)), IndexError, "out of range"),
        (lambda: bench.record(1.5), TypeError, "expected a view index"),  # type: ignore[arg-type]
        (lambda: replay(bench, 5, 3, "sahd", split="train"), TypeError, "got the string 'sahd'"),
        (lambda: correlate(bench, "train", scores="sahd"), TypeError, "got the string 'sahd'"),
        (lambda: replay(bench, -1, 3, split="train"), ValueError, "samples and trials must be integers >= 1, got -1"),
        (lambda: replay(bench, 2.5, 3, split="train"), ValueError, "samples and trials must be integers >= 1"),  # type: ignore[arg-type]
        (lambda: replay_curve(bench, [], 3, split="train"), ValueError, "no size N given"),
        (lambda: correlate(bench, "train", bootstrap=10**9), ValueError, "resamples x .* cells, more than"),
        (lambda: correlate(bench, "train", bootstrap=-1), ValueError, "bootstrap: expected a number of resamples"),
    ]:
        with pytest.raises(error, match=message):
            call()
    assert bench.record(len(bench) - 1)["hash"] == bench.hashes[-1]


def test_correlate_without_accuracies_is_refused(tmp_path: Path) -> None:
    """A score-only table has nothing to correlate with (it printed rows of 0 cells and exited 0)."""
    path = tmp_path / "scores.h5"
    result = CliRunner().invoke(main, ["build", str(path), *TINY_BUILD[:8], "--cells", "sample:8:3", "--scores", "params",
                                       "--train-epochs", "0", "--quiet", "--workers", "0"])
    assert result.exit_code == 0, result.output
    with pytest.raises(ValueError, match="holds test accuracy"):
        correlate(Benchmark(path), "test")
    result = CliRunner().invoke(main, ["correlate", "--table", str(path)])
    assert result.exit_code == 2 and "holds test accuracy" in result.output, result.output


# --------------------------------------------------------------------------- records


def test_every_member_of_a_class_returns_one_record(bench: Benchmark) -> None:
    """All raw forward matrices (unpruned, isomorphic) of the table's cells map to the cell's one record."""
    raw = raw_matrices("forward")
    canon = canonical_batch(prune_batch(raw))  # the space's numpy canonical form, one batch
    for u, h in enumerate(bench.hashes):
        rec = bench.query_hash(h)
        members = raw[(canon == bench.matrices[u]).all(axis=(1, 2))]
        assert len(members) == rec["raw_matrices"]["forward"] == bench.raw_counts["forward"][u]
        for m in members:
            assert bench.query(m) == rec
            assert bench.query(m.astype(float)) == rec and bench.query(Cell(m).text) == rec
        assert rec["hash"] == Cell(members[-1]).hash == h and rec["matrix"] == Cell(members[-1]).canonical.to_list()
    stored = {tuple(m) for m in bench.matrices.reshape(-1, 16).tolist()}
    absent_matrix = next(m for m, c in zip(raw, canon.reshape(-1, 16).tolist()) if tuple(c) not in stored)
    absent = Cell(absent_matrix).hash
    assert absent not in bench.hashes
    with pytest.raises(CellNotFound) as err:
        bench.query(absent_matrix)
    assert isinstance(err.value, KeyError)
    assert all(pid in str(err.value) for pid in bench.protocol_ids) and absent in str(err.value)


def test_record_values_equal_a_naive_read_of_the_file(table: Path, bench: Benchmark) -> None:
    rows = _naive_rows(table)
    for rec in bench:
        score = rows["score"][rec["hash"]]
        train = rows["train"][rec["hash"]]
        for m in ("sahd", "hd"):
            naive = sum(v[f"scores/{m}"] for _, v in score) / len(score)
            singular = any(v[f"singular/{m}"] for _, v in score)
            assert rec["singular"][m] is singular
            if np.isfinite(naive):
                assert rec["scores"][m] == pytest.approx(naive, rel=1e-12)
            else:  # a singular kernel's -inf is reported as None (documented in docs/api.md), never as a number
                assert rec["scores"][m] is None and singular
        assert rec["score_seconds"] == pytest.approx(np.mean([v["seconds"] for _, v in score]), rel=1e-12)
        for m in ("sahd", "hd"):  # each metric's own time: at most the row's, one pass for both spike kernels
            own = [v[f"metric_seconds/{m}"] for _, v in score]
            assert rec["metric_seconds"][m] == pytest.approx(np.mean(own), rel=1e-12)
            assert all(0 < x <= v["seconds"] for x, (_, v) in zip(own, score))
        assert rec["metric_seconds"]["sahd"] == rec["metric_seconds"]["hd"]
        for split, col in (("val", "val_acc"), ("test", "test_acc")):
            assert rec["accuracy"][split] == pytest.approx(np.mean([v[col] for _, v in train]), rel=1e-12)
        assert rec["accuracy"]["train"] == pytest.approx(np.mean([v["curves/train_acc"][-1] for _, v in train]), rel=1e-12)
        assert rec["curves"]["val_acc"] == pytest.approx(np.mean([v["curves/val_acc"] for _, v in train], axis=0).tolist())
        assert rec["train_seconds"] == pytest.approx(np.mean([v["train_seconds"] for _, v in train]), rel=1e-12)
        assert rec["params"] == int(train[0][1]["params"])
        assert rec["spikes"]["per_image"] == pytest.approx(np.mean([v["spikes_per_image"] for _, v in train]))
        assert rec["spikes"]["layers"] == _naive_layers([v for _, v in train])
        assert list(rec["spikes"]["layers"]) == [n for n in SPIKE_LAYERS if n in rec["spikes"]["layers"]]  # forward order
        assert sum(x["per_image"] for x in rec["spikes"]["layers"].values()) == pytest.approx(rec["spikes"]["per_image"])
        assert rec["seeds"] == {"score": [s for s, _ in score], "train": [s for s, _ in train]}
        assert rec["missing"] == []
        for seed, values in train:  # one seed on request: that row's values, kept apart per split
            one = bench.query(rec["matrix"], seed=seed)
            assert one["seed"] == seed
            assert one["accuracy"] == {"train": values["curves/train_acc"][-1], "val": values["val_acc"], "test": values["test_acc"]}
            assert one["curves"]["train_loss"] == [None if x != x else x for x in values["curves/train_loss"].tolist()]
            assert one["train_seconds"] == values["train_seconds"] and one["params"] == int(values["params"])
            assert one["spikes"] == {"per_image": values["spikes_per_image"], "rate": values["spike_rate"],
                                     "layers": _naive_layers([values])}
            json.dumps(one, allow_nan=False)
        for seed, values in score:  # ... and the score row of that seed
            one = bench.query(rec["matrix"], seed=seed)
            for m in ("sahd", "hd"):
                v = float(values[f"scores/{m}"])
                assert one["scores"][m] == (v if np.isfinite(v) else None)
                assert one["singular"][m] is bool(values[f"singular/{m}"])
            assert one["score_seconds"] == values["seconds"]
            assert one["metric_seconds"] == {m: values[f"metric_seconds/{m}"] for m in bench.scores}
        json.dumps(rec, allow_nan=False)  # JSON-ready: no NaN, no numpy types
    with pytest.raises(CellNotFound, match="seed 99"):
        bench.query(bench.matrices[0], seed=99)


def test_records_are_fresh_and_queries_deterministic(bench: Benchmark) -> None:
    a = bench.query(bench.matrices[1])
    a["scores"]["sahd"] = 123.0
    a["curves"]["val_acc"].append(1.0)
    assert bench.query(bench.matrices[1]) != a
    assert bench.query(bench.matrices[1]) == Benchmark(bench.path).query(bench.matrices[1])


def test_collections_sample_dataframe_and_metadata(table: Path, bench: Benchmark) -> None:
    t = open_table(table)
    every = {h.decode() for p in t.protocols.values() for h in p.hash}
    assert len(bench) == len(every) == len(list(bench)) and set(bench.hashes) == every
    assert [r["hash"] for r in bench] == bench.hashes
    assert bench.sample(5, seed=3) == bench.sample(5, seed=3)
    assert len({r["hash"] for r in bench.sample(len(bench), seed=1)}) == len(bench)
    with pytest.raises(ValueError):
        bench.sample(len(bench) + 1, seed=0)
    df = bench.to_dataframe()
    assert list(df["hash"]) == bench.hashes
    assert np.allclose(df["test_acc"], [r["accuracy"]["test"] for r in bench])
    # the frame keeps a singular kernel's -inf (a record says None and singular=True); NaN: not scored
    want = [r["scores"]["sahd"] if r["scores"]["sahd"] is not None else (-np.inf if r["singular"]["sahd"] else np.nan)
            for r in bench]
    assert np.allclose(df["score_sahd"], want, equal_nan=True)
    meta = bench.metadata
    assert set(meta) == set(t.protocols)
    for pid, m in meta.items():
        assert m["settings"] == t.protocols[pid].settings and m["rows"] == len(t.protocols[pid])
    assert Cell(bench.matrices[2]).text in bench and "0302 0030 3003 0000" not in bench and "junk" not in bench
    assert bench.find(bench.matrices[3]) == bench.index(bench.matrices[3]) == 3 and bench.find("0302 0030 3003 0000") is None
    with pytest.raises(ValueError):
        bench.find("junk")


def test_table_resolution(table: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNNBENCH_TABLE", str(table))
    m = Benchmark(table).matrices[0]
    assert query(m) == query(m, table) == Benchmark(None).query(m)
    assert load() is load(table)
    copy = tmp_path / "copy.h5"
    shutil.copy(table, copy)
    first = load(copy)
    os.utime(copy, ns=(0, 12345))  # the file "changed": reopened, and the old view is dropped
    again = load(copy)
    assert again is not first and again is load(copy)
    import snnbench.api.benchmark

    assert [held for key, (_, held) in snnbench.api.benchmark._OPEN.items() if key[0] == str(copy)] == [again]
    monkeypatch.setenv("SNNBENCH_TABLE", str(tmp_path / "none.h5"))
    with pytest.raises(FileNotFoundError, match="snnbench build"):
        resolve_table()
    with pytest.raises(FileNotFoundError, match="snnbench build"):
        query(m, tmp_path / "other.h5")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not a table")
    with pytest.raises(ValueError, match="not an snnbench table"):
        Benchmark(bad)


def test_queries_open_the_shipped_tables_unless_told(table: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No path, no $SNNBENCH_TABLE: the table shipped for the dataset (digits when none is named). The default
    build output is never opened unless named, so a build (finished or interrupted) does not change what
    queries answer."""
    monkeypatch.delenv("SNNBENCH_TABLE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    cifar = tmp_path / "cifar.h5"
    shutil.copy(table, cifar)
    monkeypatch.setitem(SHIPPED, "digits", table)
    monkeypatch.setitem(SHIPPED, "cifar10", cifar)
    assert default_table_path() == tmp_path / ".cache" / "snnbench" / "snnbench.h5"
    assert resolve_table() == table and resolve_table(dataset="cifar10") == cifar
    assert resolve_table(dataset="cifar10-jpeg") == cifar  # a variant's request finds its dataset's shipped table
    with pytest.raises(FileNotFoundError, match="no table for dataset 'cifar100': none ships .*snnbench build PATH --dataset cifar100"):
        resolve_table(dataset="cifar100")
    m = Benchmark(table).matrices[0]
    before = query(m)
    assert before == Benchmark(table).query(m)
    built = default_table_path()  # the default build output (a copy: only which path is opened differs)
    built.parent.mkdir(parents=True)
    shutil.copy(table, built)
    assert table_datasets(built) == {"digits"} and table_datasets(tmp_path / "missing.h5") == set()
    for ds in (None, "digits", "cifar10"):
        assert resolve_table(dataset=ds) == (cifar if ds == "cifar10" else table)
    assert query(m) == before and load().path == Benchmark(table).path
    for args, path in (([], table), (["--dataset", "cifar10"], cifar)):  # the CLI opens what the API opens
        r = CliRunner().invoke(main, ["info", *args, "--json"])
        assert r.exit_code == 0 and json.loads(r.output)["path"] == str(path)
    r = CliRunner().invoke(main, ["query", to_text(m), "--json"])
    assert r.exit_code == 0 and json.loads(r.output) == json.loads(json.dumps(before))
    r = CliRunner().invoke(main, ["info", str(built), "--json"])  # named, it is opened
    assert r.exit_code == 0 and json.loads(r.output)["path"] == str(built)
    monkeypatch.setenv("SNNBENCH_TABLE", str(built))
    assert resolve_table() == resolve_table(dataset="cifar10") == built
    monkeypatch.delenv("SNNBENCH_TABLE")
    monkeypatch.setitem(SHIPPED, "cifar10", tmp_path / "not-shipped.h5")  # a checkout without the shipped file
    with pytest.raises(FileNotFoundError, match="no table for dataset 'cifar10'.*--table PATH or SNNBENCH_TABLE=PATH"):
        resolve_table(dataset="cifar10")
    r = CliRunner().invoke(main, ["query", "--dataset", "cifar10", to_text(m)])
    assert r.exit_code == 2 and "no table for dataset 'cifar10'" in r.output and "Traceback" not in r.output


# --------------------------------------------------------------------------- replay


def test_paper_probabilities_equal_a_brute_force_enumeration() -> None:
    """Weight of a raw draw: 1/4 for the io op; per other pair 1/5 (forward) or 1/5 empty, 1/10 per edge state (backward)."""
    sp = space()
    for kind in ("forward", "backward"):
        raw = raw_matrices(kind)
        empty = sum((raw[:, i, j] == 0) & (raw[:, j, i] == 0) for i, j in itertools.combinations(range(4), 2) if (i, j) != (0, 3))
        weight = 0.25 * (np.full(len(raw), 0.2**5) if kind == "forward" else 0.2**empty * 0.1 ** (5 - empty))
        assert weight.sum() == pytest.approx(1.0)
        canon = canonical_batch(prune_batch(raw)).reshape(len(raw), 16)
        keys, inverse = np.unique(canon, axis=0, return_inverse=True)
        want = dict(zip(map(tuple, keys.tolist()), np.bincount(inverse.ravel(), weights=weight)))
        prob = sp.probabilities(kind)
        got = {tuple(sp.matrices[u].ravel().tolist()): prob[u] for u in np.flatnonzero(prob)}
        assert got.keys() == want.keys()
        assert max(abs(got[k] - want[k]) for k in got) < 1e-12


def test_default_kind_is_backward_only_when_a_backward_cell_holds_accuracy(table: Path) -> None:
    from snnbench.api.replay import default_kind

    b = Benchmark(table)  # a fresh view whose arrays this test may change
    assert default_kind(b, "test") == "forward"
    b.kind_array[:2] = 1
    b.accuracy["test"][:2] = np.nan  # backward cells that are scored but not trained
    assert default_kind(b, "test") == "forward" and make_pool(b, ["sahd"], "test").kind == "forward"
    b.accuracy["test"][1] = 0.5
    assert default_kind(b, "test") == "backward"
    with pytest.raises(ValueError, match="split"):
        default_kind(b, "nope")


def test_an_unknown_split_is_a_value_error_everywhere(bench: Benchmark) -> None:
    """Not a KeyError (which the CLI no longer reads as bad input): every entry point names the splits."""
    for call in (lambda: make_pool(bench, ["sahd"], "nope", "forward"), lambda: replay(bench, 2, 2, split="nope"),
                 lambda: compare(bench, CompareSettings(["random"], 10, 1, split="nope")), lambda: correlate(bench, "nope")):
        with pytest.raises(ValueError, match="split: expected one of"):
            call()


def test_draws_past_the_limit_are_refused(bench: Benchmark) -> None:
    from snnbench.api.replay import MAX_DRAWS

    pool = make_pool(bench, ["sahd"], "test")
    with pytest.raises(ValueError, match="ask for fewer trials"):
        draw(pool, MAX_DRAWS // 1000 + 1, 1000, 0)


def test_draws_follow_the_pool_distribution(bench: Benchmark) -> None:
    pool = make_pool(bench, ["sahd"], "test", "forward", "paper")
    weight = np.array([space().probabilities("forward")[bench.space_index[u]] for u in pool.cells])
    assert np.allclose(pool.prob, weight / weight.sum())
    draws = draw(pool, 1000, 200, seed=5)
    freq = np.array([(draws == u).mean() for u in pool.cells])
    sd = np.sqrt(pool.prob * (1 - pool.prob) / draws.size)
    assert np.all(np.abs(freq - pool.prob) < 6 * sd)
    assert np.array_equal(draw(pool, 1000, 200, seed=5), draws)
    assert np.isclose(pool.effective_size, 1 / sum(q * q for q in weight / weight.sum()))
    uniform = make_pool(bench, ["sahd"], "test", "forward", "uniform")
    assert np.isclose(uniform.effective_size, len(uniform.cells))


@pytest.fixture
def singular_bench(table: Path) -> Benchmark:
    """The tiny table's view with one cell's SAHD made a singular kernel's -inf (still a draw, never picked over finite)."""
    b = Benchmark(table)
    b.scores["sahd"][int(np.argmax(b.scores["sahd"]))] = -np.inf
    return b


def test_replay_equals_a_brute_force_loop(singular_bench: Benchmark) -> None:
    bench = singular_bench
    cases: list[tuple[int, Distribution]] = [(1, "paper"), (3, "paper"), (7, "uniform"), (20, "paper")]
    for samples, dist in cases:
        out = replay(bench, samples, 300, ("sahd", "hd"), split="test", dist=dist, seed=11)
        draws = draw(make_pool(bench, ("sahd", "hd"), "test", None, dist), samples, 300, np.random.default_rng([11, samples]))
        acc = bench.accuracy["test"]
        naive: dict[str, list[float]] = {"sahd": [], "hd": [], "random": [], "oracle": []}
        for trial in draws.tolist():
            for m in ("sahd", "hd"):
                best = trial[0]
                for u in trial[1:]:
                    if bench.scores[m][u] > bench.scores[m][best]:
                        best = u
                naive[m].append(acc[best])
            naive["random"].append(acc[trial[0]])
            naive["oracle"].append(max(acc[u] for u in trial))
        assert len(make_pool(bench, ("sahd", "hd"), "test", None, dist).cells) == len(bench)
        for m, values in naive.items():
            assert out["methods"][m]["mean"] == pytest.approx(sum(values) / len(values), rel=1e-12)
            assert out["methods"][m]["std"] == pytest.approx(float(np.std(values)), abs=1e-12)
        assert np.array_equal(pick(draws, bench.scores["sahd"])[:5],
                              [max(t, key=lambda u: (bench.scores["sahd"][u], -t.index(u))) for t in draws[:5].tolist()])
    curve = replay_curve(bench, [1, 5], 50, ("sahd",))
    assert curve["methods"]["sahd"]["mean"][0] == replay(bench, 1, 50, ("sahd",), seed=0)["methods"]["sahd"]["mean"]
    alone = replay_curve(bench, [5], 50, ("sahd",))  # one N's numbers do not depend on the other sizes asked for
    assert alone["methods"]["sahd"]["mean"] == curve["methods"]["sahd"]["mean"][1:]
    with pytest.raises(ValueError, match="nope"):
        replay(bench, 5, 5, ("nope",))


def _naive_tau(s: np.ndarray, a: np.ndarray) -> float:
    """Kendall tau-b by counting pairs (two -inf scores, singular kernels, tie)."""
    n = len(s)

    def sign(x: float, y: float) -> int:
        return int(x > y) - int(x < y)

    conc = sum(sign(s[i], s[j]) * sign(a[i], a[j]) for i in range(n) for j in range(i))
    ties_s = sum(s[i] == s[j] for i in range(n) for j in range(i))
    ties_a = sum(a[i] == a[j] for i in range(n) for j in range(i))
    pairs = n * (n - 1) / 2
    return conc / math.sqrt((pairs - ties_s) * (pairs - ties_a))


def _naive_rho(s: np.ndarray, a: np.ndarray) -> float:
    rank = lambda x: np.array([sum(y < v for y in x) + (sum(y == v for y in x) + 1) / 2 for v in x])  # noqa: E731
    return float(np.corrcoef(rank(s), rank(a))[0, 1])


def test_correlation_equals_naive_formulas(singular_bench: Benchmark) -> None:
    bench = singular_bench
    out = correlate(bench, "train")
    acc = bench.accuracy["train"]
    for m, r in out["scores"].items():
        s = bench.scores[m]
        assert r["kendall_tau"] == pytest.approx(_naive_tau(s, acc))
        assert r["spearman_rho"] == pytest.approx(_naive_rho(s, acc))
        for k, v in r["top_k_precision"].items():
            assert v == pytest.approx(_naive_top_k(s, acc, int(k)))
    assert top_k_precision(np.array([3.0, 2, 1]), np.array([1.0, 2, 3]), 1) == 0.0


def _naive_top_k(score: np.ndarray, acc: np.ndarray, k: int) -> float:
    """Expected top-k overlap / k, cell by cell: a value with g larger and t equal ones (itself included) is
    in the top k with probability clip((k - g) / t, 0, 1), independently in the two rankings."""
    def p(x: np.ndarray, i: int) -> float:
        return min(max((k - sum(y > x[i] for y in x)) / sum(y == x[i] for y in x), 0.0), 1.0)
    return sum(p(score, i) * p(acc, i) for i in range(len(score))) / k


def test_top_k_precision_averages_over_tie_breaks() -> None:
    """Against brute force: the overlap of the two top-k sets averaged over every tie-break order of both
    rankings (each order a permutation giving priority among equal values)."""
    score = np.array([1.0, 1.0, 1.0, 0.0, 2.0, -np.inf])
    acc = np.array([0.5, 0.5, 0.75, 0.75, 0.75, 0.75])
    perms = list(itertools.permutations(range(6)))

    def tops(x: np.ndarray, k: int) -> list[frozenset[int]]:
        return [frozenset(sorted(range(6), key=lambda i: (-x[i], prio[i]))[:k]) for prio in perms]

    for k in range(1, 7):
        ts, ta = Counter(tops(score, k)), Counter(tops(acc, k))
        brute = sum(ns * na * len(a & b) for a, ns in ts.items() for b, na in ta.items()) / len(perms) ** 2 / k
        assert top_k_precision(score, acc, k) == pytest.approx(brute)
        assert top_k_precision(score[::-1], acc[::-1], k) == pytest.approx(brute)  # not the cells' order
    assert top_k_precision(score, acc, 1) == pytest.approx(1 / 4)  # score's top is cell 4, one of four tied at 0.75
    assert top_k_precision(acc, acc, 3) == pytest.approx(4 * (3 / 4) ** 2 / 3)  # 3 of 4 tied, drawn twice


def test_seed_agreement_equals_naive_formulas_on_the_rows(table: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-seed accuracies read row by row from the file, then the naive tau / rho between the two seeds; one
    cell's seed-1 row dropped from the view's arrays leaves that cell out of the pair."""
    b = Benchmark(table)
    rows = _naive_rows(table)["train"]
    seeds, acc = b.accuracy_by_seed("val")
    assert seeds == [0, 1] and acc.shape == (len(b), 2)
    for h, per_seed in rows.items():
        u = b.index_of_hash(h)
        assert {seed: float(v["val_acc"]) for seed, v in per_seed} == {0: acc[u, 0], 1: acc[u, 1]}
    train = b.accuracy_by_seed("train")[1]
    assert all(train[b.index_of_hash(h), seed] == v["curves/train_acc"][-1] for h, r in rows.items() for seed, v in r)
    hashes = sorted(rows)
    a0 = np.array([dict(rows[h])[0]["val_acc"] for h in hashes], dtype=float)
    a1 = np.array([dict(rows[h])[1]["val_acc"] for h in hashes], dtype=float)
    (got,) = seed_agreement(b, "val")
    assert got["seeds"] == [0, 1] and got["cells"] == len(hashes)
    assert got["kendall_tau"] == pytest.approx(_naive_tau(a0, a1)) and got["spearman_rho"] == pytest.approx(_naive_rho(a0, a1))
    assert got["mean_abs_difference"] == pytest.approx(np.mean(np.abs(a0 - a1)))
    assert correlate(b, "val")["seed_agreement"] == [got]
    with pytest.raises(ValueError, match="split"):
        b.accuracy_by_seed("dev")
    acc[0, 1] = np.nan  # view cell 0 without its seed-1 row
    monkeypatch.setattr(b, "accuracy_by_seed", lambda split="test": (seeds, acc))
    keep = [i for i, h in enumerate(hashes) if h != b.hash_array[0].decode()]
    (partial,) = seed_agreement(b, "val")
    assert partial["cells"] == len(hashes) - 1 and partial["kendall_tau"] == pytest.approx(_naive_tau(a0[keep], a1[keep]))


def test_bootstrap_intervals_equal_a_naive_resampling(table: Path) -> None:
    """Intervals and best-tau shares against the documented resampling done by hand with the naive formulas;
    one cell lacks one score (that score drops it from every resample, the other keeps it)."""
    b = Benchmark(table)
    b.scores["hd"][2] = np.nan
    out = correlate(b, "train", bootstrap=60, seed=4)
    acc = b.accuracy["train"]
    cells = np.flatnonzero(np.isfinite(acc))
    draws = np.random.default_rng(4).integers(0, len(cells), (60, len(cells)))
    taus: dict[str, list[float]] = {}
    for m in b.scores:
        taus[m], rhos = [], []
        for row in draws:
            idx = [int(cells[i]) for i in row if not np.isnan(b.scores[m][cells[i]])]
            s, a = b.scores[m][idx], acc[idx]
            defined = len(set(s.tolist())) > 1 and len(set(a.tolist())) > 1
            taus[m].append(_naive_tau(s, a) if defined else math.nan)
            rhos.append(_naive_rho(s, a) if defined else math.nan)
        r = out["scores"][m]
        for got, values in ((r["kendall_tau_ci"], taus[m]), (r["spearman_rho_ci"], rhos)):
            ok = [v for v in values if not math.isnan(v)]
            assert len(ok) > 40 and got == pytest.approx(np.percentile(ok, [2.5, 97.5]).tolist())
    names = list(b.scores)
    wins = [max(names, key=lambda m: (-math.inf if math.isnan(taus[m][r]) else taus[m][r], -names.index(m)))
            for r in range(60)]
    assert out["bootstrap"] == {"resamples": 60, "seed": 4, "level": 0.95,
                                "best_tau": pytest.approx({m: wins.count(m) / 60 for m in names})}
    assert "kendall_tau_ci" not in correlate(b, "train")["scores"]["sahd"]  # opt-in
    expected = json.loads(json.dumps(correlate(Benchmark(table), "train", bootstrap=30, seed=2)))
    args = ["correlate", "--table", str(table), "--split", "train", "--bootstrap", "30", "--seed", "2"]
    r = CliRunner().invoke(main, [*args, "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["scores"] == expected["scores"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0 and "highest tau in 30 paired resamples (seed 2)" in r.output
    for bad in (-1, True, 2.0):
        with pytest.raises(ValueError, match="bootstrap"):
            correlate(b, "train", bootstrap=bad)  # type: ignore[arg-type]


def test_bootstrap_progress_counts_every_resample_and_changes_nothing(table: Path, capsys: pytest.CaptureFixture[str],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    b = Benchmark(table)
    quiet = json.dumps(correlate(b, "train", bootstrap=5, seed=1))
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # progress=None: shown on a terminal
    shown = json.dumps(correlate(b, "train", bootstrap=5, seed=1, progress=None))
    n = 5 * len(json.loads(quiet)["scores"])
    err = capsys.readouterr().err
    assert shown == quiet and "bootstrap" in err and f" {n}/{n} " in err
    correlate(b, "train", progress=None)  # no resamples: no bar
    assert capsys.readouterr().err == ""


def test_scores_of_another_table_are_matched_by_hash(table: Path, bench: Benchmark, tmp_path: Path) -> None:
    """agreement() and correlate(source=) against dicts keyed by hash: a second table holding a shuffled
    subset of the cells, its scores changed, one missing (NaN) and one singular (-inf)."""
    from snnbench.api.correlate import agreement, matched
    from snnbench.table import Protocol, protocol_id, write_table

    t = open_table(table)
    score = next(p for p in t.protocols.values() if p.type == "score")
    rng = np.random.default_rng(3)
    keep = rng.permutation(len(score))[: len(score) - 2]
    cols = {k: v[keep].copy() for k, v in score.columns.items()}
    cols["scores/sahd"] = -cols["scores/sahd"] + rng.normal(size=len(keep))  # another "dataset"
    cols["scores/hd"][0], cols["scores/hd"][1] = np.nan, -np.inf
    other = Protocol(score.id, "score", score.settings, hash=score.hash[keep], seed=score.seed[keep], columns=cols)
    write_table(tmp_path / "other.h5", [other])
    b2 = Benchmark(tmp_path / "other.h5")
    theirs = {h.decode(): {m: float(cols[f"scores/{m}"][i]) for m in ("sahd", "hd")} for i, h in enumerate(score.hash[keep])}
    mine = {h: {m: float(bench.scores[m][u]) for m in ("sahd", "hd")} for u, h in enumerate(bench.hashes)}
    ua, ub = matched(bench, b2)  # in bench's order, every shared cell once
    assert np.all(np.diff(ua) > 0) and np.array_equal(bench.hash_array[ua], b2.hash_array[ub])
    assert sorted(bench.hash_array[ua].tolist()) == sorted(score.hash[keep].tolist())
    out = agreement(bench, b2)
    assert out["shared_cells"] == len(keep)
    for m in ("sahd", "hd"):
        shared = [h for h in bench.hashes if h in theirs and not np.isnan(theirs[h][m])]
        x, y = np.array([mine[h][m] for h in shared]), np.array([theirs[h][m] for h in shared])
        r = out["scores"][m]
        assert r["cells"] == len(shared) and r["singular"] == [int(np.isneginf(x).sum()), int(np.isneginf(y).sum())]
        assert r["kendall_tau"] == pytest.approx(_naive_tau(x, y)) and r["spearman_rho"] == pytest.approx(_naive_rho(x, y))
        c = correlate(bench, "test", [m], source=b2)["scores"][m]
        acc = np.array([bench.accuracy["test"][bench.hashes.index(h)] for h in shared])
        assert c["cells"] == len(shared) and c["kendall_tau"] == pytest.approx(_naive_tau(y, acc))
    assert out["scores"]["hd"]["singular"][1] == 1
    from snnbench.api.plots import plot_agreement

    assert plot_agreement(bench, b2, ["sahd", "hd"], tmp_path / "agree.png").stat().st_size > 0
    with pytest.raises(ValueError, match="nope"):
        agreement(bench, b2, ["nope"])
    r = CliRunner().invoke(main, ["correlate", "--table", str(table), "--scores-from", str(tmp_path / "other.h5"), "--json"])
    assert r.exit_code == 0
    got = json.loads(r.output)
    assert got["scores"] == json.loads(json.dumps(correlate(bench, "test", source=b2)["scores"]))
    assert got["agreement"]["scores"]["sahd"]["kendall_tau"] == pytest.approx(out["scores"]["sahd"]["kendall_tau"])
    settings = json.loads(json.dumps(score.settings))  # a source holding a score this table lacks
    settings["score"]["metrics"] = [*settings["score"]["metrics"], "extra"]
    more = Protocol(protocol_id("score", settings), "score", settings, hash=score.hash[keep], seed=score.seed[keep],
                    columns={**cols, "scores/extra": rng.normal(size=len(keep)), "singular/extra": np.zeros(len(keep), bool)})
    write_table(tmp_path / "more.h5", [more])
    r = CliRunner().invoke(main, ["correlate", "--table", str(table), "--scores-from", str(tmp_path / "more.h5"), "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    assert list(got["scores"]) == ["sahd", "hd", "extra"] and list(got["agreement"]["scores"]) == ["sahd", "hd"]
    (tmp_path / "foreign.h5").write_bytes(b"not a table")
    r = CliRunner().invoke(main, ["correlate", "--table", str(table), "--scores-from", str(tmp_path / "foreign.h5")])
    assert r.exit_code == 2 and "foreign.h5" in r.output and "Traceback" not in r.output


def test_scoring_seconds_are_a_metrics_own_only_where_every_cell_holds_them(table: Path, bench: Benchmark,
                                                                            tmp_path: Path) -> None:
    """Per score, correlate and the report give the metric's own seconds when every scored cell has them, else
    the whole score row's (marked): never a mix; records give None where a row lacks them."""
    rows = _naive_rows(table)["score"]
    for m in ("sahd", "hd"):
        seconds, column = bench.scoring_seconds(m)
        naive = [np.mean([v[f"metric_seconds/{m}"] for _, v in rows[h]]) for h in bench.hashes]
        assert column == f"metric_seconds/{m}" and seconds == pytest.approx(naive, rel=1e-12)
        r = correlate(bench, "test", [m])["scores"][m]
        assert r["seconds_column"] == column and r["seconds_per_cell"] == pytest.approx(np.mean(naive), rel=1e-12)
    text = report(bench, tmp_path / "own", title="own", sizes=(2,), trials=5, runs=1, budget=0, bootstrap=0).read_text()
    assert "*" not in text.split("### Scores", 1)[1].split("###", 1)[0]  # no footnote: every score has its own time
    legacy = Benchmark(without_metric_seconds(table, tmp_path / "legacy.h5"))
    mixed = Benchmark(without_metric_seconds(table, tmp_path / "mixed.h5", rows=1))
    for b in (legacy, mixed):
        for m in ("sahd", "hd"):
            seconds, column = b.scoring_seconds(m)
            assert column == "seconds" and np.array_equal(seconds, bench.score_seconds)
            assert correlate(b, "test", [m])["scores"][m]["seconds_per_cell"] == pytest.approx(np.mean(bench.score_seconds))
    assert all(np.isnan(v).all() for v in legacy.metric_seconds.values())
    assert all(r["metric_seconds"] == {"sahd": None, "hd": None} for r in legacy)
    first = mixed.index_of_hash(open_table(tmp_path / "mixed.h5").protocols[bench.protocol_ids[0]].hash[0])
    assert mixed.record(first)["metric_seconds"]["sahd"] is None and np.isnan(mixed.metric_seconds["sahd"][first])
    others = [u for u in range(len(mixed)) if u != first]
    assert np.array_equal(mixed.metric_seconds["sahd"][others], bench.metric_seconds["sahd"][others])
    text = report(legacy, tmp_path / "r", title="legacy", sizes=(2,), trials=5, runs=1, budget=0, bootstrap=0).read_text()
    r = correlate(legacy, "test")["scores"]["sahd"]
    assert f"| {r['seconds_per_cell']:.3f}* |" in text and "\\* The score row's time, every metric" in text
    for path, b, mark in ((table, bench, ""), (tmp_path / "legacy.h5", legacy, "*")):  # the CLI's s/cell column
        out = CliRunner().invoke(main, ["correlate", "--table", str(path)]).output
        for m, r in correlate(b, "test")["scores"].items():
            first = f"{r['top_k'][0]['precision']:.3f}"  # the s/cell column, then the top-k columns
            assert re.search(rf"^{m} .* {r['seconds_per_cell']:.3f}{re.escape(mark)} +{re.escape(first)} ", out, re.M), out
        assert ("* The score row's time" in out) == bool(mark)


def test_plot_by_kind_draws_both_kinds(table: Path, tmp_path: Path) -> None:
    from snnbench.api.plots import plot_by_kind

    b = Benchmark(table)
    b.kind_array[:3] = 1  # three cells counted as backward; one singular value must not break the shared bins
    b.scores["sahd"][0] = -np.inf
    assert plot_by_kind(b, ["sahd", "hd"], tmp_path / "kinds.png").stat().st_size > 0


# --------------------------------------------------------------------------- CLI and figures


def test_cli(table: Path, bench: Benchmark, tmp_path: Path) -> None:
    run = CliRunner().invoke
    text = Cell(bench.matrices[0]).text
    r = run(main, ["query", *text.split(), "--table", str(table), "--json"])
    assert r.exit_code == 0 and json.loads(r.output) == bench.query(text)
    r = run(main, ["query", text, "--table", str(table)])
    assert r.exit_code == 0 and bench.hashes[0] in r.output
    rec = bench.query(text)
    for m in ("sahd", "hd"):  # each score with its own seconds
        assert re.search(rf"score {m} +\S+ .*\({rec['metric_seconds'][m]:.3f} s\)", r.output), r.output
    for args, message in ((["query", "0302", "0030", "3003", "0005"], "operation code"),
                          (["query", "0302 0030 3003 0000"], "lack it"),
                          (["query", "0302 0030 3003 0000", "--table", str(tmp_path / "x.h5")], "snnbench build"),
                          (["replay", "--score", "nope"], "nope"),
                          (["replay", "--score", ","], "score: no score name given"),
                          (["replay", "-n", "9", "-n", "20"], "N = 9, 20 is more than the 8 cells of the pool"),
                          (["compare", "--budget", "10", "--algorithms", "magic"], "magic"),
                          (["compare", "--budget", "10", "--algorithms", ""], "algorithm: none given"),
                          (["compare", "--budget", "10", "--algorithms", "score_train:"], "got 'score_train:'"),
                          (["query", "[[0,3,0,2],[0,0,3],[0,0,0,3],[0,0,0,0]]"], "got rows of lengths [4, 3, 4, 4]"),
                          (["compare", "--budget", "nan"], "Invalid value for '--budget': nan is not a finite number."),
                          (["compare", "--budget", "10", "--score-cost", "sahd"], "expected METRIC=SECONDS"),
                          (["compare", "--budget", "10", "--score-cost", "sahd=-1"], "expected METRIC=SECONDS"),
                          (["compare", "--budget", "10", "--score-cost", "nope=1"], "score: 'nope' not in the view"),
                          (["compare", "--budget", "inf"], "Invalid value for '--budget': inf is not a finite number.")):
        if "--table" not in args:
            args = [*args, "--table", str(table)]
        r = run(main, args)
        assert r.exit_code == 2 and message in r.output and len(r.output.strip().splitlines()) == 1, r.output
    plot = tmp_path / "replay.png"
    r = run(main, ["replay", "--table", str(table), "-n", "2", "-n", "4", "--trials", "30", "--json", "--plot", str(plot)])
    assert r.exit_code == 0 and json.loads(r.output)["sizes"] == [2, 4] and plot.stat().st_size > 0
    r = run(main, ["replay", "--table", str(table), "-n", "4", "-n", "9", "--trials", "30", "--json"])
    assert r.exit_code == 0 and "left out N = 9: more than the 8 cells of the pool" in r.stderr
    assert json.loads(r.stdout)["sizes"] == [4]
    r = run(main, ["compare", "--table", str(table), "--budget", "3", "--runs", "2", "--plot", str(tmp_path / "c.png")])
    assert r.exit_code == 0 and "evolution" in r.output and (tmp_path / "c.png").exists()
    r = run(main, ["compare", "--table", str(table), "--budget", "1e9", "--runs", "2", "--algorithms", "score_train:hd",
                   "--candidates", "4", "--top", "1", "--score-cost", "hd=0.5", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["algorithms"]["score_train:hd"] == json.loads(json.dumps(compare(
        bench, CompareSettings(["score_train:hd"], 1e9, 2, options={"score_train": {"candidates": 4, "top": 1}},
                               score_costs={"hd": 0.5}))["algorithms"]["score_train:hd"]))
    r = run(main, ["compare", "--table", str(table), "--budget", "1e9", "--runs", "1", "--algorithms", "score_train:hd,score_train:sahd",
                   "--candidates", "4", "--top", "1", "--score-cost", "hd=0.5"])
    assert r.exit_code == 0 and "score_train:hd: each scored cell charged 0.5 s given" in r.output
    assert "score_train:sahd: each scored cell charged the stored metric_seconds/sahd" in r.output
    r = run(main, ["correlate", "--table", str(table), "--json"])
    assert r.exit_code == 0 and set(json.loads(r.output)["scores"]) == {"sahd", "hd"}


def test_cli_keeps_the_traceback_of_a_bug_but_not_of_a_lookup_miss(table: Path, bench: Benchmark,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A bare KeyError inside a command is a bug (exit 1, the exception kept), not an "Error: 'key'" line; the
    lookup misses a user causes are one line (exit 2)."""
    r = CliRunner().invoke(main, ["query", "0302 0030 3003 0000", "--table", str(table), "--score-protocol", "zzz"])
    assert r.exit_code == 2 and "no protocol 'zzz'" in r.output and len(r.output.strip().splitlines()) == 1, r.output

    def broken(self: Benchmark, matrix: object, seed: int | None = None, epoch: int | None = None) -> dict:
        raise KeyError("modified")

    monkeypatch.setattr(Benchmark, "query", broken)
    r = CliRunner().invoke(main, ["query", Cell(bench.matrices[0]).text, "--table", str(table)])
    assert r.exit_code == 1 and isinstance(r.exception, KeyError) and "Error: 'modified'" not in r.output


def test_kernel_figure(bench: Benchmark, tmp_path: Path) -> None:
    """The figure's kernel: symmetric, diagonal = mean neurons per LIF call (d_H(i, i) = 0)."""
    from snnbench.api.plots import kernel_matrices, kernel_matrix, plot_kernels
    from snnbench.data import load_dataset
    from snnbench.network import NetworkConfig, build_network
    from snnbench.neuron import LIF

    settings = bench.metadata[bench.protocol_ids[0]]["settings"]
    config = NetworkConfig(**settings["network"]["config"])
    data = load_dataset("digits")
    k = kernel_matrix(bench.matrices[0], data, config, "sahd", batch_size=16, seed=0)
    assert k.shape == (16, 16) and np.allclose(k, k.T)
    both = kernel_matrices(bench.matrices[1], data, config, ["sahd", "hd"], batch_size=16, seed=3)
    for m in ("sahd", "hd"):  # one pass gives what a call per metric gives
        assert np.array_equal(both[m], kernel_matrix(bench.matrices[1], data, config, m, batch_size=16, seed=3))
    sizes: list[tuple[int, int]] = []
    model = build_network(Cell(bench.matrices[0]), config)
    for layer in model.modules():
        if isinstance(layer, LIF):
            layer.register_forward_hook(lambda mod, a, out: sizes.append((out.shape[0], out[0, 0].numel())))
    import torch

    with torch.no_grad():
        model.train()(data.normalize(data.train.images[:16]))
    assert np.allclose(np.diag(k), sum(t * n for t, n in sizes) / sum(t for t, _ in sizes))
    out = plot_kernels([k, k], ["a", "b"], tmp_path / "k.png")
    assert out.stat().st_size > 0
    from snnbench.api.plots import kernel_figure

    assert kernel_figure(bench, bench.matrices[:2], tmp_path / "fig2.png", batch_size=8).stat().st_size > 0


def test_view_pairs_score_and_train_protocols_of_one_setup(table: Path, tmp_path: Path) -> None:
    """A view never mixes protocols of different datasets unless asked to by id."""
    import copy

    from snnbench.table import Protocol, protocol_id, write_table

    t = open_table(table)
    score = next(p for p in t.protocols.values() if p.type == "score")
    train = next(p for p in t.protocols.values() if p.type == "train")
    settings = copy.deepcopy(score.settings)
    settings["dataset"]["name"] = "cifar10"
    other = Protocol(protocol_id("score", settings), "score", settings, hash=score.hash, seed=score.seed,
                     columns={k: v * 2 for k, v in score.columns.items()})
    write_table(tmp_path / "three.h5", [other, train, score])
    assert Benchmark(tmp_path / "three.h5").protocol_ids == [score.id, train.id]
    write_table(tmp_path / "mixed.h5", [other, train])
    with pytest.raises(ValueError, match="differ in dataset"):
        Benchmark(tmp_path / "mixed.h5")
    assert Benchmark(tmp_path / "mixed.h5", dataset="digits").protocol_ids == [train.id]
    both = Benchmark(tmp_path / "mixed.h5", score=other.id[:6], train=train.id)
    assert both.query(both.matrices[0])["scores"]["sahd"] == 2 * Benchmark(table).query(both.matrices[0])["scores"]["sahd"]
    r = CliRunner().invoke(main, ["correlate", "--table", str(tmp_path / "mixed.h5")])
    assert r.exit_code == 2 and "--dataset" in r.output
    # a named variant (the same dataset from other files, e.g. cifar10-jpeg) answers for its dataset,
    # after the exact name, and never for a dataset whose name it merely starts with
    jpeg = copy.deepcopy(settings)
    jpeg["dataset"]["name"] = "cifar10-jpeg"
    variant = Protocol(protocol_id("score", jpeg), "score", jpeg, hash=score.hash[:3], seed=score.seed[:3],
                       columns={k: v[:3] for k, v in score.columns.items()})
    write_table(tmp_path / "variant.h5", [variant])
    assert Benchmark(tmp_path / "variant.h5", dataset="cifar10").protocol_ids == [variant.id]
    write_table(tmp_path / "both.h5", [variant, other])
    assert Benchmark(tmp_path / "both.h5", dataset="cifar10").protocol_ids == [other.id]  # exact name first
    assert Benchmark(tmp_path / "both.h5", dataset="cifar10-jpeg").protocol_ids == [variant.id]
    with pytest.raises(ValueError, match="no score or train protocol"):
        Benchmark(tmp_path / "variant.h5", dataset="cifar")
    # trainings on a named variant (a subset of the scored images) pair with the scores when no exact
    # pair exists; an exact pair still wins, and a variant on another network never pairs
    sub = copy.deepcopy(train.settings)
    sub["dataset"]["name"] = "digits-sub"
    sub["dataset"]["sha256"] = "0" * 16
    subset = Protocol(protocol_id("train", sub), "train", sub, hash=train.hash, seed=train.seed, columns=dict(train.columns))
    write_table(tmp_path / "sub.h5", [score, subset])
    assert Benchmark(tmp_path / "sub.h5").protocol_ids == [score.id, subset.id]
    write_table(tmp_path / "exact.h5", [score, subset, train])
    assert Benchmark(tmp_path / "exact.h5").protocol_ids == [score.id, train.id]
    wide = copy.deepcopy(sub)
    wide["network"]["config"]["c1"] = 2 * int(wide["network"]["config"]["c1"])
    widened = Protocol(protocol_id("train", wide), "train", wide, hash=train.hash, seed=train.seed, columns=dict(train.columns))
    write_table(tmp_path / "wide.h5", [score, widened])
    with pytest.raises(ValueError, match="differ in dataset"):
        Benchmark(tmp_path / "wide.h5")


def test_report_on_a_score_only_table_summarises_its_scores(table: Path, tmp_path: Path) -> None:
    from snnbench.table import write_table

    score = next(p for p in open_table(table).protocols.values() if p.type == "score")
    write_table(tmp_path / "scores.h5", [score])
    b = Benchmark(tmp_path / "scores.h5")
    text = report(b, tmp_path / "r", title="scores only").read_text()
    assert "nothing to correlate" in text
    for m in ("sahd", "hd"):
        v = score.columns[f"scores/{m}"]
        row = next(line for line in text.splitlines() if line.startswith(f"| {m} |"))
        assert row.split(" | ")[1] == f"{len(v):,}" and f"{v[np.isfinite(v)].mean():.4f}" in row


def test_report_page_holds_the_functions_numbers(tmp_path: Path) -> None:
    """On the tiny table with constant stored times: its build measures them wall-clock, and with measured times
    whether random search has a result at ``score_train``'s cost (the equal-cost line) depended on the run."""
    bench = Benchmark(with_fixed_times(tiny_table(), tmp_path / "fixed.h5"))
    budget = float(np.nansum(bench.train_seconds))  # enough to train every cell
    assert budget == 2.0 * len(bench) and set(bench.score_seconds.tolist()) == {0.05}
    page = report(bench, tmp_path / "r", title="tiny", sizes=(2, 4, 1000), trials=50, runs=3, budget=budget, seed=5,
                  bootstrap=1000)
    text = page.read_text()
    assert {p.name for p in page.parent.iterdir()} == {"report.md", "scores.png", "replay.png", "compare.png"}
    corr = correlate(bench, "test", bootstrap=1000, seed=5)
    for m, r in corr["scores"].items():
        (tl, th), (rl, rh) = r["kendall_tau_ci"], r["spearman_rho_ci"]
        assert (f"| {m} | {r['cells']:,} | {r['kendall_tau']:.3f} [{tl:.3f}, {th:.3f}] | "
                f"{r['spearman_rho']:.3f} [{rl:.3f}, {rh:.3f}] |") in text
    assert "1,000 paired bootstrap resamples of the cells (seed 5)" in text
    (agree,) = corr["seed_agreement"]
    assert (f"seed 0 against seed 1 on {agree['cells']:,} cells, Kendall tau {agree['kendall_tau']:.3f}, "
            f"Spearman rho {agree['spearman_rho']:.3f}") in text
    plain = report(bench, tmp_path / "plain", title="tiny", sizes=(2,), trials=5, runs=1, budget=budget, bootstrap=0)
    for m, r in correlate(bench, "test")["scores"].items():
        assert f"| {m} | {r['cells']:,} | {r['kendall_tau']:.3f} | {r['spearman_rho']:.3f} |" in plain.read_text()
    curve = replay_curve(bench, [2, 4], 50, list(bench.scores), split="test", seed=5)
    for m, r in curve["methods"].items():
        assert f"| {m} | {r['mean'][0]:.4f} ± {r['std'][0]:.4f} | {r['mean'][1]:.4f} ± {r['std'][1]:.4f} |" in text
    assert "Sizes above the pool (1000) are left out." in text and "N = 1,000" not in text
    result = compare(bench, CompareSettings(["random", "evolution", "local", "reinforce", "score_train"], budget, 3,
                                            observe="val", split="test", score="sahd", seed=5))
    for name, r in result["algorithms"].items():
        assert f"| {name} | {r['final_mean']:.4f} ± {r['final_std']:.4f} | {r['trained_mean']:.1f} |" in text
    cost = result["algorithms"]["score_train"]["seconds_mean"]
    assert cost == pytest.approx(len(bench) * 0.025 + 5 * 2.0)  # scores every cell of the tiny space (sahd's own time), trains 5
    at = next(i for i, t in enumerate(result["times"]) if t >= cost)  # the first curve point not before that cost
    assert (f"- `score_train` ends at {cost:,.0f} s on average: random search's test accuracy at "
            f"{result['times'][at]:,.0f} s is {result['algorithms']['random']['curve_mean'][at]:.4f}, against "
            f"{result['algorithms']['score_train']['final_mean']:.4f}.") in text
    assert text == report(bench, tmp_path / "again", title="tiny", sizes=(2, 4, 1000), trials=50, runs=3, budget=budget,
                          seed=5, bootstrap=1000).read_text()  # seeded
    sections = report_sections(bench, tmp_path / "blocks", title="tiny", sizes=(2, 4, 1000), trials=50, runs=3,
                               budget=budget, seed=5, bootstrap=1000)
    assert list(sections) == ["head", "scores", "replay", "compare"]
    assert sections["compare"][0].startswith("### NAS algorithms") and "\n".join(sum(sections.values(), [])) + "\n" == text


def test_report_sections_reuse_a_given_correlation_made_with_their_settings(bench: Benchmark, tmp_path: Path) -> None:
    settings: dict[str, Any] = {"title": "tiny", "sizes": (2,), "trials": 5, "runs": 1, "budget": 0.0, "bootstrap": 200, "seed": 3}
    corr = correlate(bench, "test", bootstrap=200, seed=3)
    assert report_sections(bench, tmp_path / "a", correlation=corr, **settings) == report_sections(bench, tmp_path / "b", **settings)
    first = next(iter(corr["scores"]))
    corr["scores"][first]["kendall_tau"] = 0.987654  # the given result is what the page prints: not recomputed
    assert any(line.startswith(f"| {first} |") and "| 0.988 [" in line
               for line in report_sections(bench, tmp_path / "a", correlation=corr, **settings)["scores"])
    for wrong in (correlate(bench, "val", bootstrap=200, seed=3), correlate(bench, "test", bootstrap=200, seed=4),
                  correlate(bench, "test"), correlate(bench, "test", list(bench.scores)[:1], bootstrap=200, seed=3)):
        with pytest.raises(ValueError, match="correlation: made for"):
            report_sections(bench, tmp_path / "c", correlation=wrong, **settings)
    with pytest.raises(ValueError, match="bootstrap: .* more than"):
        report_sections(bench, tmp_path / "d", **{**settings, "bootstrap": 10**9})
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()  # a refused report makes no folder


def test_report_cli(table: Path, tmp_path: Path) -> None:
    run = CliRunner().invoke
    r = run(main, ["report", "--table", str(table), "--out", str(tmp_path / "c"), "-n", "4", "--trials", "5", "--runs", "1"])
    assert r.exit_code == 0 and Path(r.output.strip()) == tmp_path / "c" / "report.md"
    assert "| N = 4 |" in (tmp_path / "c" / "report.md").read_text()
    page = (tmp_path / "c" / "report.md").read_bytes()
    (tmp_path / "c" / "notes.txt").write_text("mine")
    r = run(main, ["report", "--table", str(table), "--out", str(tmp_path / "c"), "-n", "2", "--trials", "5", "--runs", "1"])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "--force" in r.output and "is not empty" in r.output
    assert (tmp_path / "c" / "report.md").read_bytes() == page  # nothing replaced
    r = run(main, ["report", "--table", str(table), "--out", str(tmp_path / "c"), "-n", "2", "--trials", "5", "--runs", "1", "--force"])
    assert r.exit_code == 0 and "| N = 2 |" in (tmp_path / "c" / "report.md").read_text()
    assert (tmp_path / "c" / "notes.txt").read_text() == "mine"  # only the report's own files are replaced
    (tmp_path / "empty").mkdir()
    r = run(main, ["report", "--table", str(table), "--out", str(tmp_path / "empty"), "-n", "2", "--trials", "5", "--runs", "1"])
    assert r.exit_code == 0 and (tmp_path / "empty" / "report.md").exists()
    r = run(main, ["report", "--table", str(table), "--out", str(tmp_path / "d"), "-n", "0"])
    assert r.exit_code == 2 and "Traceback" not in r.output and not (tmp_path / "d").exists()
    for args, message in ((["--replay-scores", "nope"], "score: 'nope' not in the view"),
                          (["--algorithms", "magic"], "algorithm"), (["--score", "nope"], "score: 'nope'"),
                          (["--budget", "nan"], "Invalid value for '--budget': nan is not a finite number.")):  # refused before any figure is made
        r = run(main, ["report", "--table", str(table), "--out", str(tmp_path / "e"), *args])
        assert r.exit_code == 2 and message in r.output and not (tmp_path / "e").exists(), r.output
