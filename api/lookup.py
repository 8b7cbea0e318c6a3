"""Fast matrix -> unique-cell key, in pure Python (a few microseconds per matrix).

:func:`cell_key` returns the canonical matrix of any accepted matrix form as a tuple of ``N*N``
ints, identical to ``snnbench.space.Cell(matrix).canonical`` (pruning, then the lexicographically
smallest valid relabelling of the intermediate nodes). Common forms (text, nested lists of ints or
whole-number floats, numpy arrays, :class:`~snnbench.space.Cell`) are read without numpy work;
anything else, and every invalid matrix, goes through :func:`snnbench.space.validate`, so errors
are exactly the cell type's ``ValueError``.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

from snnbench.space import NUM_NODES, flat_entries, valid_entries, validate

Key = tuple[int, ...]


@lru_cache(maxsize=8)
def _relabellings(n: int) -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
    """Per non-identity relabelling: (gather index of the new row-major entries, old positions whose
    edge would change direction, which must be zero for the relabelling to count)."""
    out = []
    for perm in itertools.permutations(range(1, n - 1)):
        p = (0, *perm, n - 1)  # new label -> old label
        if p == tuple(range(n)):
            continue
        gather = tuple(p[a] * n + p[b] for a in range(n) for b in range(n))
        flips = tuple(p[a] * n + p[b] for a in range(n) for b in range(n) if a != b and (a < b) != (p[a] < p[b]))
        out.append((gather, flips))
    return tuple(out)


def canonical_flat(v: list[int], n: int) -> Key:
    """Canonical member of a *valid* row-major matrix ``v`` (prune, then smallest valid relabelling)."""
    succ = [0] * n
    pred = [0] * n
    for i in range(n):
        row = i * n
        for j in range(n):
            if v[row + j]:
                succ[i] |= 1 << j
                pred[j] |= 1 << i
    fwd, frontier = 1, 1
    while frontier:
        nxt = 0
        for i in range(n):
            if frontier >> i & 1:
                nxt |= succ[i]
        frontier = nxt & ~fwd
        fwd |= nxt
    back, frontier = 1 << (n - 1), 1 << (n - 1)
    while frontier:
        nxt = 0
        for i in range(n):
            if frontier >> i & 1:
                nxt |= pred[i]
        frontier = nxt & ~back
        back |= nxt
    alive = (fwd & back) | 1 | (1 << (n - 1))
    if alive != (1 << n) - 1:
        v = [x if (alive >> (k // n) & 1 and alive >> (k % n) & 1) else 0 for k, x in enumerate(v)]
    best = v
    for gather, flips in _relabellings(n):
        if any(v[k] for k in flips):
            continue
        cand = [v[k] for k in gather]
        if cand < best:
            best = cand
    return tuple(best)


def _canonical4(v: list[int]) -> Key:
    """:func:`canonical_flat` unrolled for 4 nodes (``v[3] != 0``: node 0 reaches node 3 directly)."""
    e01, e02, e10, e12, e13, e20, e21, e23, e31, e32 = v[1], v[2], v[4], v[6], v[7], v[8], v[9], v[11], v[13], v[14]
    alive1 = (e01 or e31 or ((e02 or e32) and e21)) and (e13 or e10 or (e12 and (e23 or e20)))
    alive2 = (e02 or e32 or ((e01 or e31) and e12)) and (e23 or e20 or (e21 and (e13 or e10)))
    if not alive1:
        v = [0 if (k >> 2 == 1 or k & 3 == 1) else x for k, x in enumerate(v)]
    if not alive2:
        v = [0 if (k >> 2 == 2 or k & 3 == 2) else x for k, x in enumerate(v)]
    if not (v[6] or v[9]):  # swapping nodes 1 and 2 keeps every edge's direction
        swapped = [v[0], v[2], v[1], v[3], v[8], v[10], v[9], v[11], v[4], v[6], v[5], v[7], v[12], v[14], v[13], v[15]]
        if swapped < v:
            return tuple(swapped)
    return tuple(v)


def cell_key(matrix: object, n: int = NUM_NODES) -> Key:
    """Canonical matrix (row-major) of any accepted matrix form; the cell type's ``ValueError`` if invalid.

    Entries are ints, except that whole-number floats given in a list stay floats: the key still
    compares and hashes equal to the int key, which is all a dictionary lookup needs.
    """
    v = flat_entries(matrix, n)
    if v is None or not valid_entries(v, n):
        v = validate(matrix, n).ravel().tolist()  # raises the cell type's ValueError
    return _canonical4(v) if n == 4 else canonical_flat(v, n)
