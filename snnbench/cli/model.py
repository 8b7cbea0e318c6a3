"""``snnbench model``: inspect the network built around a cell (parameters, LIF layers, spikes)."""

from __future__ import annotations

from typing import Any

import click

from snnbench.cli.common import SEED, Aliased, echo_json, matrix_argument, parse_matrix
from snnbench.names import DATASETS, NETWORK_PRESETS

_INT_FIELDS = {"c1", "c2", "hidden", "num_classes", "group", "stem_stride", "pool", "timesteps", "in_channels", "image_size"}


def _parse_overrides(items: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` words -> config overrides (ints, ``learnable_tau`` bool, ``dropout`` float)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"--net: expected KEY=VALUE, got {item!r}")
        try:
            if key in _INT_FIELDS:
                out[key] = int(value)
            elif key == "dropout":
                out[key] = float(value)
            elif key == "learnable_tau":
                out[key] = {"true": True, "1": True, "false": False, "0": False}[value.lower()]
            else:
                raise ValueError(f"network config: unknown field {key}")
        except KeyError:
            raise ValueError(f"--net: {key} needs true/false, got {value!r}") from None
        except ValueError as err:
            if "unknown field" in str(err):
                raise
            raise ValueError(f"--net: {key} needs a number, got {value!r}") from None
    return out


@click.group()
def model() -> None:
    """Inspect SNASNet networks."""


@model.command()
@matrix_argument
@click.option("--dataset", type=click.Choice(DATASETS), default="digits", show_default=True,
              help="The dataset whose skeleton (input size, channels, classes) the network gets.")
@click.option("--preset", type=click.Choice(NETWORK_PRESETS), default="bench", show_default=True, help="Skeleton widths.")
@click.option("--net", "--set", "overrides", cls=Aliased, multiple=True, default=(), metavar="KEY=VALUE",
              help="Override a NetworkConfig field (repeatable), e.g. --net timesteps=4.")
@click.option("--spikes", is_flag=True, help="Also run one random batch (train mode, no grad) and count spikes.")
@click.option("--batch-size", "--batch", "batch", cls=Aliased, type=click.IntRange(min=1), default=8, show_default=True,
              help="Images in the --spikes batch.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seeds the weights and the --spikes batch.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def summary(
    matrix: tuple[str, ...], dataset: str, preset: str, overrides: tuple[str, ...], spikes: bool, batch: int, seed: int, as_json: bool
) -> None:
    """Parameters, LIF layers and per-layer shapes of the network for MATRIX."""
    import torch

    from snnbench.network import build_network, count_params, network_config, spike_stats

    cell = parse_matrix(matrix)
    config = network_config(dataset, preset, **_parse_overrides(overrides))
    torch.manual_seed(seed)
    if spikes:
        net = build_network(cell, config)
    else:
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            net = build_network(cell, config, channels_last=False)
    rows = net.describe()
    record: dict[str, Any] = {
        "cell": cell.text,
        "canonical": cell.canonical.text,
        "hash": cell.hash,
        "kind": cell.kind,
        "dataset": dataset,
        "preset": preset,
        "config": config.to_dict(),
        "params": count_params(net),
        "lif_layers": len(net.lif_layers()),
        "neurons": sum(net.lif_neurons().values()),
        "layers": rows,
    }
    if spikes:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(batch, config.in_channels, config.image_size, config.image_size, generator=g)
        record["spikes"] = {"batch": batch, "input": "standard normal (seeded)", **spike_stats(net.train(), x)}
    if as_json:
        echo_json(record)
        return
    click.echo(f"cell {record['canonical']}  ({record['kind']}, hash {record['hash']})  {dataset}/{preset}")
    click.echo(f"{'layer':28} {'type':16} {'output':>16} {'params':>12} {'neurons':>9}")
    for r in rows:
        shape = "x".join(str(v) for v in r["output"])
        click.echo(f"{r['name']:28} {r['type']:16} {shape:>16} {r['params']:>12,} {r.get('neurons', ''):>9}")
    click.echo(f"params {record['params']:,}  LIF layers {record['lif_layers']}  neurons/step {record['neurons']:,}")
    if spikes:
        s = record["spikes"]
        click.echo(f"spikes per image {s['spikes_per_image']:,.1f}  firing rate {s['rate']:.4f}  (batch {batch})")
