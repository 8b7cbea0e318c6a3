"""docs/results/regenerate.py and reproduce.py, the scripts behind docs/results.md: statistics against naive
computations, sections run end to end on a tiny built table, stored rows recomputed on the machine that built them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from api_tables import PAPER_CELL, mixed_table, tiny_table
from snnbench.space import to_text


def _script(name: str) -> ModuleType:
    """Import docs/results/<name>.py under ``name`` (its worker processes pickle functions by module name)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / f"docs/results/{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


regen, repro = _script("regenerate"), _script("reproduce")


def test_off_diagonal_is_the_mean_normalised_off_diagonal_entry() -> None:
    k = np.array([[4.0, 1.0, 3.0], [1.0, 2.0, 2.0], [3.0, 2.0, 3.0]])  # mean diagonal 3
    assert regen.off_diagonal(k) == (1 + 3 + 1 + 2 + 3 + 2) / 3 / 6


def test_quote_takes_a_report_block_from_its_opening_words_to_its_figure() -> None:
    block = ["Intro.", "", "The paper's sampler, N = 10:", "| a |", "", "![curve](x.png)", "After."]
    assert regen._quote(block, "The paper's sampler") == ["The paper's sampler, N = 10:", "| a |"]
    assert regen._quote(block[:5], "The paper's sampler") == ["The paper's sampler, N = 10:", "| a |"]  # no figure
    with pytest.raises(ValueError, match="'The algorithms observe'"):  # reworded report: named, not StopIteration
        regen._quote(block, "The algorithms observe")


def test_backward_lines_match_a_brute_force_pair_count() -> None:
    rng = np.random.default_rng(0)
    kinds = np.array(["forward"] * 30 + ["backward"] * 170)
    v = rng.integers(0, 12, 200).astype(float)  # many ties
    v[5], v[40], v[41] = np.nan, -np.inf, np.nan  # not scored, singular
    space = {"forward": {"space": 40}, "backward": {"space": 900}}
    lines = regen.backward_lines({"sahd": v}, kinds, ["sahd"], space)
    assert lines[0] == "170 of the 900 cells with a backward edge against 30 of the 40 forward cells:"
    cells = lines[-1].strip("|").split("|")
    ok = ~np.isnan(v)
    a, b = v[ok & (kinds == "forward")], v[ok & (kinds == "backward")]
    pairs = [(x > y) + 0.5 * (x == y) for x in b for y in a]
    assert float(cells[3]) == round(float(np.mean(pairs)), 3)
    assert float(cells[1]) == np.median(a) and float(cells[2]) == np.median(b)
    tied = np.flatnonzero(v == np.nanmax(v))  # the top 1% of the 198 scored cells is 1 cell, any of these
    assert len(tied) > 1
    share, overall = cells[4].replace("(", " ").replace(")", " ").split()
    assert float(share) == round((kinds[tied] == "backward").mean(), 2) and float(overall) == round(169 / 198, 2)


