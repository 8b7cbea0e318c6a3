"""A results page for one table view: correlations, the replay table and curve, the algorithm comparison.

:func:`report` runs :func:`api.correlate.correlate`, :func:`api.replay.replay_curve` and
:func:`api.algorithms.compare` on a :class:`~api.benchmark.Benchmark` and writes a Markdown page
(``report.md``, numbers exactly as those functions return them) with its figures next to it. Every
setting that shapes a number (split, sizes, trials, seeds, budget, runs) is printed on the page.
:func:`report_sections` returns the same page as named blocks (for documents that quote one).

Invariants
----------
* Replay sizes larger than the pool of cells holding every score and the accuracy are left out (a
  draw with replacement from a smaller pool says nothing about the paper's N); the page says so.
* A view without accuracies (a score-only table) gets its protocols and a summary of its scores only.
* Seeded: the same table and settings give the same page.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from snnbench.api.algorithms import CompareSettings, check_budget, compare, parse_entries
from snnbench.api.benchmark import Benchmark
from snnbench.api.correlate import correlate, ranked_shares
from snnbench.api.plots import banded, plot_compare, plot_replay_curve, plot_scatter
from snnbench.api.replay import make_pool, replay_curve

DEFAULT_SIZES = (10, 100, 1000, 5000)
DEFAULT_ALGORITHMS = ("random", "evolution", "local", "reinforce", "score_train")


def fmt(x: float | None, digits: int = 4, missing: str = "–") -> str:
    """``x`` to ``digits`` decimals (an integer as it is); ``missing`` for ``None`` or a non-finite value."""
    if x is None or not np.isfinite(x):
        return missing
    return str(x) if isinstance(x, (int, np.integer)) else f"{x:.{digits}f}"


def best_line(best: dict[str, Any], observe: str, split: str) -> str:
    """One sentence on a :func:`compare` result's ``table_best``."""
    ties = (f"{best['tied']:,} cells tie, mean {split} {best[split]:.4f}" if best["tied"] > 1 else
            f"{split} {best[split]:.4f}")
    return (f"Best cell of the searched space by {observe}: `{best['hash']}` ({observe} {best[observe]:.4f}; {ties}); "
            f"the space's best {split} accuracy is {best['max_' + split]:.4f}.")


def top_k_columns(result: dict[str, Any]) -> list[str]:
    """The labels of a :func:`correlate` result's top-k entries over all its scores: counts (``k=10``) first,
    then shares of the cells (``top 1%``), each in the order asked."""
    labels = [e["label"] for r in result["scores"].values() for e in r.get("top_k", [])]
    return list(dict.fromkeys(sorted(labels, key=lambda x: not x.startswith("k="))))


def top_k_note(result: dict[str, Any]) -> str:
    """What the top-k columns of :func:`correlate_table` hold, with the k of each share per number of cells."""
    per_n: dict[int, list[str]] = {}
    for r in result["scores"].values():
        per_n[r["cells"]] = [f"{e['k']:,}" for e in r.get("top_k", []) if e["fraction"] is not None]
    ks = "; ".join(f"k = {', '.join(k)} of {n:,} cells" for n, k in per_n.items() if k)
    return ("top-k precision: the share (0-1) of the k best-scored cells that are among the k most accurate, averaged "
            "over tie-breaks; column k=N takes N cells, top P% takes P% of the score's cells" + (f" ({ks})" if ks else "") + ".")


