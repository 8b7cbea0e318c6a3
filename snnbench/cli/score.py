"""``snnbench score``: the training-free score of one cell's untrained network."""

from __future__ import annotations

import click

from snnbench.cli.common import SEED, NonEmptyPath, echo_json, matrix_argument, parse_matrix, threads_option, torch_threads
from snnbench.data import load_dataset
from snnbench.network import PRESETS
from snnbench.scores import METRICS, SCORE_MODES, score_cell
from snnbench.training import network_config_for


@click.command()
@matrix_argument
@click.option("--dataset", required=True, help="digits, cifar10, cifar100, tinyimagenet, or a train .npz path.")
@click.option("--data-dir", type=NonEmptyPath(file_okay=False), default=None, help="Folder holding the datasets.")
@click.option("--preset", type=click.Choice(PRESETS), default="paper", show_default=True, help="Network skeleton.")
@click.option("--metric", type=click.Choice(METRICS), default="sahd", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=2), default=256, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=2, show_default=True, help="Batches averaged.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seeds the weights, the batches and dropout.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--mode", type=click.Choice(SCORE_MODES), default="clean", show_default=True,
              help="clean: seeded, un-augmented, exact; release: the authors' search scoring as its code runs (sahd only).")
@threads_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def score(
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
    threads: int,
    as_json: bool,
) -> None:
    """Score MATRIX's untrained network ("0302 0030 3003 0000", four rows, or JSON).

    The skeleton is the one ``snnbench train`` and ``build`` use (``network_config_for``): a named set's own; for
    a ``.npz`` set, CIFAR-10's (Tiny-ImageNet's for images of 64 pixels or more) with its channels, size and classes.
    """
    cell = parse_matrix(matrix)
    data = load_dataset(dataset, data_dir)
    config = network_config_for(data, preset)
    with torch_threads(threads):
        result = score_cell(cell, data, config, (metric,), batch_size, repeats, seed, device, mode=mode)
    record = {
        "metric": metric,
        "score": result["scores"][metric],
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
        "mode": mode,
        "device": result["settings"]["device"],
        "params": result["params"],
        "build_seconds": result["build_seconds"],
        "net_config": config.to_dict(),
    }
    if as_json:
        echo_json(record)
    else:
        flag = "  (singular)" if record["singular"] else ""
        click.echo(f"{metric} {record['score']:.6g}{flag}  {record['seconds']:.3f} s  {cell.text}  {dataset}/{preset}  B={batch_size} x{repeats} seed {seed}")
