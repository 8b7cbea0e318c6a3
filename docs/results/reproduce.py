"""Recompute rows of a table on this machine and print how far they are from the stored ones.

    python docs/results/reproduce.py                                   # digits: 2 score rows, 2 training rows
    python docs/results/reproduce.py --table T.h5 --score-rows 0,17 --train-rows 0
    python docs/results/reproduce.py --table cifar10.h5 --source ../shared/data/cifar10/train.npz --train-rows ""

Each row is recomputed by the build's own worker code (:func:`builders.stages.run_item`, the protocol's
settings, the row's per-cell seed) with one thread, as a build worker runs. The same machine gives the
stored numbers bit for bit; another CPU's float kernels move gradient proxies in the last bits and, through
training, whole epochs' accuracies: this script measures by how much (docs/results.md quotes it).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch

from snnbench.builders.build import cpu_name
from snnbench.builders.stages import run_item
from snnbench.space import space, to_text
from snnbench.table import SHIPPED, Protocol, open_table


def _rows(text: str) -> list[int]:
    return [int(r) for r in text.split(",") if r.strip()]


def _differences(stored: Any, got: Any) -> tuple[float, bool]:
    """Largest absolute difference over a value (number or curve) and whether it is equal bit for bit."""
    a, b = np.asarray(stored, dtype=np.float64), np.asarray(got, dtype=np.float64)
    return float(np.nanmax(np.abs(a - b))) if a.size else 0.0, bool(np.array_equal(a, b, equal_nan=True))


def reproduce(p: Protocol, rows: list[int], source: str | None) -> list[str]:
    """One line per recomputed (row, column): stored value, recomputed value, largest difference."""
    lines = []
    for row in rows:
        h, seed = p.hash[row].decode(), int(p.seed[row])
        text = to_text(space().matrices[space().hashes.index(h)])  # as builders.plan.plan_items writes it
        record = run_item({"stage": p.type, "settings": p.settings, "rows": [(h, text, seed)], "source": source})[0]
        if "error" in record:
            raise SystemExit(f"row {row}: {record['error']}")
        for name, value in sorted(record["values"].items()):
            if name in p.columns and name.split("/")[0] in ("scores", "val_acc", "test_acc", "curves") \
                    and not name.endswith("seconds"):
                stored = p.columns[name][row]
                diff, exact = _differences(stored, value)
                shown = f"{float(stored):.6g} -> {float(value):.6g}" if np.ndim(stored) == 0 else "curve"
                lines.append(f"{p.type} row {row} ({h}, seed {seed}) {name}: {shown}; max |diff| {diff:.3g}"
                             f"{' (bit for bit)' if exact else ''}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", default=str(SHIPPED["digits"]))
    ap.add_argument("--source", default=None, help="dataset .npz for a table built from files (CIFAR-10)")
    ap.add_argument("--score-rows", default="0,4321", help="comma-separated rows of the score protocol")
    ap.add_argument("--train-rows", default="0,1", help="comma-separated rows of the train protocol")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"CPU: {cpu_name()} ({torch.backends.cpu.get_cpu_capability()}), torch {torch.__version__}")
    table = open_table(args.table)
    for p in table.protocols.values():
        rows = _rows(args.score_rows if p.type == "score" else args.train_rows)
        print(f"protocol {p.id} ({p.type}), stored on: "
              f"{sorted({e.get('device_name', '?') + ' ' + e.get('platform', '?') for e in p.environments})}")
        print("\n".join(reproduce(p, rows, args.source)))


if __name__ == "__main__":
    main()