def test_sections_run_on_a_built_table(tmp_path, monkeypatch) -> None:
    tiny = tiny_table()
    blocks = regen.cifar10_section(tiny, tiny, tmp_path)  # the table against itself: every agreement is exact
    rows = {r.split("|")[1].strip(): r.split("|") for r in blocks["cifar10-agreement"] if r.startswith(("| sahd ", "| hd "))}
    assert set(rows) == {"sahd", "hd"} and all(float(r[2]) == 1.0 and float(r[3]) == 1.0 for r in rows.values())
    assert (tmp_path / "agreement.png").stat().st_size > 0
    # the trainings against the scores: tau and rho as scipy computes them on the table's rows
    from scipy import stats

    from snnbench.table import open_table

    t = open_table(tiny)
    (sp,), (tp,) = ([p for p in t.protocols.values() if p.type == k] for k in ("score", "train"))
    score = {h: v for h, v in zip(sp.hash, sp.columns["scores/sahd"])}
    acc: dict = {}
    for h, v in zip(tp.hash, tp.columns["test_acc"]):
        acc.setdefault(h, []).append(v)
    cells = sorted(set(acc) & set(score))
    x, y = [score[h] for h in cells], [np.mean(acc[h]) for h in cells]
    trained = next(r.split("|") for r in blocks["cifar10-scores"] if r.startswith("| sahd "))
    assert float(trained[2].split()[0].strip("*")) == round(stats.kendalltau(x, y).statistic, 3)
    assert float(trained[3].split()[0].strip("*")) == round(stats.spearmanr(x, y).statistic, 3)
    replay = [r.split("|") for r in blocks["cifar10-replay"] if r.startswith(("| random ", "| oracle "))]
    assert len(replay) == 2 and all(len(r) == 4 for r in replay)  # one column, N = 10: the pool holds 8 cells
    assert f"| sahd | {len(cells)} |" in (tmp_path / "report.md").read_text()  # the page's correlation table
    assert blocks["cifar10-replay-paper"][0].startswith("The paper's sampler")

    # kernels: worker processes (which import the script by name) give the naive per-metric computation
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "docs/results"))
    from snnbench.api.benchmark import Benchmark
    from snnbench.api.plots import kernel_matrix, score_inputs

    (lines,) = regen.kernels_section(tiny, tmp_path, count=2, workers=2).values()
    assert regen.kernels_section(tiny, tmp_path, count=2, workers=1) == {"digits-kernels": lines}  # in-process
    bench = Benchmark(tiny)
    data, config = score_inputs(bench)
    test = bench.accuracy["test"]
    done = np.flatnonzero(np.isfinite(test))
    assert lines[0].startswith(f"Over the {len(done)} trained cells")
    for m in ("sahd", "hd"):
        low = [-regen.off_diagonal(kernel_matrix(bench.matrices[u], data, config, m)) for u in done]
        row = next(r.split("|") for r in lines if r.startswith(f"| {m} |"))
        assert float(row[2]) == round(stats.kendalltau(low, test[done]).statistic, 3)
        assert float(row[3]) == round(stats.kendalltau(low, bench.scores[m][done]).statistic, 3)
    assert all((tmp_path / f"kernels_{m}.png").stat().st_size > 0 for m in ("sahd", "hd"))


def test_write_blocks_replaces_marked_text_only(tmp_path) -> None:
    page = tmp_path / "page.md"
    text = ("intro\n<!-- regenerate:a -->\nold a\n<!-- /regenerate -->\nmiddle\n"
            "<!-- regenerate:b -->\nold b\nmore\n<!-- /regenerate -->\nend\n")
    page.write_text(text)
    regen.write_blocks(page, {"b": ["| new |", "", "b"]})
    assert page.read_text() == text.replace("old b\nmore\n", "| new |\n\nb\n")
    before = page.read_text()
    unmarked: list[dict[str, list[str]]] = [{"a": ["x"], "c": ["y"]}, {"c": []}]
    for blocks in unmarked:  # a block without markers: nothing written
        with pytest.raises(SystemExit, match="c$"):
            regen.write_blocks(page, blocks)
        assert page.read_text() == before
    page.write_text(text + "<!-- regenerate:a -->\n<!-- /regenerate -->\n")  # markers twice
    with pytest.raises(SystemExit, match="for a$"):
        regen.write_blocks(page, {"a": ["x"]})


def test_reproduce_recomputes_stored_rows_bit_for_bit_on_the_same_machine() -> None:
    import torch

    from snnbench.table import open_table

    table = open_table(tiny_table())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the build ran them
    try:
        lines = [line for p in table.protocols.values() for line in repro.reproduce(p, [0, 3], None)]
    finally:
        torch.set_num_threads(threads)
    columns = {line.split(": ")[0].split(") ")[1] for line in lines}
    assert {"scores/sahd", "scores/hd", "val_acc", "test_acc", "curves/val_acc", "curves/train_loss"} <= columns
    assert lines and all(line.endswith("(bit for bit)") for line in lines), [x for x in lines if "bit" not in x]


