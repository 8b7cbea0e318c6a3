"""``snnbench query | replay | compare | correlate | report``: read a built table (see ``docs/api.md``)."""

from __future__ import annotations

import math
from typing import Any

import click

from snnbench.cli.common import SEED, Aliased, FiniteFloatRange, NonEmptyPath, echo_json, matrix_argument

table_option = click.option("--table", "table", type=NonEmptyPath(dir_okay=False), default=None,
                            help="Table file (default: $SNNBENCH_TABLE, else the table shipped for --dataset, digits when "
                                 "none is named; a build's output is read only when named here or in $SNNBENCH_TABLE).")
view_options = [
    click.option("--score-protocol", default=None, help="Score protocol id (prefix) when the table holds several."),
    click.option("--train-protocol", default=None, help="Train protocol id (prefix) when the table holds several."),
    click.option("--dataset", default=None, help="The dataset whose protocols are read, from its shipped table unless "
                 "--table or $SNNBENCH_TABLE names one (default: digits; in a named table, any dataset)."),
]
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
split_option = click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True,
                            help="Accuracy reported (of the picked or best cells; correlate: ranked against).")
observe_option = click.option("--observe", type=click.Choice(["train", "val", "test"]), default="val", show_default=True,
                              help="Accuracy the search algorithms see while they search.")


def scores_option(former: str) -> Any:
    """``--scores``: the score metrics a command compares, as build's ``--scores`` names those it computes
    (docs/cli.md); ``former``: the command's former spelling, still accepted."""
    return click.option("--scores", former, "scores", cls=Aliased, default="sahd,hd", show_default=True,
                        help="Comma-separated score metrics to pick cells by, one method each ('all': every score the "
                             "table holds).")

samples_option = click.option("--samples", "-n", type=click.IntRange(min=1), multiple=True, default=(10, 100, 1000, 5000),
                              show_default=True, help="Cells drawn per trial (N), repeatable: one point of the curve each.")
trials_option = click.option("--trials", type=click.IntRange(min=1), default=1000, show_default=True,
                             help="Draws of N cells per size, averaged.")
runs_option = click.option("--runs", type=click.IntRange(min=1), default=100, show_default=True,
                           help="Runs of each search algorithm (seeds --seed, --seed + 1, ...), averaged.")
train_score_option = click.option("--score", default="sahd", show_default=True,
                                  help="The score score_train ranks its candidates by (score_train:METRIC names another).")
bootstrap_option = click.option("--bootstrap", type=click.IntRange(min=0), default=0, show_default=True,
                                help="Resamples for 95% intervals of tau and rho (paired across scores; 0: none, 1000 "
                                     "is usual).")