def correlate_table(result: dict[str, Any]) -> list[str]:
    """The text table of a :func:`correlate` result, one row per score: cells, Kendall tau and Spearman rho
    (with their 95% intervals when bootstrapped), seconds per cell, then top-k precision in labelled columns
    (:func:`top_k_columns`; ``-`` where k exceeds the score's cells); then its footnotes."""
    boot = result.get("bootstrap")
    ci = (lambda v: f" [{fmt(v[0], 3, '-')}, {fmt(v[1], 3, '-')}]" if v else " [-]") if boot else (lambda v: "")  # noqa: E731
    width = 24 if boot else 8
    columns = top_k_columns(result)
    head = (f"{'score':<12} {'cells':>7} {'tau' + (' [95%]' if boot else ''):>{width}} "
            f"{'rho' + (' [95%]' if boot else ''):>{width}} {'s/cell':>7} ")
    cols = " ".join(f"{c:>8}" for c in columns)
    lines = [" " * len(head) + f" {'top-k precision':^{len(cols)}}".rstrip(), head + " " + cols]
    for m, r in result["scores"].items():
        got = {e["label"]: e["precision"] for e in r.get("top_k", [])}
        tau = fmt(r["kendall_tau"], 3, "-") + ci(r.get("kendall_tau_ci"))
        rho = fmt(r["spearman_rho"], 3, "-") + ci(r.get("spearman_rho_ci"))
        seconds = seconds_entry(r["seconds_per_cell"], r["seconds_column"], "-")
        lines.append(f"{m:<12} {r['cells']:>7} {tau:>{width}} {rho:>{width}} {seconds:>7}  "
                     + " ".join(f"{fmt(got.get(c), 3, '-'):>8}" for c in columns))
    lines.append(top_k_note(result))
    note = seconds_note([r["seconds_column"] for r in result["scores"].values()], "*")
    return lines + ([note] if note else [])


def _protocol_lines(bench: Benchmark) -> list[str]:
    lines = []
    for pid, meta in bench.metadata.items():
        s = meta["settings"]
        what = (f"scores {', '.join(s['score']['metrics'])}; batch {s['score']['batch_size']}, "
                f"{s['score']['repeats']} batches" if meta["type"] == "score" else
                f"{s['train']['epochs']} epochs, {s['train']['optimizer']} lr {s['train']['lr']}, batch {s['train']['batch_size']}")
        env = meta["environments"][0] if meta["environments"] else {}
        lines.append(f"- `{pid}` ({meta['type']}): {meta['cells']:,} cells, {meta['rows']:,} rows, seeds "
                     f"{meta['seeds']}; {what}; dataset `{s['dataset']['name']}`, network {s['network']['preset']} "
                     f"{s['network']['config']['c1']}/{s['network']['config']['c2']}/{s['network']['config']['hidden']}, "
                     f"pool {s['network']['config']['pool']}, T {s['network']['config']['timesteps']}; {s['device']} "
                     f"({env.get('device_name', '?')}), {env.get('workers', '?')} workers")
    return lines


def equal_cost_lines(result: dict[str, Any], split: str = "test") -> list[str]:
    """Random search's incumbent at each ``score_train`` entry's mean cost, from one :func:`compare` result.

    The point read is the first curve time at or past that cost (the same seeded runs as the table: the
    algorithms' runs do not depend on each other), so random search is never credited with less time.
    """
    algos = result["algorithms"]
    if "random" not in algos:
        return []
    times, rand = np.asarray(result["times"]), algos["random"]["curve_mean"]
    lines = []
    for name, r in algos.items():
        if name.split(":")[0] != "score_train":
            continue
        k = min(int(np.searchsorted(times, r["seconds_mean"])), len(times) - 1)
        lines.append(f"- `{name}` ends at {r['seconds_mean']:,.0f} s on average: random search's {split} accuracy "
                     f"at {times[k]:,.0f} s is {fmt(rand[k])}, against {fmt(r['final_mean'])}.")
    return ["", "At equal cost (the paper's search against random search):", "", *lines] if lines else []


def library_lines(entries: list[str]) -> list[str]:
    """How the library methods among ``entries`` are charged (none: no line)."""
    lines = []
    if any(e.startswith("syne:") for e in entries):
        lines.append("`syne:*` entries are Syne Tune's schedulers on its simulator backend (api.synetune): every trial "
                     "pays its epochs (an isomorphic repeat too), multi-fidelity ones stop trainings early, and a cell "
                     "counts as trained, and as the incumbent, by the best validation accuracy any of its epochs showed.")
    if any(e.startswith("optuna:") for e in entries):
        lines.append("`optuna:*` entries are Optuna's samplers paying through the same oracle as the built-in "
                     "algorithms (api.optuna_search).")
    return ["", *lines] if lines else []