def test_backward_section_against_naive_statistics(tmp_path: Path) -> None:
    """Forward against backward-edge cells on a mixed table: means, best cells and P(backward > forward) by brute
    force over the cell pairs; the paper's cell placed among the forward cells; too few scored cells said so."""
    from snnbench.api.benchmark import Benchmark

    bench = Benchmark(mixed_table())
    acc = bench.accuracy["test"]
    fwd, bwd = acc[bench.kind_array == 0], acc[bench.kind_array == 1]
    blocks = regen.backward_section(mixed_table(), tmp_path, resamples=50)
    assert blocks["digits-backward-space"] == regen.space_lines(bench, ["sahd", "hd"])  # the tiny table: no van Rossum
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in blocks["digits-backward-accuracy"] if line.startswith("| ")}
    assert float(rows["mean test accuracy"][0].split()[0]) == round(fwd.mean(), 4)
    assert float(rows["mean test accuracy"][1].split()[0]) == round(bwd.mean(), 4)
    assert float(rows["best cell"][1].split()[0]) == round(bwd.max(), 4)
    pairs = [(b > f) + 0.5 * (b == f) for b in bwd for f in fwd]
    p_row = next(v for k, v in rows.items() if k.startswith("P(a random backward"))
    assert float(p_row[2].split()[0]) == round(float(np.mean(pairs)), 3)
    paper = bench.query(PAPER_CELL)["accuracy"]["test"]
    assert f"above {(fwd < paper).mean():.1%} of the forward cells" in "\n".join(blocks["digits-backward-accuracy"])
    assert blocks["digits-backward-scores"][0].startswith("3 trained cells with a backward edge hold digits scores")
    forward_only = regen.backward_section(tiny_table(), tmp_path)
    assert forward_only["digits-backward-accuracy"][0].startswith("No cell with a backward edge")
    assert forward_only["digits-backward-space"] == ["The table scores forward cells only: no comparison of the kinds."]


def _with_seed_1(path: Path, values: dict[bytes, dict[str, float]]) -> Path:
    """The mixed table with a seed-1 score row added for each cell of ``values``: a copy of its seed-0 row with the
    scores ``values[cell]`` names set."""
    from snnbench.table import Protocol, open_table, write_table

    protocols = list(open_table(mixed_table()).protocols.values())
    (score,) = [p for p in protocols if p.type == "score"]
    assert set(score.seed.tolist()) == {0}
    extra = np.array([score.hash.tolist().index(h) for h in values])
    columns = {}
    for name, col in score.columns.items():
        columns[name] = np.concatenate([col, col[extra]])
        metric = name.removeprefix("scores/")
        for k, scores in enumerate(values.values()):
            if name.startswith("scores/") and metric in scores:  # not a same-named column outside scores/ (params)
                columns[name][len(score) + k] = scores[metric]
    seeded = Protocol(score.id, score.type, score.settings, hash=np.concatenate([score.hash, score.hash[extra]]),
                      seed=np.concatenate([score.seed, np.ones(len(extra), score.seed.dtype)]), columns=columns)
    write_table(path, [seeded if p is score else p for p in protocols])
    return path


def _seed_0(name: str) -> dict[str, float]:
    """The mixed table's stored ``name`` score of each cell (seed 0, one row a cell)."""
    from snnbench.table import open_table

    (score,) = [p for p in open_table(mixed_table()).protocols.values() if p.type == "score"]
    return {h.decode(): x for h, x in zip(score.hash.tolist(), score.columns[f"scores/{name}"])}


def test_space_lines_rank_every_scored_cell_by_its_seed_0_score(tmp_path: Path) -> None:
    """The whole-space block reads seed 0 only: a second seed scoring the forward cells far above every cell (which
    a mean over seeds would carry to the top) changes nothing; P(backward > forward) and the paper's cell's rank
    by brute force over the seed-0 rows."""
    from snnbench.api.benchmark import Benchmark

    mixed = Benchmark(mixed_table())
    forward = [h.encode() for h, k in zip(mixed.hashes, mixed.kinds) if k == "forward"]
    assert len(forward) == 5
    bench = Benchmark(_with_seed_1(tmp_path / "seeds.h5", dict.fromkeys(forward, {"sahd": 1e6, "hd": 1e6})))
    assert (bench.scores["sahd"][bench.kind_array == 0] > 1e5).all()  # the mean over seeds: forward cells on top
    lines = regen.space_lines(bench, ["sahd", "hd"])
    assert lines[0] == "3 of the 95,584 cells with a backward edge against 5 of the 7,012 forward cells:"
    v = _seed_0("sahd")
    kinds = dict(zip(bench.hashes, bench.kinds))
    f = [x for h, x in v.items() if kinds[h] == "forward"]
    b = [x for h, x in v.items() if kinds[h] == "backward"]
    row = next(r.split("|") for r in lines if r.startswith("| sahd |"))
    assert float(row[4]) == round(float(np.mean([(x > y) + 0.5 * (x == y) for x in b for y in f])), 3)
    paper = v[bench.hashes[bench.index(PAPER_CELL)]]
    assert f"sahd {sum(x > paper for x in v.values()) + 1:,}," in lines[-1] and lines[-1].startswith("The paper's")