def _score_names(text: str, bench: Any) -> list[str]:
    """``--scores`` text -> metric names: ``all`` is every score ``bench`` holds."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    return list(bench.scores) if names == ["all"] else names


def _view(func: Any) -> Any:
    for option in reversed(view_options):
        func = option(func)
    return table_option(func)


def _open(table: str | None, score_protocol: str | None, train_protocol: str | None, dataset: str | None) -> Any:
    from snnbench.api.benchmark import load

    return load(table, score=score_protocol, train=train_protocol, dataset=dataset)


score_cost_option = click.option(
    "--score-cost", "score_costs", multiple=True, metavar="METRIC=SECONDS",
    help="Seconds charged per cell scored by METRIC in score_train (repeatable; default: the metric's own stored "
         "seconds where every cell has them, else the score row's, which time every metric together).")


def _costs(values: tuple[str, ...]) -> dict[str, float]:
    """``("sahd=0.1", ...)`` -> ``{"sahd": 0.1}``; ``ValueError`` for a malformed or negative entry."""
    out = {}
    for v in values:
        metric, _, seconds = v.partition("=")
        try:
            cost = float(seconds)
        except ValueError:
            cost = math.nan
        if not metric.strip() or not math.isfinite(cost) or cost < 0:
            raise ValueError(f"--score-cost: expected METRIC=SECONDS with seconds >= 0, got {v!r}")
        out[metric.strip()] = cost
    return out


def _fmt(v: Any, digits: int = 4) -> str:
    from snnbench.api.report import fmt

    return fmt(v, digits, missing="-")


@click.command()
@matrix_argument
@_view
@click.option("--seed", type=SEED, default=None, help="One seed's results instead of the mean over seeds.")
@click.option("--epoch", type=click.IntRange(min=1), default=None,
              help="As training stood after this epoch (its accuracies, the time to reach it); default: the end.")
@json_option
def query(matrix: tuple[str, ...], table: str | None, score_protocol: str | None, train_protocol: str | None,
          dataset: str | None, seed: int | None, epoch: int | None, as_json: bool) -> None:
    """The record of MATRIX ("0302 0030 3003 0000", four rows, or JSON; any isomorphic or unpruned form)."""
    bench = _open(table, score_protocol, train_protocol, dataset)
    rec = bench.query(" ".join(matrix), seed, epoch)
    if as_json:
        echo_json(rec)
        return
    click.echo(f"{rec['hash']}  {rec['text']}  {rec['kind']}  params {_fmt(rec['params'])}")
    score_seeds = rec["seeds"].get("score", [])
    if rec["scores"] and (seed is not None or len(score_seeds) > 1):
        click.echo(f"  scores of      seed {seed}" if seed is not None else
                   f"  scores         mean over seeds {score_seeds} (--seed S: one seed's)")
    for m, v in rec["scores"].items():
        own = rec["metric_seconds"].get(m)
        click.echo(f"  score {m:<12} {_fmt(v)}" + ("  (singular)" if rec["singular"].get(m) else "")
                   + ("" if own is None else f"  ({_fmt(own, 3)} s)"))
    acc = rec["accuracy"]
    click.echo(f"  accuracy       train {_fmt(acc['train'])}  val {_fmt(acc['val'])}  test {_fmt(acc['test'])}"
               f"  (seeds {rec['seeds'].get('train', []) if seed is None else seed}"
               f"{'' if epoch is None else f'; after epoch {epoch} of {bench.epochs}'})")
    if rec["spikes"]:
        click.echo(f"  spikes/image   {_fmt(rec['spikes']['per_image'], 1)}  rate {_fmt(rec['spikes']['rate'])}")
    click.echo(f"  seconds        train {_fmt(rec['train_seconds'], 2)}  score {_fmt(rec['score_seconds'], 3)}")
    if rec["missing"]:
        click.echo(f"  no results in protocol {', '.join(rec['missing'])}")


@click.command()
@_view
@samples_option
@trials_option
@scores_option("--score")
@split_option
@click.option("--kind", type=click.Choice(["forward", "backward"]), default=None,
              help="Space to replay (backward includes the forward cells). Default: backward when cells with a backward "
                   "edge are trained, unless only the forward space is complete.")
@click.option("--dist", type=click.Choice(["paper", "uniform"]), default="paper", show_default=True,
              help="How cells are drawn: the paper's sampler (edge by edge), or uniformly over the space's cells.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seeds the draws.")
@click.option("--mean-score", is_flag=True, help="Pick by each cell's mean score over its scoring seeds (the denoised "
              "pick); default: each draw sees one seed's score, as the paper scores every draw from a fresh initialisation.")
@click.option("--plot", type=NonEmptyPath(dir_okay=False), default=None, help="Write the accuracy-vs-N plot here.")
@json_option
def replay(table: str | None, score_protocol: str | None, train_protocol: str | None, dataset: str | None,
           samples: tuple[int, ...], trials: int, scores: str, split: str, kind: str | None, dist: str, seed: int,
           mean_score: bool, plot: str | None, as_json: bool) -> None:
    """Replay "draw N cells, train the best-scored": picked accuracy vs random choice and the oracle best of N."""
    from snnbench.api.plots import plot_replay_curve
    from snnbench.api.replay import Pool, make_pool, replay_curve

    bench = _open(table, score_protocol, train_protocol, dataset)
    names = _score_names(scores, bench)
    size = len(make_pool(bench, names, split, kind, dist).cells)  # type: ignore[arg-type]
    sizes = [n for n in sorted(set(samples)) if n <= size]
    if len(sizes) < len(set(samples)):  # draws with replacement from fewer cells than N say little
        above = ", ".join(f"{n:,}" for n in sorted(set(samples)) if n > size)
        if not sizes:
            raise ValueError(f"samples: N = {above} is more than the {size:,} cells of the pool")
        click.echo(f"left out N = {above}: more than the {size:,} cells of the pool", err=True)
    curve = replay_curve(bench, sizes, trials, names, split=split, kind=kind, dist=dist, seed=seed,  # type: ignore[arg-type]
                         mean_score=mean_score)
    if plot:
        plot_replay_curve(curve, plot)
    if as_json:
        echo_json(curve)
        return
    click.echo(f"{curve['kind']} space, {dist} sampling, {trials} trials, {split} accuracy of the picked cell (mean ± std)")
    if curve["score_seeds"] > 1:
        click.echo(f"scores: up to {curve['score_seeds']} seeds a cell; " + ("picked by the mean over seeds" if
                   curve["score_draw"] == "mean" else "each draw sees one seed's score (--mean-score: their mean)"))
    click.echo(f"pool: {curve['pool']:,} cells: {Pool.describe_coverage(curve['coverage'])}")
    click.echo(f"{'N':>8}  " + "  ".join(f"{m:>17}" for m in curve["methods"]))
    for i, n in enumerate(curve["sizes"]):
        cells = [f"{r['mean'][i]:8.4f} ± {r['std'][i]:6.4f}" for r in curve["methods"].values()]
        click.echo(f"{n:>8}  " + "  ".join(cells))
    if plot:
        click.echo(f"plot: {plot}")


ALGORITHMS_HELP = ("Comma-separated: random, evolution, local, reinforce, score_train, score_train:METRIC; with the "
                   "synetune extra syne:random|rea|tpe|asha|hyperband|morea|moasha, with the optuna extra "
                   "optuna:tpe|cmaes|nsga2|random.")


@click.command()
@_view
@click.option("--algorithms", default="random,evolution,local,reinforce,score_train", show_default=True,
              help=ALGORITHMS_HELP)
@click.option("--budget", type=FiniteFloatRange(min=0, min_open=True), required=True, help="Simulated seconds per run.")
@runs_option
@train_score_option
@click.option("--candidates", type=click.IntRange(min=1), default=100, show_default=True, help="score_train: cells scored.")
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True, help="score_train: best-scored cells trained.")
@observe_option
@split_option
@score_cost_option
@click.option("--kind", type=click.Choice(["forward", "backward"]), default=None,
              help="Space searched (backward includes the forward cells); default as for replay.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the first run.")
@click.option("--plot", type=NonEmptyPath(dir_okay=False), default=None, help="Write best accuracy vs time here.")
@json_option
def compare(table: str | None, score_protocol: str | None, train_protocol: str | None, dataset: str | None,
            algorithms: str, budget: float, runs: int, score: str, candidates: int, top: int, observe: str, split: str,
            score_costs: tuple[str, ...], kind: str | None, seed: int, plot: str | None, as_json: bool) -> None:
    """Offline NAS algorithms with simulated cost (stored training and scoring times)."""
    from snnbench.api.algorithms import CompareSettings
    from snnbench.api.algorithms import compare as run_compare
    from snnbench.api.plots import plot_compare
    from snnbench.api.report import best_line

    bench = _open(table, score_protocol, train_protocol, dataset)
    names = [a.strip() for a in algorithms.split(",") if a.strip()]
    costs = _costs(score_costs)
    settings = CompareSettings(names, budget, runs, observe=observe, split=split, score=score, seed=seed, kind=kind,
                               options={"score_train": {"candidates": candidates, "top": top}}, score_costs=costs,
                               progress=None)
    result = run_compare(bench, settings)
    if plot:
        plot_compare(result, plot)
    if as_json:
        echo_json(result)
        return
    space = result["space"]
    click.echo(f"{result['kind']} space: {space['cells']:,} trained cells ({space['forward']:,} forward, {space['backward']:,} "
               f"with a backward edge)")
    click.echo(f"budget {budget:g} s, {runs} runs. {best_line(result['table_best'], observe, split)}")
    click.echo(f"{'algorithm':<12} {'final ' + split:>16} {'trained':>8} {'seconds':>10}")
    for name, r in result["algorithms"].items():
        final = "-" if r["final_mean"] is None else f"{r['final_mean']:.4f} ± {r['final_std']:.4f}"
        click.echo(f"{name:<12} {final:>16} {r['trained_mean']:8.1f} {r['seconds_mean']:10.1f}")
    for name, r in result["algorithms"].items():
        if r["score_charge"] is not None:
            what = f"{r['score_cost']:g} s given" if r["score_charge"] == "given" else f"the stored {r['score_charge']}"
            click.echo(f"{name}: each scored cell charged {what}")
    if plot:
        click.echo(f"plot: {plot}")


@click.command()
@_view
@split_option
@click.option("--scores-from", "scores_from", type=NonEmptyPath(dir_okay=False, exists=True), default=None,
              help="Rank by the scores of this other table (cells matched by hash), e.g. CIFAR-10 scores "
                   "against digits accuracies; also prints how the two tables' scores agree.")
@bootstrap_option
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seeds the resampling.")
@click.option("--cell-kind", type=click.Choice(["all", "forward", "backward"]), default="all", show_default=True,
              help="Correlate over all cells, forward cells only, or cells with a backward edge only.")
@json_option
def correlate(table: str | None, score_protocol: str | None, train_protocol: str | None, dataset: str | None,
              split: str, scores_from: str | None, bootstrap: int, seed: int, cell_kind: str, as_json: bool) -> None:
    """Kendall tau, Spearman rho and top-k precision of every stored score against accuracy."""
    from snnbench.api.correlate import agreement, ranked_shares
    from snnbench.api.correlate import correlate as run_correlate
    from snnbench.api.report import correlate_table

    bench = _open(table, score_protocol, train_protocol, dataset)
    source = None if scores_from is None else _open(scores_from, None, None, None)
    result = run_correlate(bench, split, source=source, bootstrap=bootstrap, seed=seed, progress=None, cells=cell_kind)
    shared = [m for m in result["scores"] if m in bench.scores]
    if source is not None and shared:  # the scores both tables hold (the source may hold more, or others)
        result["agreement"] = agreement(bench, source, shared)
    if as_json:
        echo_json(result)
        return
    origin = f" (scores from {source.path.name})" if source is not None else ""
    which = {"all": "all cells", "forward": "forward cells", "backward": "cells with a backward edge"}[cell_kind]
    click.echo(f"{split} accuracy of {which}; protocols {', '.join(result['protocols'])}{origin}; the view holds {bench.holds()}")
    click.echo("\n".join(correlate_table(result)))
    boot = result.get("bootstrap")
    if boot:
        click.echo(f"highest tau in {boot['resamples']:,} paired resamples (seed {boot['seed']}): "
                   f"{ranked_shares(boot['best_tau'])}")
    for r in result["seed_agreement"]:
        click.echo(f"seed {r['seeds'][0]} against seed {r['seeds'][1]} ({split} accuracy, {r['cells']} cells): "
                   f"tau {_fmt(r['kendall_tau'], 3)}, rho {_fmt(r['spearman_rho'], 3)}, "
                   f"mean |difference| {_fmt(r['mean_abs_difference'], 4)}")
    if "agreement" in result:
        click.echo(f"agreement of the two tables' scores on {result['agreement']['shared_cells']:,} shared cells:")
        for m, r in result["agreement"]["scores"].items():
            click.echo(f"{m:<12} {r['cells']:>7} {_fmt(r['kendall_tau'], 3):>8} {_fmt(r['spearman_rho'], 3):>8}")


@click.command()
@_view
@click.option("--out", "out", type=NonEmptyPath(file_okay=False), required=True, help="Folder for report.md and its figures.")
@click.option("--title", default=None, help="Heading of the page (default: the table's file name).")
@split_option
@observe_option
@samples_option
@trials_option
@scores_option("--replay-scores")
@click.option("--algorithms", default="random,evolution,local,reinforce,score_train", show_default=True,
              help=ALGORITHMS_HELP)
@click.option("--budget", type=FiniteFloatRange(min=0, min_open=True), default=None,
              help="Simulated seconds per search run (default: training 10% of the searchable cells).")
@runs_option
@train_score_option
@score_cost_option
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seeds the replay's draws, the searches' first run "
              "and the resampling.")
@bootstrap_option
@click.option("--kind", type=click.Choice(["forward", "backward"]), default=None,
              help="Space replayed and searched (forward: correlations over forward cells too); default as for replay.")
@click.option("--force", is_flag=True, help="Write into an --out folder that holds files (its report.md and figures are replaced).")
def report(table: str | None, score_protocol: str | None, train_protocol: str | None, dataset: str | None, out: str,
           title: str | None, split: str, observe: str, samples: tuple[int, ...], trials: int, scores: str,
           algorithms: str, budget: float | None, runs: int, score: str, score_costs: tuple[str, ...], seed: int,
           bootstrap: int, kind: str | None, force: bool) -> None:
    """Write a results page (correlations, replay table and curve, algorithm comparison) with its figures into
    --out, a new or empty folder unless --force."""
    import os

    from snnbench.api.report import report as write_report
    from snnbench.cli.common import InputError

    if not force and os.path.isdir(out) and os.listdir(out):
        raise InputError(f"--out: {out} is not empty (an earlier report?); name a new folder, or pass --force to replace "
                         "its report.md and figures")
    bench = _open(table, score_protocol, train_protocol, dataset)
    page = write_report(bench, out, title=title or bench.path.name, split=split, observe=observe,
                        sizes=sorted(set(samples)), trials=trials,
                        scores=_score_names(scores, bench),
                        algorithms=[a.strip() for a in algorithms.split(",") if a.strip()], budget=budget, runs=runs,
                        score=score, seed=seed, bootstrap=bootstrap, score_costs=_costs(score_costs), kind=kind,
                        progress=None)
    click.echo(str(page))
