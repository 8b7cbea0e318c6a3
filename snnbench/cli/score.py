"""``snnbench score``: the training-free score of one cell's untrained network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from snnbench.cli.common import (SEED, Aliased, InputError, NonEmptyPath, echo_json, matrix_argument, parse_matrix, threads_option,
                                 torch_threads)
from snnbench.names import METRIC_ALIASES, METRICS, NETWORK_PRESETS, SCORE_MODES
from snnbench.table import Protocol, open_table

# Options that --like takes from the table's protocol (a value given with it is refused, not silently overridden)
_LIKE_TAKES = ("dataset", "preset", "batch_size", "repeats", "mode")


def _flag(ctx: click.Context, name: str) -> str:
    """The option's name in the vocabulary (docs/cli.md), whichever spelling was typed."""
    return next(p.opts[0] for p in ctx.command.params if p.name == name)


def _score_protocol(table: str, key: str | None) -> Protocol:
    """The score protocol of ``table`` that ``key`` (an id prefix) names, or its only one."""
    t = open_table(table)
    if key is not None:
        p = t.protocol(key)
        if p.type != "score":
            raise ValueError(f"--score-protocol: {p.id} of {table} is a {p.type} protocol, not a score protocol")
        return p
    scores = [p for p in t.protocols.values() if p.type == "score"]
    if len(scores) != 1:
        raise ValueError(f"--like: {table} holds {len(scores)} score protocols"
                         + (f" ({', '.join(p.id for p in scores)}): choose one with --score-protocol" if scores else ""))
    return scores[0]


def _protocol_dataset(settings: dict[str, Any], data_dir: str | None) -> Any:
    """The dataset a protocol was built on, split as it was; an .npz one refused unless its files hash as recorded."""
    from snnbench.data import load_dataset, npz_digest

    d = settings["dataset"]
    if "sha256" in d:
        if not Path(d["name"]).exists():
            raise ValueError(f"--like: the protocol's dataset {d['name']!r} is not a file here (it was named at build "
                             "time; score it with --dataset PATH.npz and the protocol's settings)")
        if npz_digest(d["name"]) != d["sha256"]:
            raise ValueError(f"--like: {d['name']} is not the files the protocol names (sha256 differs)")
    return load_dataset(d["name"], data_dir, val_fraction=d["val_fraction"], seed=d["split_seed"])


def _stored(p: Protocol, column: str, cell_hash: str, seed: int) -> float | None:
    """The protocol's stored ``column`` for the row (cell, seed), None when it holds no such row."""
    rows = [i for i, (h, s) in enumerate(zip(p.hash.tolist(), p.seed.tolist())) if h.decode() == cell_hash and s == seed]
    return float(p.columns[column][rows[0]]) if rows else None


@click.command()
@matrix_argument
@click.option("--dataset", default="digits", show_default=True,
              help="digits, cifar10, cifar100, tinyimagenet, or a train .npz path.")
@click.option("--data-dir", type=NonEmptyPath(file_okay=False), default=None, help="Folder holding the dataset files (default: $SNNBENCH_DATA_DIR or ~/.cache/snnbench/data).")
@click.option("--preset", type=click.Choice(NETWORK_PRESETS), default="bench", show_default=True, help="Skeleton widths.")
@click.option("--score", "--metric", "metric", cls=Aliased, type=click.Choice(METRICS), default="sahd", show_default=True,
              help="The score metric computed.")
@click.option("--score-batch", "--batch-size", "batch_size", cls=Aliased, type=click.IntRange(min=2), default=64,
              show_default=True, help="Images per scoring batch.")
@click.option("--score-repeats", "--repeats", "repeats", cls=Aliased, type=click.IntRange(min=1), default=1,
              show_default=True, help="Batches averaged per score.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seeds the weights, the batches and dropout; with "
              "--like, the table's seed column, from which the row's own seed (row_seed) is derived.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--score-mode", "--mode", "mode", cls=Aliased, type=click.Choice(SCORE_MODES), default="clean",
              show_default=True, help="clean: seeded, un-augmented, exact kernels; release: the authors' search scoring as "
                                      "its code runs (sahd only).")
@click.option("--like", type=NonEmptyPath(dir_okay=False, exists=True), default=None, metavar="TABLE",
              help="Score as TABLE's score protocol did (its dataset, split, skeleton, batch, repeats, mode, tau and "
                   "metrics; the row seed of the cell and --seed) and print the stored value beside the result.")