def report(bench: Benchmark, out: str | os.PathLike[str], *, title: str, **settings: Any) -> Path:
    """Write ``out/report.md`` and its figures for ``bench``; returns the page's path.

    ``settings``: those of :func:`report_sections`; the page is its sections in order.
    """
    return write_page(report_sections(bench, out, title=title, **settings), out)


def write_page(sections: dict[str, list[str]], out: str | os.PathLike[str]) -> Path:
    """Write ``out/report.md``: the blocks of :func:`report_sections` in order; returns its path."""
    page = Path(out) / "report.md"
    page.write_text("\n".join(line for block in sections.values() for line in block) + "\n")
    return page


def seconds_entry(value: float | None, column: str, missing: str = "–") -> str:
    """A seconds-per-cell entry from :meth:`Benchmark.scoring_seconds`' column; ``*`` marks the score row's time."""
    return fmt(value, 3, missing) + ("*" if column == "seconds" else "")


def seconds_note(columns: list[str], star: str = "\\*") -> str | None:
    """The footnote of :func:`seconds_entry` entries from ``columns`` (None when every score has its own time)."""
    if "seconds" not in columns:
        return None
    return (f"{star} The score row's time, every metric of the protocol computed together: the table holds no time of "
            "this score alone for every cell (`metric_seconds/METRIC`, stored by builds since it was added).")


