"""Which kinds of cell a table covers: every reader says so, refuses a kind the view lacks, and a backward-space
replay keeps each stratum (forward cells, cells with a backward edge) at its share of the paper's sampler."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from api_tables import PAPER_CELL, mixed_table, tiny_table
from click.testing import CliRunner

from snnbench.api.benchmark import Benchmark, CellNotFound
from snnbench.api.correlate import correlate
from snnbench.api.replay import default_kind, make_pool
from snnbench.cli import main
from snnbench.space import Cell, canonical_batch, prune_batch, raw_matrices, space
from snnbench.table import SHIPPED, Protocol, open_table, write_table

@pytest.fixture(scope="module")
def mixed() -> Path:
    return mixed_table()


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


def test_coverage_counts_each_kind_against_the_space(mixed: Path) -> None:
    b = Benchmark(mixed)
    sp = space()
    cov = b.coverage()
    assert cov["forward"] == {"space": 7012, "scored": 5, "trained": 5}
    assert cov["backward"] == {"space": 102596 - 7012, "scored": 3, "trained": 3} == {
        "space": int(sp.is_backward.sum()), "scored": 3, "trained": 3}
    assert b.holds() == "forward cells: 5 of 7,012 scored, 5 trained; cells with a backward edge: 3 of 95,584 scored, 3 trained"
    assert Benchmark(tiny_table()).holds().endswith("cells with a backward edge: 0 of 95,584")


def test_backward_pool_keeps_each_strata_share_of_the_paper_sampler(mixed: Path) -> None:
    """Independent count: paper weights of every raw backward matrix (1/4 for the io op; per other pair 1/5
    empty, 1/10 per edge state), summed per canonical cell and per stratum by enumeration."""
    b = Benchmark(mixed)
    raw = raw_matrices("backward")
    empty = sum((raw[:, i, j] == 0) & (raw[:, j, i] == 0) for i, j in itertools.combinations(range(4), 2) if (i, j) != (0, 3))
    weight = 0.25 * 0.2**empty * 0.1 ** (5 - empty)
    canon = canonical_batch(prune_batch(raw))
    has_back = np.array([bool(np.tril(m, -1).any()) for m in canon])
    texts = [" ".join("".join(map(str, r)) for r in m) for m in canon.tolist()]
    per_cell: dict[str, float] = {}
    for t, w in zip(texts, weight):
        per_cell[t] = per_cell.get(t, 0.0) + w
    stratum_mass = {False: weight[~has_back].sum(), True: weight[has_back].sum()}
    pool = make_pool(b, ["sahd"], "test", "backward", "paper")
    got = {b.query(b.matrices[u])["text"]: p for u, p in zip(pool.cells, pool.prob)}
    kinds = {t: Cell(t).kind == "backward" for t in got}
    in_pool = {k: sum(per_cell[t] for t in got if kinds[t] == k) for k in (False, True)}
    for t, p in got.items():
        want = per_cell[t] * stratum_mass[kinds[t]] / in_pool[kinds[t]]
        assert p == pytest.approx(want, rel=1e-9), t
    assert sum(p for t, p in got.items() if kinds[t]) == pytest.approx(stratum_mass[True], rel=1e-9)  # 45.6%, not 3 cells' mass
    assert pool.coverage["forward"]["pool"] == 5 and pool.coverage["backward"]["pool"] == 3
    assert pool.coverage["backward"]["mass"] == pytest.approx(stratum_mass[True], rel=1e-9)
    assert pool.describe().startswith("5 of 7,012 forward cells (0.071%; 54.4% of draws); 3 of 95,584 cells with a backward edge (0.0031%;")
    # the forward space: forward cells only, the paper's forward sampler renormalised over them
    fwd = make_pool(b, ["sahd"], "test", "forward", "paper")
    assert set(b.kind_array[fwd.cells].tolist()) == {0} and len(fwd.cells) == 5
    p = space().probabilities("forward")[b.space_index[fwd.cells]]
    np.testing.assert_allclose(fwd.prob, p / p.sum(), rtol=1e-12)


def test_default_kind_prefers_the_complete_space(mixed: Path, tmp_path: Path) -> None:
    assert default_kind(Benchmark(mixed), "test") == "backward"  # neither space complete: the one holding both kinds
    assert default_kind(Benchmark(tiny_table()), "test") == "forward"
    if not SHIPPED["digits"].exists():
        pytest.skip("no shipped digits table in this checkout")
    # the whole forward space trained plus a few cells with a backward edge: the complete forward space is the default
    protocols = list(open_table(SHIPPED["digits"]).protocols.values())
    sp = space()
    extra = [sp.hashes[u].encode() for u in np.flatnonzero(sp.is_backward)[:3]]
    forward = {sp.hashes[u].encode() for u in np.flatnonzero(~sp.is_backward)}
    grown = []
    for p in protocols:  # the forward rows, and the first cell's rows copied onto each new cell
        rows = np.flatnonzero(np.isin(p.hash, p.hash[:1]))
        take = np.concatenate([np.flatnonzero([h in forward for h in p.hash.tolist()]), np.tile(rows, len(extra))])
        hashes = np.concatenate([p.hash[take[:len(take) - len(rows) * len(extra)]],
                                 np.repeat(np.array(extra, dtype="S16"), len(rows))])
        grown.append(Protocol(p.id, p.type, p.settings, hash=hashes, seed=p.seed[take],
                              columns={k: v[take] for k, v in p.columns.items()}))
    write_table(tmp_path / "grown.h5", grown)
    b = Benchmark(tmp_path / "grown.h5")
    assert b.coverage()["forward"]["trained"] == 7012 and b.coverage()["backward"]["trained"] == 3
    assert default_kind(b, "test") == "forward" and make_pool(b, ["sahd"]).kind == "forward"
    assert make_pool(b, ["sahd"], kind="backward").coverage["backward"]["pool"] == 3


def test_a_backward_cell_missing_from_a_forward_table_says_what_the_table_holds() -> None:
    b = Benchmark(tiny_table())
    with pytest.raises(CellNotFound) as err:
        b.query(PAPER_CELL)
    message = str(err.value)
    assert "a cell with a backward edge" in message and "cells with a backward edge: 0 of 95,584" in message
    result = _cli("query", "--table", str(tiny_table()), PAPER_CELL)
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "cells with a backward edge: 0 of 95,584" in result.output


@pytest.mark.parametrize("command", [["replay", "-n", "2", "--trials", "3", "--kind", "backward"],
                                     ["compare", "--budget", "100", "--runs", "1", "--algorithms", "random", "--kind", "backward"],
                                     ["correlate", "--cell-kind", "backward"]])
def test_asking_a_forward_table_for_backward_cells_is_one_line(command: list[str]) -> None:
    result = _cli(*command, "--table", str(tiny_table()))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert "backward" in lines[0] and "forward cells: 8 of 7,012 scored, 8 trained" in lines[0]


def test_readers_name_the_coverage(mixed: Path) -> None:
    out = _cli("replay", "--table", str(mixed), "-n", "2", "--trials", "5", "--kind", "backward").output
    assert "pool: 8 cells: 5 of 7,012 forward cells" in out and "3 of 95,584 cells with a backward edge" in out
    out = _cli("compare", "--table", str(mixed), "--budget", "1000", "--runs", "1", "--algorithms", "random",
               "--kind", "backward").output
    assert "backward space: 8 trained cells (5 forward, 3 with a backward edge)" in out
    b = Benchmark(mixed)
    for cells, count in (("all", 8), ("forward", 5), ("backward", 3)):
        r = correlate(b, "test", ["sahd"], cells=cells)
        assert r["scores"]["sahd"]["cells"] == count and r["seed_agreement"][0]["cells"] == count
    assert "cells with a backward edge" in _cli("correlate", "--table", str(mixed), "--cell-kind", "backward").output
    assert b.query(PAPER_CELL)["kind"] == "backward"
