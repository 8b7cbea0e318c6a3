"""``snnbench train``: train one cell on a dataset and report per-epoch records and final metrics."""

from __future__ import annotations

from typing import Any

import click

from snnbench.cli.common import (SEED, FiniteFloatRange, InputError, NonEmptyPath, echo_json, matrix_argument, parse_matrix,
                                 threads_option, torch_threads)
from snnbench.names import TRAIN_PRESETS


@click.command(short_help="Train one cell with surrogate gradients: per-epoch records and final metrics.")
@matrix_argument
@click.option("--dataset", default="digits", show_default=True, help="digits, cifar10, cifar100, tinyimagenet or PATH.npz.")
@click.option("--data-dir", type=NonEmptyPath(file_okay=False), default=None, help="Folder holding the dataset files (default: $SNNBENCH_DATA_DIR or ~/.cache/snnbench/data).")
@click.option("--download", is_flag=True, help="Download a missing CIFAR / Tiny-ImageNet folder into --data-dir.")
@click.option("--preset", type=click.Choice(TRAIN_PRESETS), default="bench", show_default=True, help="Skeleton and budget.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override the preset's epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Override the preset's training batch size.")
@click.option("--lr", type=FiniteFloatRange(min=0, min_open=True), default=None, help="Override the preset's learning rate.")
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]), default=None, help="Override the preset's optimiser.")
@click.option("--timesteps", type=click.IntRange(min=1), default=None, help="Override T.")
@click.option("--pool", type=click.IntRange(min=1), default=None, help="Override the final p x p pool (AP4: 4).")
@click.option("--learnable-tau", is_flag=True, help="PLIF neurons (learnable membrane time constant).")
@click.option("--train-images", type=click.IntRange(min=1), default=None, help="Train on a seeded subset of N images.")
@click.option("--test-images", type=click.IntRange(min=1), default=None, help="Test on a seeded subset of N images.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seeds the weights, the data order and the "
              "split of the training and validation images.")
@click.option("--seeds", default=None, help="Train once per seed (list 0,1 or range 0-3) instead of --seed alone.")
@click.option("--pack", type=click.IntRange(min=1), default=None,
              help="Seeds trained together as one pack (default: by device, see docs/data.md); changes no number.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--checkpoint", type=NonEmptyPath(dir_okay=False), default=None, help="Resume from / save to this file.")
@threads_option
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
def train(
    matrix: tuple[str, ...], dataset: str, data_dir: str | None, download: bool, preset: str, epochs: int | None,
    batch_size: int | None, lr: float | None, optimizer: str | None, timesteps: int | None, pool: int | None, learnable_tau: bool,
    train_images: int | None, test_images: int | None, seed: int, seeds: str | None, pack: int | None, device: str,
    checkpoint: str | None, threads: int, as_json: bool,
) -> None:
    """Train MATRIX (e.g. "0302 0030 3003 0000") with surrogate gradients; a progress bar goes to stderr.

    With --seeds, one training per seed (data split and subset from the first), in packs of --pack networks;
    --json then prints a list of results."""
    from snnbench.data import load_dataset
    from snnbench.scores import resolve_device
    from snnbench.seeds import parse_seeds
    from snnbench.training import default_pack, network_config_for, train_cell, train_config, train_pack

    cell = parse_matrix(matrix)
    resolve_device(device)
    try:
        runs = list(parse_seeds(seeds)) if seeds is not None else [seed]
    except ValueError as err:
        raise InputError(f"--{err}") from None
    if seeds is not None and seed:
        raise InputError("--seed and --seeds: give one of them")
    size = 1 if learnable_tau else pack if pack is not None else default_pack(device)  # PLIF networks are not packed
    if checkpoint is not None and len(runs) > 1:
        raise InputError("--checkpoint: one seed at a time (a pack is not checkpointed)")
    seed = runs[0]
    data = load_dataset(dataset, data_dir, download=download, seed=seed)
    if train_images or test_images:
        data = data.subset(train=train_images, test=test_images, seed=seed)
    overrides = {k: v for k, v in {"timesteps": timesteps, "pool": pool}.items() if v is not None}
    net = network_config_for(data, preset, **overrides, learnable_tau=learnable_tau)
    cfg = train_config(preset, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer)
    with torch_threads(threads):
        if len(runs) == 1:
            results = [train_cell(cell, data, net, cfg, seed=seed, device=device, progress=True, checkpoint=checkpoint)]
        else:
            results = []
            for start in range(0, len(runs), size):
                group = runs[start:start + size]
                results += (train_pack([cell] * len(group), data, net, cfg, group, device, progress=True) if len(group) > 1
                            else [train_cell(cell, data, net, cfg, seed=group[0], device=device, progress=True)])
    if as_json:
        echo_json(results[0] if seeds is None else results)
        return
    for result in results:
        _report(result, data.name, len(results) > 1)


def _report(result: dict[str, Any], dataset: str, named: bool) -> None:
    """Per-epoch lines and a summary line of one training (prefixed by its seed when ``named``)."""
    tag = f"seed {result['seed']}  " if named else ""
    for r in result["epochs"]:
        test = f"  test {r['test_acc']:.4f}" if "test_acc" in r else ""
        val = "-" if r["val_acc"] is None else f"{r['val_acc']:.4f}"
        click.echo(f"{tag}epoch {r['epoch']:3d}  loss {r['train_loss']:.4f}  train {r['train_acc']:.4f}  "
                   f"val {val}{test}  {r['seconds']:.1f}s")
    click.echo(f"{tag}{result['cell']} on {dataset}: test accuracy {result['test_acc']:.4f}, "
               f"{result['spikes']['spikes_per_image']:.0f} spikes/image, {result['params']:,} params, "
               f"{result['seconds']:.1f}s")