def report_sections(bench: Benchmark, out: str | os.PathLike[str], *, title: str, split: str = "test",
                    observe: str = "val", sizes: Sequence[int] = DEFAULT_SIZES, trials: int = 1000,
                    scores: Sequence[str] | None = None, algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
                    budget: float | None = None, runs: int = 100, score: str = "sahd", seed: int = 0,
                    bootstrap: int = 0, correlation: dict[str, Any] | None = None,
                    score_costs: dict[str, float] | None = None, kind: str | None = None,
                    progress: bool | None = False) -> dict[str, list[str]]:
    """The report's Markdown blocks, in page order, writing their figures into ``out``.

    Keys: ``head`` (title, protocols), then ``summary`` for a view without ``split`` accuracies, else
    ``scores``, ``replay`` and, when the budget is positive, ``compare`` (its last lines: random search at
    each ``score_train`` entry's cost). ``budget`` defaults to the time of training 10% of the searchable
    cells (mean training time). ``correlation``: the caller's own ``correlate(bench, split, bootstrap=bootstrap,
    seed=seed)``, used instead of recomputing it (one made with other settings or scores is refused).
    ``score_costs``: seconds per cell charged for scoring by each metric (:func:`api.algorithms.compare`).
    ``kind``: the space replayed and searched (default: :func:`api.replay.default_kind`); with ``"forward"`` the
    correlations are over the forward cells only (``correlate(..., cells="forward")``), else over all cells.
    ``progress``: the bars of the bootstrap and the comparison on stderr (``None``: on a terminal).
    """
    names = list(bench.scores)
    chosen = list(scores) if scores is not None else names
    for s in (split, observe):  # every option is checked before the first figure is computed
        bench.check_split(s)
    if kind not in (None, "forward", "backward"):
        raise ValueError(f"kind: expected forward or backward, got {kind!r}")
    cells = "forward" if kind == "forward" else "all"
    if np.isfinite(bench.accuracy[split]).any():
        bench.check_scores(chosen)
        parse_entries(bench, algorithms, score, score_costs, observe)
        if budget:  # 0: no search section
            check_budget(budget)
        if correlation is None:  # before the folder is made: a refused report leaves nothing behind
            corr = correlate(bench, split, bootstrap=bootstrap, seed=seed, progress=progress, cells=cells)
        else:
            corr, resampled = correlation, correlation.get("bootstrap", {})
            made = (corr["split"], resampled.get("resamples", 0), resampled.get("seed", seed), list(corr["scores"]),
                    corr.get("cells", "all"))
            if made != (split, bootstrap, seed, names, cells):
                raise ValueError(f"correlation: made for (split, bootstrap, seed, scores, cells) {made}, the report needs "
                                 f"{(split, bootstrap, seed, names, cells)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sections = {"head": [f"## {title}", "", f"Table `{bench.path.name}`; view protocols:", "", *_protocol_lines(bench), ""]}

    if not np.isfinite(bench.accuracy[split]).any():  # a score-only view: describe its scores, nothing to rank
        lines = sections["summary"] = [
            f"No cell of this view holds a {split} accuracy, so there is nothing to correlate, replay or search "
            "against; the scores it holds:", "", "| score | cells | singular | min | mean | max | seconds per cell |",
            "|---|---|---|---|---|---|---|"]
        columns = []
        for m, v in bench.scores.items():
            ok = np.isfinite(v)
            seconds, column = bench.scoring_seconds(m)
            columns.append(column)
            lines.append(f"| {m} | {int((~np.isnan(v)).sum()):,} | {int(np.isneginf(v).sum()):,} | "
                         f"{fmt(v[ok].min() if ok.any() else None)} | {fmt(v[ok].mean() if ok.any() else None)} | "
                         f"{fmt(v[ok].max() if ok.any() else None)} | {seconds_entry(np.nanmean(seconds), column)} |")
        note = seconds_note(columns)
        lines += ["", note] if note else []
        return sections

    ci = (lambda v: f" [{fmt(v[0], 3)}, {fmt(v[1], 3)}]" if v else "") if bootstrap else (lambda v: "")  # noqa: E731
    interval = " [95% interval]" if bootstrap else ""
    lines = sections["scores"] = [
        f"### Scores against {split} accuracy", "",
        f"| score | cells | Kendall tau{interval} | Spearman rho{interval} | top-10% precision | seconds per cell |",
        "|---|---|---|---|---|---|"]
    for m, r in corr["scores"].items():
        tenth = max(1, int(round(0.1 * r["cells"])))
        top = r["top_k_precision"].get(str(tenth))
        lines.append(f"| {m} | {r['cells']:,} | {fmt(r['kendall_tau'], 3)}{ci(r.get('kendall_tau_ci'))} | "
                     f"{fmt(r['spearman_rho'], 3)}{ci(r.get('spearman_rho_ci'))} | {fmt(top, 3)} | "
                     f"{seconds_entry(r['seconds_per_cell'], r['seconds_column'])} |")
    note = seconds_note([r["seconds_column"] for r in corr["scores"].values()])
    lines += ["", note] if note else []
    if bootstrap:
        best = ranked_shares(corr["bootstrap"]["best_tau"])
        lines += ["", f"Intervals: {bootstrap:,} paired bootstrap resamples of the cells (seed {seed}); highest tau "
                      f"in the resamples: {best or 'none defined'}."]
    for r in corr["seed_agreement"]:
        lines += ["", f"Accuracy against itself: seed {r['seeds'][0]} against seed {r['seeds'][1]} on {r['cells']:,} cells, "
                      f"Kendall tau {fmt(r['kendall_tau'], 3)}, Spearman rho {fmt(r['spearman_rho'], 3)}, mean |difference| "
                      f"{fmt(r['mean_abs_difference'], 4)} (the noise any score's correlation is measured through)."]
    plot_scatter(bench, names, split, out / "scores.png")
    lines += ["", "![scores against accuracy](scores.png)", ""]

    pool = make_pool(bench, chosen, split, kind)  # type: ignore[arg-type]
    kept = [n for n in sizes if n <= len(pool.cells)]
    lines = sections["replay"] = [
        f"### Replay: draw N cells ({pool.kind} space, paper sampling restricted to the {len(pool.cells):,} cells "
        f"with every score and the {split} accuracy), pick the best-scored", "", f"Pool: {pool.describe()}.", ""]
    if len(pool.cells):
        heavy = int(np.argmax(pool.prob))
        lines += [f"The paper's sampler weighs a cell by the raw matrices that reach it: this pool's effective size "
                  f"(1 / sum p^2) is {pool.effective_size:,.1f} of {len(pool.cells):,} cells; its heaviest cell, "
                  f"`{bench.hashes[pool.cells[heavy]]}`, takes {pool.prob[heavy]:.1%} of the draws.", ""]
    if len(kept) < len(sizes):
        lines += [f"Sizes above the pool ({', '.join(str(n) for n in sizes if n not in kept)}) are left out.", ""]
    if kept:
        curve = replay_curve(bench, kept, trials, chosen, split=split, kind=pool.kind, seed=seed)  # type: ignore[arg-type]
        lines += [f"{trials:,} trials per N (seeded by ({seed}, N)); {split} accuracy of the picked cell, "
                  "mean ± std.", "", "| method | " + " | ".join(f"N = {n:,}" for n in kept) + " |",
                  "|---|" + "---|" * len(kept)]
        for m, r in curve["methods"].items():
            lines.append(f"| {m} | " + " | ".join(f"{a:.4f} ± {s:.4f}" for a, s in zip(r["mean"], r["std"])) + " |")
        plot_replay_curve(curve, out / "replay.png")
        lines += ["", "![accuracy against N](replay.png)", ""]

    in_space = bench.kind_array == 0 if pool.kind == "forward" else np.ones(len(bench), bool)
    cost = bench.train_seconds[np.isfinite(bench.accuracy[observe]) & np.isfinite(bench.train_seconds) & in_space]
    if budget is None:
        budget = float(0.1 * len(cost) * cost.mean()) if len(cost) else 0.0
    if budget > 0:
        result = compare(bench, CompareSettings(algorithms, budget, runs, observe=observe, split=split, score=score,
                                                seed=seed, score_costs=score_costs, kind=pool.kind,
                                                progress=progress))
        costs = {e.partition(":")[2] or score: r["score_cost"] for e, r in result["algorithms"].items()
                 if e.partition(":")[0] == "score_train" and r["score_cost"] is not None}
        paid = ("the stored scoring time (every metric of the score protocol, computed together)" if not costs else
                "each metric's own scoring time per cell (" + ", ".join(f"{m} {c:g} s" for m, c in costs.items()) +
                "; the stored time where none is given)")
        best = result["table_best"]
        band = ", shaded across the runs' interquartile range" if banded(result) else ""
        lines = sections["compare"] = [
            f"### NAS algorithms with simulated cost ({runs} runs, budget {budget:,.6g} s)", "",
            f"The algorithms observe {observe} accuracy and pay the stored training time (and, for `score_train`, "
            f"{paid}: it scores 100 random cells by {score} — by M for `score_train:M` — and "
            f"trains the 5 best-scored); the incumbent's {split} accuracy is reported. In the figure a curve is the mean "
            f"over runs{band}; it starts once every run has trained a cell and ends (marked) where its last run ends. {best_line(best, observe, split)}", "",
            f"| algorithm | final {split} accuracy (mean ± std) | cells trained | simulated seconds |", "|---|---|---|---|"]
        for name, r in result["algorithms"].items():
            final = "–" if r["final_mean"] is None else f"{r['final_mean']:.4f} ± {r['final_std']:.4f}"
            lines.append(f"| {name} | {final} | {r['trained_mean']:.1f} | {r['seconds_mean']:,.6g} |")
        lines += library_lines(list(result["algorithms"]))
        lines += equal_cost_lines(result, split)
        plot_compare(result, out / "compare.png")
        lines += ["", "![best accuracy against simulated time](compare.png)", ""]
    return sections

