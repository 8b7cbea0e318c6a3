"""docs/results/regenerate.py and reproduce.py, the scripts behind docs/results.md: statistics against naive
computations, sections run end to end on a tiny built table, stored rows recomputed on the machine that built them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from api_tables import tiny_table

_spec = importlib.util.spec_from_file_location("regenerate", Path(__file__).resolve().parents[1] / "docs/results/regenerate.py")
regen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(regen)
_spec = importlib.util.spec_from_file_location("reproduce", Path(__file__).resolve().parents[1] / "docs/results/reproduce.py")
repro = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(repro)


def test_off_diagonal_is_the_mean_normalised_off_diagonal_entry() -> None:
    k = np.array([[4.0, 1.0, 3.0], [1.0, 2.0, 2.0], [3.0, 2.0, 3.0]])  # mean diagonal 3
    assert regen.off_diagonal(k) == (1 + 3 + 1 + 2 + 3 + 2) / 3 / 6


def test_backward_lines_match_a_brute_force_pair_count() -> None:
    rng = np.random.default_rng(0)
    kinds = np.array(["forward"] * 30 + ["backward"] * 170)
    v = rng.integers(0, 12, 200).astype(float)  # many ties
    v[5], v[40], v[41] = np.nan, -np.inf, np.nan  # not scored, singular
    lines = regen.backward_lines({"sahd": v}, kinds, ["sahd"])
    cells = lines[-1].strip("|").split("|")
    ok = ~np.isnan(v)
    a, b = v[ok & (kinds == "forward")], v[ok & (kinds == "backward")]
    pairs = [(x > y) + 0.5 * (x == y) for x in b for y in a]
    assert float(cells[3]) == round(float(np.mean(pairs)), 3)
    assert float(cells[1]) == np.median(a) and float(cells[2]) == np.median(b)
    top = sorted(np.flatnonzero(ok), key=lambda u: (-v[u], u))[:1]  # 1% of the 198 scored cells: 1
    share, overall = cells[4].replace("(", " ").replace(")", " ").split()
    assert float(share) == (kinds[top] == "backward").mean() and float(overall) == round(169 / 198, 2)


def test_sections_run_on_a_built_table(tmp_path) -> None:
    tiny = tiny_table()
    lines = regen.cifar10_section(tiny, tiny, tmp_path)  # the table against itself: every agreement is exact
    cut = next(i for i, r in enumerate(lines) if r.startswith("cifar10 trainings:"))
    rows = {r.split("|")[1].strip(): r.split("|") for r in lines[:cut] if r.startswith(("| sahd ", "| hd "))}
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
    trained = next(r.split("|") for r in lines[cut:] if r.startswith("| sahd "))  # the correlation table (the replay's follows)
    assert float(trained[2].split()[0]) == round(stats.kendalltau(x, y).statistic, 3)
    assert float(trained[3].split()[0]) == round(stats.spearmanr(x, y).statistic, 3)
    replay = [r.split("|") for r in lines[cut:] if r.startswith(("| random ", "| oracle "))]
    assert len(replay) == 2 and all(len(r) == 4 for r in replay)  # one column, N = 10: the pool holds 8 cells
    assert f"| sahd | {len(cells)} |" in (tmp_path / "report.md").read_text()  # the page's correlation table
    lines = regen.kernels_section(tiny, tmp_path, count=2)
    assert lines[0].startswith("kernels: 8 trained cells")
    assert all((tmp_path / f"kernels_{m}.png").stat().st_size > 0 for m in ("sahd", "hd"))


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
