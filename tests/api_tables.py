"""Tables the builder makes for the API tests: built once per test process, in a temporary folder."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

from click.testing import CliRunner

from snnbench.cli import main

# The bench skeleton on digits narrowed to a few channels, 2 steps; 8 cells scored and trained (2 seeds, 1 epoch).
TINY_BUILD = ["--net", "c1=2", "--net", "c2=4", "--net", "hidden=8", "--net", "timesteps=2", "--score-batch", "8",
              "--cells", "sample:8:3", "--train-cells", "sample:8:3", "--train-epochs", "1", "--seeds", "0,1",
              "--train", "batch_size=512", "--train", "eval_batch_size=1024", "--train", "augment=false",
              "--quiet", "--workers", "0"]


@lru_cache(maxsize=1)
def tiny_table() -> Path:
    """Path of a tiny real table (score + train protocols on the same 8 forward cells)."""
    folder = Path(tempfile.mkdtemp(prefix="snnbench-api-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / "tiny.h5"
    result = CliRunner().invoke(main, ["build", str(path), *TINY_BUILD], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return path


@lru_cache(maxsize=1)
def curve_table() -> Path:
    """Path of a small real table with curves: the 10 forward cells with the most raw matrices (1,712 of the
    12,500), scored and trained (seeds 0 and 1, 3 epochs) with TINY_BUILD's network, so searches over
    matrices often meet a trained cell."""
    import numpy as np

    from snnbench.space import space, to_text

    sp = space()
    forward = np.flatnonzero(~sp.is_backward)
    top = forward[np.argsort(-sp.raw_counts["forward"][forward], kind="stable")[:10]]
    folder = Path(tempfile.mkdtemp(prefix="snnbench-api-"))
    atexit.register(shutil.rmtree, folder, True)
    cells = folder / "cells.txt"
    cells.write_text("".join(to_text(sp.matrices[u]) + "\n" for u in top))
    path = folder / "curves.h5"
    drop = {"--cells", "--train-cells", "--train-epochs"}  # with their values
    args = [a for k, a in enumerate(TINY_BUILD) if a not in drop and (k == 0 or TINY_BUILD[k - 1] not in drop)]
    result = CliRunner().invoke(main, ["build", str(path), *args, "--cells", str(cells), "--train-cells", str(cells),
                                       "--train-epochs", "3"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return path


def without_metric_seconds(src: Path, dst: Path, rows: int | None = None) -> Path:
    """A copy of table ``src`` at ``dst`` as builds before per-metric scoring seconds wrote it: the
    ``metric_seconds/*`` columns dropped, or (``rows``) NaN in the first ``rows`` rows of each only."""
    import numpy as np

    from snnbench.table import METRIC_SECONDS, open_table, write_table

    protocols = list(open_table(src).protocols.values())
    for p in protocols:
        for name in [n for n in p.columns if n.startswith(METRIC_SECONDS)]:
            if rows is None:
                del p.columns[name]
            else:
                p.columns[name][:rows] = np.nan
    write_table(dst, protocols)
    return dst


def with_fixed_times(src: Path, dst: Path, train: float = 2.0, score: float = 0.05) -> Path:
    """A copy of table ``src`` at ``dst`` whose stored times, measured wall-clock by its build, are replaced by
    constants: every training row took ``train`` seconds (its epochs equally long), every score row ``score``
    seconds, each metric of it ``score / 2``. Simulated-cost results on it depend on nothing measured."""
    from snnbench.table import METRIC_SECONDS, open_table, write_table

    protocols = list(open_table(src).protocols.values())
    for p in protocols:
        cols = p.columns
        if p.type == "train":
            cols["train_seconds"][:] = train
            cols["curves/epoch_seconds"][:] = train / cols["curves/epoch_seconds"].shape[1]
        for name in cols:
            if name.startswith(METRIC_SECONDS):
                cols[name][:] = score / 2
        cols["seconds"][:] = train if p.type == "train" else score
    write_table(dst, protocols)
    return dst


PAPER_CELL = "0302 0030 3003 0000"  # SNASNet's published cell: backward edges 2 -> 0 and 3 -> 0


@lru_cache(maxsize=1)
def mixed_table() -> Path:
    """The tiny table's rows moved onto 5 forward cells and 3 cells with a backward edge (the paper's among them)."""
    import numpy as np

    from snnbench.space import Cell, space
    from snnbench.table import Protocol, open_table, write_table

    sp = space()
    rng = np.random.default_rng(11)
    forward = rng.choice(np.flatnonzero(~sp.is_backward), 5, replace=False)
    backward = rng.choice(np.flatnonzero(sp.is_backward), 2, replace=False)
    targets = [sp.hashes[u] for u in forward] + [sp.hashes[u] for u in backward] + [Cell(PAPER_CELL).hash]
    protocols = list(open_table(tiny_table()).protocols.values())
    old = sorted({h for p in protocols for h in p.hash.tolist()})
    new_of = dict(zip(old, (t.encode() for t in targets)))
    moved = [Protocol(p.id, p.type, p.settings, hash=np.array([new_of[h] for h in p.hash.tolist()], dtype="S16"),
                      seed=p.seed, columns=p.columns) for p in protocols]
    path = tiny_table().parent / "mixed.h5"
    write_table(path, moved)
    return path