def test_limit_lines_name_the_cell_holding_each_scores_highest_seed(tmp_path: Path) -> None:
    """The pick as N grows: the pool cell whose highest score under any seed is the highest, by brute force over the
    stored rows. The forward cell scored lowest under seed 0 gets a seed-1 score above every other, so that cell
    (not the cell with the highest mean over seeds) is the answer; the paper's cell's rank under the same rule."""
    from snnbench.api.benchmark import Benchmark
    from snnbench.api.replay import make_pool

    v = {m: _seed_0(m) for m in ("sahd", "hd")}
    mixed = Benchmark(mixed_table())
    low = min((h for h, k in zip(mixed.hashes, mixed.kinds) if k == "forward"), key=lambda h: v["sahd"][h])
    top = {m: max(v[m].values()) + 1e-3 * np.ptp(list(v[m].values())) for m in v}
    bench = Benchmark(_with_seed_1(tmp_path / "seeds.h5", {low.encode(): top}))
    pool = make_pool(bench, ["sahd", "hd"], "test", kind="backward")
    assert sorted(bench.hashes[u] for u in pool.cells) == sorted(v["sahd"])  # every cell of the table is trained
    lines = regen.limit_lines(bench, pool.cells, ["sahd", "hd"])
    best = {m: {**v[m], low: top[m]} for m in v}  # each cell's highest score over its rows
    assert bench.hashes[int(np.argmax(bench.scores["sahd"]))] != low  # the mean over seeds would pick another cell
    acc = bench.accuracy["test"]
    for m in ("sahd", "hd"):
        h = max(best[m], key=lambda c: best[m][c])
        u = bench.hashes.index(h)
        kind = "a forward cell" if bench.kinds[u] == "forward" else "a cell with a backward edge"
        assert f"{m} `{to_text(bench.matrices[u])}` ({kind}, test accuracy {acc[u]:.4f})" in lines[0]
    assert f"sahd `{to_text(bench.matrices[bench.hashes.index(low)])}` (a forward cell" in lines[0]
    paper = bench.hashes[bench.index(PAPER_CELL)]
    ranks = ", ".join(f"{m} {sum(x > best[m][paper] for x in best[m].values()) + 1}" for m in ("sahd", "hd"))
    assert lines[1] == f"The paper's published cell `{PAPER_CELL}` ranks, among the 8 pool cells: {ranks}."