@click.option("--score-protocol", default=None, help="With --like: the score protocol id (prefix) when TABLE holds several.")
@threads_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def score(
    ctx: click.Context,
    matrix: tuple[str, ...],
    dataset: str,
    data_dir: str | None,
    preset: str,
    metric: str,
    batch_size: int,
    repeats: int,
    seed: int,
    device: str,
    mode: str,
    like: str | None,
    score_protocol: str | None,
    threads: int,
    as_json: bool,
) -> None:
    """Score MATRIX's untrained network ("0302 0030 3003 0000", four rows, or JSON).

    The skeleton is the one ``snnbench train`` and ``build`` use (``network_config_for``): a named set's own; for
    a ``.npz`` set, CIFAR-10's (Tiny-ImageNet's for images of 64 pixels or more) with its channels, size and classes.
    With ``--like TABLE`` it computes a stored row: the protocol's settings and the row seed
    ``builders.plan.cell_seed(hash, --seed)`` (a plain run with ``--seed ROW_SEED`` and those settings is the same).
    """
    from snnbench.data import load_dataset
    from snnbench.network import NetworkConfig
    from snnbench.scores import score_cell
    from snnbench.training import network_config_for

    cell = parse_matrix(matrix)
    row_seed, tau, metrics, extra = seed, 1.0, (metric,), {}
    if like is None:
        if score_protocol is not None:
            raise InputError("--score-protocol: only with --like TABLE")
        data = load_dataset(dataset, data_dir)
        config = network_config_for(data, preset)
    else:
        from snnbench.seeds import cell_seed

        given = [_flag(ctx, n) for n in _LIKE_TAKES if ctx.get_parameter_source(n) != click.core.ParameterSource.DEFAULT]
        if given:
            raise InputError(f"{', '.join(given)}: --like takes {'it' if len(given) == 1 else 'them'} from the table's protocol")
        p = _score_protocol(like, score_protocol)
        s = p.settings
        stored_names = {METRIC_ALIASES.get(m, m): m for m in s["score"]["metrics"]}
        if METRIC_ALIASES.get(metric, metric) not in stored_names:
            raise InputError(f"--score: protocol {p.id} holds {', '.join(s['score']['metrics'])}, not {metric}")
        column = stored_names[METRIC_ALIASES.get(metric, metric)]
        data = _protocol_dataset(s, data_dir)
        config = NetworkConfig(**s["network"]["config"])
        dataset, preset, mode = s["dataset"]["name"], s["network"]["preset"], s["score"].get("mode", "clean")
        batch_size, repeats, tau = s["score"]["batch_size"], s["score"]["repeats"], s["score"]["tau"]
        metrics, metric = tuple(s["score"]["metrics"]), column  # all of them: the build's exact computation
        row_seed = cell_seed(cell.hash, seed)
        extra = {"table": str(like), "protocol": p.id, "stored": _stored(p, f"scores/{column}", cell.hash, seed)}
    with torch_threads(threads):
        result = score_cell(cell, data, config, metrics, batch_size, repeats, row_seed, device, tau, mode)
    record = {
        "metric": metric,
        "score": result["scores"][metric],
        "error_bound": result["errors"][metric],
        "seconds": result["seconds"][metric],
        "singular": result["singular"][metric],
        "batch_scores": result["batch_scores"][metric],
        "cell": cell.text,
        "hash": cell.hash,
        "dataset": dataset,
        "preset": preset,
        "batch_size": batch_size,
        "repeats": repeats,
        "seed": seed,
        "row_seed": row_seed,
        "mode": mode,
        "device": result["settings"]["device"],
        "params": result["params"],
        "build_seconds": result["build_seconds"],
        "net_config": config.to_dict(),
        **extra,
    }
    if as_json:
        echo_json(record)
    else:
        flag = "  (singular)" if record["singular"] else ""
        seeds = f"seed {seed}" + (f" (row seed {row_seed})" if like is not None else "")
        click.echo(f"{metric} {record['score']:.6g}{flag}  {record['seconds']:.3f} s  {cell.text}  {dataset}/{preset}  "
                   f"B={batch_size} x{repeats} {seeds}")
        if like is not None:
            click.echo(_agreement(record))



def _agreement(record: dict[str, Any]) -> str:
    """One line comparing a --like result with the stored value (docs/scores.md, Reproducibility)."""
    where = f"{record['table']} protocol {record['protocol']}"
    stored, have = record["stored"], record["score"]
    if stored is None:
        return f"stored: none ({where} holds no row of this cell with seed {record['seed']})"
    if stored == have or (stored != stored and have != have):
        return f"stored: {stored!r} in {where}: equal"
    bound = record["error_bound"]
    within = "" if bound is None else (f"; within twice the rounding bound {bound:.3g}" if abs(have - stored) <= 2 * bound
                                       else f"; beyond twice the rounding bound {bound:.3g} (a changed spike?)")
    return f"stored: {stored!r} in {where}: differs by {have - stored:.3g}{within} (docs/scores.md, Reproducibility)"
