"""What a table holds, as JSON-ready data: ``snnbench info`` prints it, the results scripts read it."""

from __future__ import annotations

import os
from typing import Any

from snnbench.table import open_table


def describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a table holds: per protocol its settings, commands, coverage and summary statistics (JSON-ready).
    Score protocols come first (then by id): the order to rebuild in, as a ``top:``/``strata:`` training ranks
    by stored scores."""
    import numpy as np

    table = open_table(path)
    out: dict[str, Any] = {
        "path": str(table.path),
        "size_bytes": table.path.stat().st_size,
        "schema_version": table.attrs["schema_version"],
        "created": table.attrs["created"],
        "modified": table.attrs["modified"],
        "snnbench_version": table.attrs["snnbench_version"],
        "cells": {"total": len(table.cells["hash"]), "forward": int((table.cells["kind"] == 0).sum()),
                  "backward": int((table.cells["kind"] == 1).sum())},
        "protocols": [],
    }
    from snnbench.space import KINDS, space

    # a cell's kind is "backward" iff it has a backward edge: the backward space minus the forward one
    forward = len(space().indices("forward"))
    sizes = {"forward": forward, "backward": len(space().indices("backward")) - forward}
    kind_of = dict(zip(table.cells["hash"].tolist(), table.cells["kind"].tolist()))
    for p in sorted(table.protocols.values(), key=lambda p: (p.type != "score", p.id)):
        cells = {h for h in p.hash.tolist()}
        kinds = np.bincount([kind_of[h] for h in cells], minlength=len(KINDS)) if cells else np.zeros(len(KINDS), int)
        stats: dict[str, Any] = {}
        for name, col in p.columns.items():
            if col.dtype.kind not in "fiu" or col.ndim != 1:
                continue
            finite = col[np.isfinite(col)] if col.dtype.kind == "f" else col
            stats[name] = {
                "rows": int(len(col)), "finite": int(len(finite)),
                **({"mean": float(finite.mean()), "std": float(finite.std()), "min": float(finite.min()),
                    "max": float(finite.max())} if len(finite) else {}),
            }
        out["protocols"].append({
            "id": p.id, "type": p.type, "settings": p.settings, "commands": p.commands, "shards": p.shards,
            "created": p.created, "modified": p.modified, "environments": p.environments,
            "rows": len(p), "cells": len(cells), "seeds": sorted({int(s) for s in p.seed}),
            "worker_seconds": float(np.nansum(p.columns["seconds"])) if "seconds" in p.columns else None,
            "coverage": {k: {"cells": int(n), "of": sizes[k]} for k, n in zip(KINDS, kinds.tolist()) if n},
            "columns": {name: {"dtype": str(col.dtype), "shape": list(col.shape[1:])} for name, col in p.columns.items()},
            "stats": stats,
        })
    return out
