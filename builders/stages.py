"""Worker-side work: score or train the rows of one work item and return plain records.

A work item is plain data (``builders.plan.WorkItem.to_dict()``); :func:`run_item` returns one record
per row, ``{"hash", "seed", "values": {column: number | str | list}}``, or ``{"hash", "seed", "error"}``
when that row raised. Values depend only on the protocol settings, the cell and the row's seed (the
per-cell seed of :func:`builders.plan.cell_seed`), so any worker computes the same record. A train item with
``pack`` > 1 trains its rows as one pack (:func:`snnbench.training.train_pack`): each row's values are its own
network's, equal to a lone training's up to float rounding, and its ``seconds`` a 1/K share of the pack's time.
Column names and units are documented in ``docs/table.md``.
"""

from __future__ import annotations

import contextlib
import json
import time
from functools import lru_cache
from typing import Any, Iterator

import numpy as np

from snnbench.seeds import cell_seed
from snnbench.table import spike_layer_values


@lru_cache(maxsize=2)
def _dataset(data_json: str, device: str, source: str | None = None) -> Any:
    """The dataset of a protocol (from ``source``, an .npz path, when given, refused unless its files hash to the
    protocol's ``sha256``), loaded once per worker process and kept on ``device``; a named one from
    ``$SNNBENCH_DATA_DIR``, which the driver sets from ``--data-dir`` before its workers start (the settings hold
    no folder, so a protocol does not depend on it)."""
    from snnbench.data import load_dataset, npz_digest

    d = json.loads(data_json)
    digest = npz_digest(source) if source and "sha256" in d else None
    if digest is not None and digest != d["sha256"]:  # e.g. a cluster node holding other files
        raise ValueError(f"dataset: {source} on this worker is not the files the protocol names (sha256 "
                         f"{digest} != {d['sha256']})")
    return load_dataset(source or d["name"], val_fraction=d["val_fraction"], seed=d["split_seed"]).to(device)


def _device(settings: dict[str, Any]) -> str:
    return "cuda" if settings["device"] == "cuda" else "cpu"


def score_values(result: dict[str, Any]) -> dict[str, Any]:
    """Table columns of one :func:`snnbench.scores.score_cell` result."""
    values: dict[str, Any] = {"params": int(result["params"])}
    for m, v in result["scores"].items():
        values[f"scores/{m}"] = float(v)
        values[f"batch_scores/{m}"] = [float(x) for x in result["batch_scores"][m]]
        values[f"singular/{m}"] = bool(result["singular"][m])
        values[f"metric_seconds/{m}"] = float(result["seconds"][m])
    return values


def train_values(result: dict[str, Any], epochs: int) -> dict[str, Any]:
    """Table columns of one :func:`snnbench.training.train_cell` result (curves have one entry per epoch)."""
    recs = result["epochs"]
    if len(recs) != epochs:
        raise ValueError(f"training returned {len(recs)} epoch records, expected {epochs}")
    spikes = result["spikes"]
    return {
        "params": int(result["params"]),
        "val_acc": float(result["val_acc"]),
        "test_acc": float(result["test_acc"]),
        "spikes_per_image": float(spikes["spikes_per_image"]),
        "spike_rate": float(spikes["rate"]),
        **spike_layer_values(spikes["layers"]),
        "train_seconds": float(result["seconds"]),
        "curves/lr": [float(r["lr"]) for r in recs],
        "curves/train_loss": [float(r["train_loss"]) for r in recs],
        "curves/train_acc": [float(r["train_acc"]) for r in recs],
        "curves/val_acc": [float(r["val_acc"]) for r in recs],
        "curves/test_acc": [float(r.get("test_acc", np.nan)) for r in recs],
        "curves/epoch_seconds": [float(r["seconds"]) for r in recs],
    }


@contextlib.contextmanager
def _count_spikes() -> Iterator[dict[str, Any]]:
    """Count, while active, the spikes of every LIF call and the images entering every SNASNet (read-only hooks)."""
    import torch
    from torch.nn.modules.module import register_module_forward_hook

    from snnbench.network import SNASNet
    from snnbench.neuron import LIF

    tally: dict[str, Any] = {"spikes": [], "slots": 0, "images": 0}

    def hook(module: Any, inputs: tuple[Any, ...], out: Any) -> None:
        if isinstance(module, LIF):
            tally["spikes"].append(out.detach().sum(dtype=torch.float64))
            tally["slots"] += out.numel()
        elif isinstance(module, SNASNet):
            tally["images"] += inputs[0].shape[0]

    handle = register_module_forward_hook(hook)
    try:
        yield tally
    finally:
        handle.remove()