def test_random_lines_against_a_naive_loop_over_the_same_draws() -> None:
    """Score minus random choice, paired over the trials: the picks redone trial by trial from the seeded draws
    (first draw with the highest score; random choice takes the first draw), scipy's one-sample t interval of the
    differences, the verdict read off the intervals, and the means agree with replay_table's columns."""
    from scipy import stats

    from snnbench.api.benchmark import Benchmark
    from snnbench.api.replay import draw, make_pool

    bench = Benchmark(mixed_table())
    acc, sizes, names = bench.accuracy["test"], [2, 4, 6], ["sahd", "hd", "knows", "inverts"]
    bench.scores["knows"], bench.scores["inverts"] = acc.copy(), -acc  # above random, and below it, at every N
    assert bench.scores_by_seed("sahd")[0] == [0]  # one scoring seed: a draw sees the cell's score
    for dist in ("uniform", "paper"):
        lines = regen.random_lines(bench, sizes, names, "backward", dist)
        table = {r.split("|")[1].strip(): r.split("|")[2:-1] for r in regen.replay_table(bench, sizes, names, "backward", dist)}
        pool = make_pool(bench, names, "test", kind="backward", dist=dist)
        verdict = []
        for m in names:
            row = next(r.split("|")[2:-1] for r in lines if r.startswith(f"| {m} |"))
            above, below = [], []
            for k, n in enumerate(sizes):
                draws = draw(pool, n, 1000, np.random.default_rng([0, n]))
                d = []
                for trial in draws:
                    s = bench.scores[m][trial]
                    d.append(acc[trial[int(np.flatnonzero(s == s.max())[0])]] - acc[trial[0]])
                ci = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
                assert row[k].strip() == f"{np.mean(d):+.4f} [{ci.low:+.4f}, {ci.high:+.4f}]"
                means = [float(table[x][k].split()[0]) for x in (m, "random")]
                assert float(row[k].split()[0]) == pytest.approx(means[0] - means[1], abs=1.5e-4)
                above += [f"{n:,}"] * int(ci.low > 0)
                below += [f"{n:,}"] * int(ci.high < 0)
            said = [f"{side} at N = " + (", ".join(ns[:-1]) + " and " + ns[-1] if len(ns) > 1 else ns[0])
                    for side, ns in (("above", above), ("below", below)) if ns]
            verdict.append(f"{m} " + (" and ".join(said) or "at no N"))
        assert lines[-1] == "Interval wholly above or below zero: " + "; ".join(verdict) + "."
        assert "knows above at N = 2, 4 and 6;" in lines[-1] and lines[-1].endswith("inverts below at N = 2, 4 and 6.")


def test_intervals_of_a_mean_and_of_a_difference_equal_scipys() -> None:
    from scipy import stats

    rng = np.random.default_rng(0)
    a, b = rng.normal(0.96, 0.008, 30), rng.normal(0.965, 0.012, 30)
    lo, hi = regen.mean_interval(a.mean(), a.std(), len(a))  # compare's std: population (ddof 0)
    ci = stats.t.interval(0.95, len(a) - 1, loc=a.mean(), scale=stats.sem(a))
    assert (lo, hi) == pytest.approx(ci)
    d, dlo, dhi = regen.difference_interval({"final_mean": a.mean(), "final_std": a.std()},
                                            {"final_mean": b.mean(), "final_std": b.std()}, 30)
    welch = stats.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert d == pytest.approx(b.mean() - a.mean()) and (dlo, dhi) == pytest.approx((welch.low, welch.high))


def test_front_block_lists_the_cells_no_other_cell_dominates(tmp_path) -> None:
    """The front by brute force over the cell pairs, each row's kind from its matrix (an op below the diagonal),
    the median spikes."""
    from snnbench.api.benchmark import Benchmark

    bench = Benchmark(mixed_table())
    acc, spikes = bench.accuracy["test"].copy(), bench.spikes_per_image
    acc[np.flatnonzero(bench.kind_array == 1)[0]] = 1.0  # a cell with a backward edge on the front, at its top
    bench.accuracy["test"] = acc
    lines = regen.front_block(bench, tmp_path)
    held = np.flatnonzero(np.isfinite(acc) & np.isfinite(spikes))
    naive = {bench.hashes[i] for i in held if not any(
        acc[j] >= acc[i] and spikes[j] <= spikes[i] and (acc[j] > acc[i] or spikes[j] < spikes[i]) for j in held)}
    rows = {r.split("|")[1].strip().strip("`"): r.split("|")[2:4] for r in lines if r.startswith("| `")}
    assert set(rows) == naive and (tmp_path / "front.png").stat().st_size > 0
    for matrix, kind in rows.values():
        m = matrix.strip().strip("`").split()
        backward = any(m[i][j] != "0" for i in range(len(m)) for j in range(i))
        assert kind.strip() == ("backward edge" if backward else "forward")
    assert {k.strip() for _, k in rows.values()} == {"forward", "backward edge"}  # both kinds on this front
    s = sorted(float(spikes[i]) for i in held)
    median = s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2
    assert lines[0].endswith(f"The median trained cell spikes {median:,.0f} times per image.")
