"""Seeds: the lists a command accepts, and the seed each (cell, seed) row of a table really uses.

A row's seed is derived from the cell's hash and the requested seed (:func:`cell_seed`), so two cells
trained "with seed 0" do not share their initialisation or data order, and a stored row names the
requested seed while ``snnbench score --like`` / ``train`` reproduce it exactly.
"""

from __future__ import annotations

import hashlib
import re


MAX_SEEDS = 10_000  # seeds in one --seeds / --score-seeds list
MAX_SEED = 2**63 - 1  # a table stores seeds as int64


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` or ``"0-3"`` -> distinct seeds in 0..MAX_SEED, in the order given; at most MAX_SEEDS of them."""
    seeds: dict[int, None] = {}
    for part in text.replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ValueError(f"seeds: expected a list like 0,1,2 or a range like 0-4, got {text!r}")
        lo, hi = int(m[1]), int(m[2] or m[1])
        if max(lo, hi) > MAX_SEED:
            raise ValueError(f"seeds: {max(lo, hi)} is above the largest seed {MAX_SEED}")
        if hi - lo < MAX_SEEDS:
            seeds.update(dict.fromkeys(range(lo, hi + 1)))
        if hi - lo >= MAX_SEEDS or len(seeds) > MAX_SEEDS:
            raise ValueError(f"seeds: at most {MAX_SEEDS:,} seeds in one list, got {text[:40] + '...' * (len(text) > 40)!r}")
    if not seeds:
        raise ValueError(f"seeds: no seed in {text!r}")
    return tuple(seeds)


def cell_seed(cell_hash: str, seed: int) -> int:
    """The seed a row uses: a 31-bit hash of the cell hash and the requested seed."""
    digest = hashlib.sha256(f"snnbench-seed-v1:{seed}:{cell_hash}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