def _score_row(cell: Any, settings: dict[str, Any], seed: int, source: str | None) -> dict[str, Any]:
    import torch

    from snnbench.network import NetworkConfig
    from snnbench.scores import score_cell

    s = settings["score"]
    device = _device(settings)
    dataset = _dataset(json.dumps(settings["dataset"], sort_keys=True), device, source)
    config = NetworkConfig(**settings["network"]["config"])
    with _count_spikes() as tally:
        result = score_cell(cell, dataset, config, s["metrics"], s["batch_size"], s["repeats"], seed, device, s["tau"],
                            s.get("mode", "clean"))
    spikes = float(torch.stack(tally["spikes"]).sum()) if tally["spikes"] else 0.0
    values = score_values(result)
    values["spikes_per_image"] = spikes / tally["images"] if tally["images"] else float("nan")
    values["spike_rate"] = spikes / tally["slots"] if tally["slots"] else float("nan")
    return values


def _train_row(cell: Any, settings: dict[str, Any], seed: int, source: str | None) -> dict[str, Any]:
    from snnbench.network import NetworkConfig
    from snnbench.training import TrainConfig, train_cell

    t = dict(settings["train"])
    t["test_epochs"] = tuple(t["test_epochs"])
    device = _device(settings)
    dataset = _dataset(json.dumps(settings["dataset"], sort_keys=True), device, source)
    result = train_cell(cell, dataset, NetworkConfig(**settings["network"]["config"]), TrainConfig(**t), seed, device)
    return train_values(result, t["epochs"])


def _train_pack(cells: list[Any], settings: dict[str, Any], seeds: list[int], source: str | None) -> list[dict[str, Any]]:
    """Table values of the rows (``cells[k]``, ``seeds[k]``) trained as one pack (see ``train_pack``)."""
    from snnbench.network import NetworkConfig
    from snnbench.training import TrainConfig, train_pack

    t = dict(settings["train"])
    t["test_epochs"] = tuple(t["test_epochs"])
    device = _device(settings)
    dataset = _dataset(json.dumps(settings["dataset"], sort_keys=True), device, source)
    results = train_pack(cells, dataset, NetworkConfig(**settings["network"]["config"]), TrainConfig(**t), seeds, device)
    return [train_values(r, t["epochs"]) for r in results]


_ROWS = {"score": _score_row, "train": _train_row}


def _run_pack(item: dict[str, Any], source: str | None) -> list[dict[str, Any]] | None:
    """The records of a train item's rows trained as one pack; ``None`` when the pack raised (the caller then
    trains the rows one by one, so that each row gets its own result or error). The pack's wall time is shared
    equally: each row's ``seconds`` is the pack's divided by its number of rows."""
    from snnbench.space import Cell

    start = time.perf_counter()
    rows = item["rows"]
    try:
        values = _train_pack([Cell.from_text(text) for _, text, _ in rows], item["settings"],
                             [cell_seed(h, seed) for h, _, seed in rows], source)
    except Exception:  # noqa: BLE001 - retried row by row, where each error is reported with its row
        return None
    share = (time.perf_counter() - start) / len(rows)
    return [{"hash": h, "seed": seed, "values": {**v, "seconds": share}} for (h, _, seed), v in zip(rows, values)]


def run_item(item: dict[str, Any]) -> list[dict[str, Any]]:
    """Compute every row of a work item; a row that raises becomes an ``error`` record."""
    from snnbench.space import Cell

    row_fn = _ROWS[item["stage"]]
    settings = item["settings"]
    source = item.get("source")
    _dataset(json.dumps(settings["dataset"], sort_keys=True), _device(settings), source)  # loaded before any row's clock starts
    if item["stage"] == "train" and item.get("pack", 1) > 1 and len(item["rows"]) > 1 \
            and not settings["network"]["config"].get("learnable_tau"):
        packed = _run_pack(item, source)
        if packed is not None:
            return packed
    records = []
    for cell_hash, text, seed in item["rows"]:
        start = time.perf_counter()
        try:
            values = row_fn(Cell.from_text(text), item["settings"], cell_seed(cell_hash, seed), source)
        except Exception as err:  # noqa: BLE001 - reported per row, the build goes on
            records.append({"hash": cell_hash, "seed": seed, "error": f"{type(err).__name__}: {err}"})
            continue
        values["seconds"] = time.perf_counter() - start
        records.append({"hash": cell_hash, "seed": seed, "values": values})
    return records
