"""The SNASNet cell space: encoding, validation, pruning, canonical form, hash, enumeration.

A cell is an ``N x N`` integer matrix ``M`` (``N = 4`` is the shipped space). ``M[i][j]`` is the
operation code on the edge between node ``i`` and node ``j`` (see :data:`OPS`); entries above the
diagonal are *forward* edges, entries below it are *backward* (one-step-delayed) edges. Node 0 is
the cell input, node ``N-1`` its output.

Invariants
----------
* A valid matrix is square, holds codes 0-4, has a zero diagonal, at most one non-zero entry per
  pair ``{i, j}``, and ``M[0][N-1] != 0``. :func:`validate` states these rules (with a message per rule);
  :func:`valid_entries` is its pure-Python fast form for hot paths, tested against it.
* The *pair code* (:data:`PAIR_STATES`) of a valid matrix keys :attr:`Space.lookup`; every module that codes
  matrices by pair states uses :func:`pair_codes` / :func:`pair_weights` (first pair most significant).
* *Pruning* zeroes the row and column of every intermediate node that is not on a directed path
  ``0 -> k -> N-1`` (edges of both kinds). Pruning is idempotent.
* Two pruned matrices are the same cell when a relabelling of the intermediate nodes maps one onto
  the other while keeping every forward edge above the diagonal and every backward edge below it.
* The **canonical member** of a class is the member whose entries, read row by row, form the
  lexicographically smallest sequence. The **hash** is the first 16 hex digits of
  ``sha256("snnbench-cell-v1:" + text form of the canonical matrix)``: it depends on nothing but
  the canonical matrix (not on dtype, process, platform or Python's ``hash()``).
* A cell's *kind* is ``"backward"`` if its pruned matrix keeps a backward edge, else ``"forward"``
  (a backward edge that pruning removes computes nothing).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from functools import lru_cache
from operator import itemgetter, mul
from typing import Any, Callable, Iterator, Literal, Sequence

import numpy as np

OPS: tuple[str, ...] = ("zero", "skip", "conv1x1", "conv3x3", "avgpool3x3")
NUM_OPS = len(OPS)
NUM_NODES = 4
KINDS = ("forward", "backward")
#: Cells the SNASNet paper publishes as found by its search (text form): the ones a benchmark user looks up first.
PUBLISHED_CELLS: tuple[str, ...] = ("0302 0030 3003 0000",)
Kind = Literal["forward", "backward"]
Distribution = Literal["paper", "uniform"]
_HASH_PREFIX_BYTES = b"snnbench-cell-v1:"
#: States of a node pair ``i < j``: 0 no edge, 1-4 the forward op on ``i -> j``, 5-8 the backward op (state - 4)
#: on ``j -> i``. A matrix's *pair code* reads its pairs' states (in :func:`pairs` order) as the digits of one
#: base-9 number, most significant first (:func:`pair_codes`, :func:`pair_weights`).
PAIR_STATES = 2 * NUM_OPS - 1


# --------------------------------------------------------------------------- parsing and validation


def _parse_text(text: str) -> np.ndarray:
    """Parse the authors' text form (``"0302 0030 3003 0000"``) or a JSON nested list."""
    if not isinstance(text, str):
        raise TypeError(f"matrix: expected text such as '0302 0030 3003 0000', got {type(text).__name__} {text!r}")
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            return _to_array(json.loads(stripped))
        except json.JSONDecodeError as err:
            raise ValueError(f"format: not a JSON nested list: {err.msg} at char {err.pos}") from None
    rows = stripped.replace(",", " ").split()
    if not rows or not all(r.isdigit() and r.isascii() for r in rows):
        raise ValueError(f"format: {text!r} is neither the text form '0302 0030 3003 0000' nor a JSON list")
    if any(len(r) != len(rows) for r in rows):
        raise ValueError(
            f"shape: the text form is square (N rows of N digits), got {len(rows)} row(s) of lengths {[len(r) for r in rows]}"
        )
    return np.array([[int(c) for c in r] for r in rows], dtype=np.int64)


def _to_array(obj: Any) -> np.ndarray:
    """Turn text, a nested sequence, an array or a tensor into a numeric numpy array (unchecked)."""
    if isinstance(obj, (str, bytes)):
        return _parse_text(obj.decode() if isinstance(obj, bytes) else obj)
    if hasattr(obj, "detach") and hasattr(obj, "cpu"):  # torch.Tensor, without importing torch
        obj = obj.detach().cpu().float().numpy() if obj.is_floating_point() else obj.detach().cpu().numpy()
    try:
        arr = np.asarray(obj)
    except (ValueError, TypeError) as err:
        if isinstance(obj, (list, tuple)) and all(isinstance(row, (list, tuple)) for row in obj):
            raise ValueError(f"shape: expected a 4x4 matrix, got rows of lengths {[len(row) for row in obj]}") from None
        raise ValueError(f"shape: cannot read a matrix from {type(obj).__name__}: {' '.join(str(err).split())}") from None
    if arr.dtype.kind == "b" or (isinstance(obj, (list, tuple)) and _holds_bool(obj)):
        raise ValueError("format: true/false entries are not operation codes (integers 0-4)")
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"format: cannot read a matrix of integer operation codes from {type(obj).__name__} (dtype {arr.dtype})")
    return arr


_BOOLS = frozenset((bool, np.bool_))  # entry types that compare equal to 0/1 yet are not operation codes


def _holds_bool(obj: Any) -> bool:
    """A nested list/tuple with a ``bool`` (or ``numpy.bool_``) entry (``numpy.asarray`` would read it as 0/1)."""
    return any(_holds_bool(v) if isinstance(v, (list, tuple)) else type(v) in _BOOLS for v in obj)


def validate(matrix: object, nodes: int | None = NUM_NODES) -> np.ndarray:
    """Return ``matrix`` as a read-only ``int8`` array after checking every rule of the space.

    ``nodes`` is the required number of nodes (``None``: any square matrix with at least 2).
    Raises ``ValueError`` with a one-line message naming the rule and the offending entry.
    """
    arr = _to_array(matrix)
    n = arr.shape[0] if arr.ndim else 0
    if arr.ndim != 2 or arr.shape[1] != n or n < 2 or (nodes is not None and n != nodes):
        want = f"{nodes}x{nodes}" if nodes else "square NxN (N >= 2)"
        raise ValueError(f"shape: expected a {want} matrix, got shape {tuple(arr.shape)}")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            i, j = map(int, np.argwhere(bad)[0])
            raise ValueError(f"codes: entry [{i}][{j}] = {arr[i, j].item()!r} is not a whole number")
    bad = (arr < 0) | (arr >= NUM_OPS)
    if bad.any():
        i, j = map(int, np.argwhere(bad)[0])
        raise ValueError(f"codes: entry [{i}][{j}] = {arr[i, j].item()} is not an operation code 0-{NUM_OPS - 1}")
    arr = arr.astype(np.int8)
    diag = np.flatnonzero(np.diagonal(arr))
    if diag.size:
        i = int(diag[0])
        raise ValueError(f"diagonal: entry [{i}][{i}] = {arr[i, i]} must be 0")
    both = np.argwhere(np.triu((arr != 0) & (arr.T != 0), 1))
    if both.size:
        i, j = map(int, both[0])
        raise ValueError(
            f"one direction per pair: entries [{i}][{j}] = {arr[i, j]} and [{j}][{i}] = {arr[j, i]} are both non-zero"
        )
    if not arr[0, n - 1]:
        raise ValueError(f"input-output edge: entry [0][{n - 1}] must be non-zero (the fast spike-propagation edge)")
    arr.setflags(write=False)
    return arr


def texts_of(matrices: np.ndarray) -> np.ndarray:
    """Text forms of ``[R, N, N]`` matrices of codes 0-4 as ASCII bytes (``S``-dtype ``[R]``), vectorised."""
    r, n = matrices.shape[0], matrices.shape[-1]
    chars = np.full((r, n, n + 1), ord(" "), dtype=np.uint8)
    chars[:, :, :n] = np.asarray(matrices).astype(np.uint8) + ord("0")
    return chars.reshape(r, n * (n + 1))[:, :-1].copy().view(f"S{n * (n + 1) - 1}").ravel()


def to_text(matrix: np.ndarray) -> str:
    """The authors' text form: rows of digits separated by spaces, e.g. ``0302 0030 3003 0000``."""
    return bytes(texts_of(np.asarray(matrix)[None])[0]).decode()


def _digest8(text: bytes) -> bytes:
    """The cell hash of a canonical matrix's text form as 8 bytes (the hash is their 16 hex digits; see the module
    docstring)."""
    return hashlib.sha256(_HASH_PREFIX_BYTES + text).digest()[:8]


def cell_hashes(matrices: np.ndarray) -> np.ndarray:
    """The cell hash (``|S16``) of each canonical matrix ``[U, N, N]``, as :attr:`Cell.hash` computes it."""
    raw = b"".join(map(_digest8, texts_of(matrices).tolist()))
    return np.frombuffer(raw.hex().encode(), dtype="S16").copy()


# --------------------------------------------------------------------------- node pairs, edge names, pair codes


@lru_cache(maxsize=8)
def pairs(n: int = NUM_NODES) -> tuple[tuple[int, int], ...]:
    """The node pairs ``(i, j)``, ``i < j``, row-major: the digit order of the pair code."""
    return tuple(itertools.combinations(range(n), 2))


def pair_weights(n: int = NUM_NODES) -> np.ndarray:
    """``int64 [P]``: the pair code of a state vector is ``states @ pair_weights(n)`` (first pair most significant)."""
    return PAIR_STATES ** np.arange(len(pairs(n)) - 1, -1, -1, dtype=np.int64)


def pair_codes(m: np.ndarray) -> np.ndarray:
    """``int64 [R]`` pair code of each *valid* matrix of ``[R, N, N]``."""
    states = matrix_states(m)
    code = np.zeros(states.shape[:-1], dtype=np.int64)
    for p in range(states.shape[-1]):  # Horner's rule: states @ pair_weights(n), without an int64 matmul
        code = code * PAIR_STATES + states[..., p]
    return code


def matrix_states(m: np.ndarray) -> np.ndarray:
    """``int64 [..., P]`` pair states of valid matrices ``[..., N, N]`` (inverse of :func:`states_to_matrix`)."""
    m = np.asarray(m)
    idx = pairs(m.shape[-1])
    states = np.empty((*m.shape[:-2], len(idx)), dtype=np.int64)
    for p, (i, j) in enumerate(idx):  # views of one entry each: cheaper than gathering them all at once
        fwd, bwd = m[..., i, j].astype(np.int64), m[..., j, i].astype(np.int64)
        states[..., p] = np.where(fwd != 0, fwd, np.where(bwd != 0, bwd + NUM_OPS - 1, 0))
    return states


def states_to_matrix(states: Sequence[int], n: int = NUM_NODES) -> list[list[int]]:
    """Pair states (one per pair of :func:`pairs`) -> matrix as nested lists."""
    m = [[0] * n for _ in range(n)]
    for (i, j), s in zip(pairs(n), states):
        if 1 <= s < NUM_OPS:
            m[i][j] = s
        elif s >= NUM_OPS:
            m[j][i] = s - NUM_OPS + 1
    return m


def edge_name(i: int, j: int) -> str:
    """Name of the edge from node ``i`` to node ``j`` (``"e12"``; ``i > j``: a backward edge)."""
    return f"e{i}{j}"


def edge_nodes(name: str) -> tuple[int, int]:
    """``(i, j)`` of a name that starts with :func:`edge_name` ``(i, j)`` (single-digit nodes)."""
    return int(name[1]), int(name[2])


_CODES = frozenset(range(NUM_OPS))
_NUMBERS = frozenset((int, float))  # entry types the pure-Python reads accept (others: left to validate)
_Picker = Callable[[Sequence[Any]], tuple[Any, ...]]
_RULES: dict[int, tuple[_Picker, _Picker, int, _Picker, _Picker]] = {}


def _entry_rules(n: int) -> tuple[_Picker, _Picker, int, _Picker, _Picker]:
    """Pickers of row-major entries. First two: entry ``k`` of one and of the other may not both be non-zero
    (each pair's forward and backward entry, then each diagonal entry in both, so it must be zero); then the
    input-output entry's position; last two: each pair's forward entry, each pair's backward entry."""
    if n not in _RULES:
        diagonal = [i * n + i for i in range(n)]
        forward, backward = [i * n + j for i, j in pairs(n)], [j * n + i for i, j in pairs(n)]
        _RULES[n] = (itemgetter(*forward, *diagonal), itemgetter(*backward, *diagonal), n - 1,
                     _picker(forward), _picker(backward))
    return _RULES[n]


def _picker(positions: list[int]) -> _Picker:
    """``itemgetter`` that always returns a tuple (``itemgetter(k)`` alone returns the item)."""
    get = itemgetter(*positions)
    return get if len(positions) > 1 else lambda v: (get(v),)


def valid_entries(v: Sequence[Any], n: int) -> bool:
    """Every rule of :func:`validate` on the ``int``/``float`` entries :func:`flat_entries` reads, in pure Python.

    True exactly when :func:`validate` accepts the matrix (whole-number floats pass as their ints), without its
    message. :func:`validate` is the reference: tests check it, the general form and the 4-node form agree on
    every 0/1 matrix and on a large sample of damaged valid matrices.
    """
    if not _CODES.issuperset(v):
        return False
    if n == 4:  # _valid_general unrolled for the shipped space (a query's hot path: 0.1 us instead of 0.5)
        return bool(v[3] and not (v[0] or v[5] or v[10] or v[15]) and not (
            (v[1] and v[4]) or (v[2] and v[8]) or (v[3] and v[12]) or (v[6] and v[9]) or (v[7] and v[13])
            or (v[11] and v[14])))
    return _valid_general(v, n)


def _valid_general(v: Sequence[Any], n: int) -> bool:
    """:func:`valid_entries` past the codes' range, for any ``n``: input-output edge, zero diagonal, one direction
    per pair."""
    first, second, io, _, _ = _entry_rules(n)
    return bool(v[io]) and not any(map(mul, first(v), second(v)))


def entries_code(v: Sequence[Any], n: int) -> int:
    """The pair code of *valid* row-major entries (:func:`pair_codes` of one matrix, in pure Python)."""
    *_, forward, backward = _entry_rules(n)
    code = 0
    for a, b in zip(forward(v), backward(v)):
        code = code * PAIR_STATES + int(a or (b + NUM_OPS - 1 if b else 0))
    return code


# --------------------------------------------------------------------------- batched core (any N)


def _alive_batch(m: np.ndarray) -> np.ndarray:
    """``[R, N]`` bool: node k lies on a directed path ``0 -> k -> N-1`` (edges of both kinds)."""
    n = m.shape[-1]
    reach = (m != 0) | np.eye(n, dtype=bool)
    for _ in range(max(1, (n - 1).bit_length())):
        reach = np.matmul(reach.astype(np.uint8), reach.astype(np.uint8)) > 0
    return reach[:, 0, :] & reach[:, :, n - 1]


def prune_batch(m: np.ndarray) -> np.ndarray:
    """Prune a batch ``[R, N, N]`` of valid matrices (dead intermediate nodes' rows/columns -> 0)."""
    alive = _alive_batch(m)
    return m * (alive[:, :, None] & alive[:, None, :])


def _lex_less(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise lexicographic ``a < b`` for ``[R, K]`` arrays."""
    diff = a != b
    first = diff.argmax(axis=1)
    rows = np.arange(a.shape[0])
    return diff.any(axis=1) & (a[rows, first] < b[rows, first])


def canonical_batch(m: np.ndarray) -> np.ndarray:
    """Canonical members ``[R, N, N]`` of a batch of *pruned* matrices.

    Tries every permutation of the intermediate nodes; a relabelling counts only if it keeps every
    forward edge above and every backward edge below the diagonal. Keeps the lexicographically
    smallest row-major member.
    """
    r, n = m.shape[0], m.shape[-1]
    upper = np.triu(np.ones((n, n), dtype=bool), 1)
    fwd, bwd = (m != 0) & upper, (m != 0) & upper.T
    best = m.reshape(r, n * n).copy()
    for perm in itertools.permutations(range(1, n - 1)):
        p = np.array((0, *perm, n - 1))  # new label -> old label
        if np.array_equal(p, np.arange(n)):
            continue
        ok = ~((fwd[:, p][:, :, p] & ~upper).any(axis=(1, 2)) | (bwd[:, p][:, :, p] & ~upper.T).any(axis=(1, 2)))
        cand = m[:, p][:, :, p].reshape(r, n * n)
        take = ok & _lex_less(cand, best)
        best[take] = cand[take]
    return best.reshape(r, n, n)


def matrix_keys(m: np.ndarray) -> np.ndarray:
    """``int64`` key per matrix: its row-major entries as base-5 digits (order-preserving, N <= 5)."""
    n = m.shape[-1]
    if n * n > 27:  # 5**27 > 2**63
        raise ValueError(f"shape: integer keys need N <= 5, got N = {n}")
    weights = NUM_OPS ** np.arange(n * n - 1, -1, -1, dtype=np.int64)
    return m.reshape(-1, n * n).astype(np.int64) @ weights


def raw_matrices(kind: Kind, n: int = NUM_NODES) -> np.ndarray:
    """Every raw valid matrix of a kind, ``[R, N, N]`` int8 (4 * 5^5 forward, 4 * 9^5 backward at N = 4)."""
    _check_kind(kind)
    options = [(c, 0) for c in range(NUM_OPS)] + ([(0, c) for c in range(1, NUM_OPS)] if kind == "backward" else [])
    io_options = [(c, 0) for c in range(1, NUM_OPS)]
    choice = [np.arange(len(io_options if p == (0, n - 1) else options)) for p in pairs(n)]
    grid = np.stack(np.meshgrid(*choice, indexing="ij"), -1).reshape(-1, len(pairs(n)))
    out = np.zeros((grid.shape[0], n, n), dtype=np.int8)
    for k, (i, j) in enumerate(pairs(n)):
        table = np.array(io_options if (i, j) == (0, n - 1) else options, dtype=np.int8)
        out[:, i, j], out[:, j, i] = table[grid[:, k], 0], table[grid[:, k], 1]
    return out


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind: expected 'forward' or 'backward', got {kind!r}")


# --------------------------------------------------------------------------- the enumerated space


def flat_entries(matrix: Any, n: int) -> list[Any] | None:
    """Row-major entries of the common matrix forms (text, nested lists/tuples of ``int``/``float``, a numpy
    array, a :class:`Cell`), read without numpy work and not yet checked; ``None`` for any other form."""
    t = type(matrix)
    if t is list or t is tuple:
        if len(matrix) != n:
            return None
        flat: list[Any] = []
        for row in matrix:
            if (type(row) is not list and type(row) is not tuple) or len(row) != n:
                return None
            flat += row
        return flat if _NUMBERS.issuperset(map(type, flat)) else None  # True == 1 and others: left to validate
    if t is str:
        rows = matrix.replace(",", " ").split()
        if list(map(len, rows)) != [n] * n:
            return None
        return [ord(c) - 48 for c in "".join(rows)]  # a non-digit falls outside 0-4 and is rejected
    if t is Cell:
        return matrix.matrix.ravel().tolist()
    if t is np.ndarray and matrix.shape == (n, n) and matrix.dtype.kind in "iuf":
        return matrix.ravel().tolist()
    return None



class Space:
    """Every unique cell of the ``N``-node space, enumerated once (vectorised) and indexed.

    ``matrices[u]`` is the canonical matrix of unique cell ``u``; cells are ordered by canonical key,
    so indices are stable. Forward cells are a subset of the backward space. ``raw_counts[kind][u]``
    is how many raw matrices of that kind's raw space map to cell ``u`` (0 for backward cells in the
    forward space).
    """

    def __init__(self, n: int = NUM_NODES) -> None:
        self.n = n
        raw = raw_matrices("backward", n)
        canon = canonical_batch(prune_batch(raw))
        keys, inverse, counts = np.unique(matrix_keys(canon), return_inverse=True, return_counts=True)
        first = np.zeros(len(keys), dtype=np.int64)
        first[inverse[::-1]] = np.arange(len(inverse))[::-1]
        self.keys = keys
        self.matrices = canon[first]
        self.matrices.setflags(write=False)
        upper = np.triu(np.ones((n, n), dtype=bool), 1)
        self.is_backward = ((self.matrices != 0) & upper.T).any(axis=(1, 2))
        fwd_raw = ~((raw != 0) & upper.T).any(axis=(1, 2))
        self.raw_counts = {
            "backward": counts.astype(np.int64),
            "forward": np.bincount(inverse[fwd_raw], minlength=len(keys)).astype(np.int64),
        }
        self._raw_codes = pair_codes(raw)
        self._raw_to_unique = inverse.astype(np.int32)
        self._lookup: np.ndarray | None = None
        self._lookup_list_cache: list[int] | None = None
        self._texts: np.ndarray | None = None
        self._hashes: list[str] | None = None
        self._hash_index: dict[str, int] | None = None

    @property
    def lookup(self) -> np.ndarray:
        """Dense ``int32`` table: :func:`pair_codes` of any raw valid matrix -> unique index (-1 invalid)."""
        if self._lookup is None:
            table = np.full(PAIR_STATES ** len(pairs(self.n)), -1, dtype=np.int32)
            table[self._raw_codes] = self._raw_to_unique
            self._lookup = table
        return self._lookup

    @property
    def _lookup_list(self) -> list[int]:
        if self._lookup_list_cache is None:
            self._lookup_list_cache = self.lookup.tolist()
        return self._lookup_list_cache

    @property
    def texts(self) -> np.ndarray:
        """Text form of every unique cell as ASCII bytes (``S``-dtype array), index-aligned."""
        if self._texts is None:
            self._texts = texts_of(self.matrices)
        return self._texts

    def hash_of(self, u: int) -> str:
        """Hash of unique cell ``u`` (see module docstring)."""
        return _digest8(self.texts[u]).hex()

    @property
    def hashes(self) -> list[str]:
        """Hash string of every unique cell, index-aligned with :attr:`matrices`."""
        if self._hashes is None:
            self._hashes = cell_hashes(self.matrices).astype(str).tolist()
        return self._hashes

    @property
    def hash_index(self) -> dict[str, int]:
        """Hash string -> unique index of every cell (built once; also the set of hashes a table may hold)."""
        if self._hash_index is None:
            self._hash_index = {h: u for u, h in enumerate(self.hashes)}
        return self._hash_index

    def fast_index(self, obj: object) -> int | None:
        """Unique index of a matrix in a form :func:`flat_entries` reads, in pure Python.

        Returns ``None`` when ``obj`` is not of that simple shape or is invalid (:func:`valid_entries`), so the
        caller can fall back to :func:`validate` (which raises the precise error). Used by hot query paths.
        """
        n = self.n
        v = flat_entries(obj, n)
        if v is None or not valid_entries(v, n):
            return None
        return self._lookup_list[entries_code(v, n)]  # a valid matrix is always in the table

    def indices(self, kind: Kind) -> np.ndarray:
        """Indices of the unique cells of a kind's space (backward includes forward)."""
        _check_kind(kind)
        return np.flatnonzero(self.raw_counts[kind] > 0)

    def index_of(self, matrix: np.ndarray) -> int:
        """Unique index of a validated matrix (any member of the class, pruned or not)."""
        return int(self.lookup[int(pair_codes(matrix[None])[0])])

    def probabilities(self, kind: Kind, dist: Distribution = "paper") -> np.ndarray:
        """``float64 [U]``: probability that :meth:`sample_indices` draws each unique cell (sums to 1)."""
        _check_kind(kind)
        if dist == "uniform":
            return (self.raw_counts[kind] > 0) / np.count_nonzero(self.raw_counts[kind])
        if dist != "paper":
            raise ValueError(f"distribution: expected 'paper' or 'uniform', got {dist!r}")
        raw = raw_matrices(kind, self.n)
        weight = np.ones(raw.shape[0])
        if kind == "backward":  # a non-io pair is zero w.p. 1/5, each of its 8 edge states w.p. 1/10
            zero_pairs = sum((raw[:, i, j] == 0) & (raw[:, j, i] == 0) for i, j in pairs(self.n))
            weight = 2.0**zero_pairs
        prob = np.bincount(self.lookup[pair_codes(raw)], weights=weight, minlength=len(self.keys))
        return prob / prob.sum()

    def sample_indices(self, count: int, kind: Kind, seed: int | np.random.Generator, dist: Distribution = "paper") -> np.ndarray:
        """Draw ``count`` unique-cell indices (with replacement), seeded.

        ``dist="paper"``: the paper's raw sampling (each upper pair uniform over the 5 codes;
        backward kind: each pair first picks forward or backward with probability 1/2; draws with
        ``M[0][N-1] = 0`` are redrawn), mapped to classes. ``dist="uniform"``: uniform over the
        kind's unique cells.
        """
        _check_kind(kind)
        rng = np.random.default_rng(seed)
        if dist == "uniform":
            pool = self.indices(kind)
            return pool[rng.integers(0, len(pool), size=count)]
        if dist != "paper":
            raise ValueError(f"distribution: expected 'paper' or 'uniform', got {dist!r}")
        states = np.zeros((count, len(pairs(self.n))), dtype=np.int64)
        for p, (i, j) in enumerate(pairs(self.n)):
            op = rng.integers(1 if (i, j) == (0, self.n - 1) else 0, NUM_OPS, size=count)  # redraw == uniform 1-4
            back = rng.random(count) < 0.5 if kind == "backward" and (i, j) != (0, self.n - 1) else np.zeros(count, bool)
            states[:, p] = np.where(back & (op > 0), op + NUM_OPS - 1, op)
        return self.lookup[states @ pair_weights(self.n)].astype(np.int64)


@lru_cache(maxsize=4)
def space(n: int = NUM_NODES) -> Space:
    """The enumerated ``n``-node space, built on first use and cached for the process."""
    return Space(n)


# --------------------------------------------------------------------------- the cell value type


class Cell:
    """A validated cell matrix. Immutable; ``str(cell)`` is the text form of the matrix as given.

    Equality compares matrices exactly; use :attr:`hash` or :func:`is_isomorphic` for "same cell".
    """

    __slots__ = ("matrix", "_canonical", "_hash")

    def __init__(self, matrix: object, *, nodes: int | None = NUM_NODES) -> None:
        if isinstance(matrix, Cell):
            self.matrix: np.ndarray = matrix.matrix
        else:
            self.matrix = validate(matrix, nodes)
        self._canonical: Cell | None = None
        self._hash: str | None = None

    @classmethod
    def from_text(cls, text: str) -> "Cell":
        """From the text form ``"0302 0030 3003 0000"`` or a JSON nested list string."""
        return cls(_parse_text(text))

    @property
    def n(self) -> int:
        return self.matrix.shape[0]

    @property
    def text(self) -> str:
        return to_text(self.matrix)

    def to_list(self) -> list[list[int]]:
        """The matrix as a JSON-ready nested list."""
        return self.matrix.astype(int).tolist()

    @property
    def alive(self) -> np.ndarray:
        """``[N]`` bool: nodes that pruning keeps."""
        return _alive_batch(self.matrix[None])[0]

    @property
    def pruned(self) -> "Cell":
        """This matrix with dead intermediate nodes removed."""
        return Cell(prune_batch(self.matrix[None])[0], nodes=None)

    @property
    def canonical(self) -> "Cell":
        """The canonical member of this cell's class (pruned, smallest row-major order)."""
        if self._canonical is None:
            if self.n == NUM_NODES:
                sp = space(self.n)
                self._canonical = Cell(sp.matrices[cell_index(self.matrix)], nodes=None)
            else:
                self._canonical = Cell(canonical_batch(prune_batch(self.matrix[None]))[0], nodes=None)
        return self._canonical

    @property
    def hash(self) -> str:
        """Stable 16-hex-digit hash of the canonical matrix."""
        if self._hash is None:
            self._hash = _digest8(self.canonical.text.encode()).hex()
        return self._hash

    @property
    def kind(self) -> Kind:
        """``"backward"`` if the pruned matrix keeps a backward (below-diagonal) edge."""
        return "backward" if np.tril(self.pruned.matrix, -1).any() else "forward"

    def edges(self) -> list[tuple[int, int, str]]:
        """Non-zero edges ``(i, j, op_name)`` of the matrix, row-major (``i > j``: backward)."""
        return [(int(i), int(j), OPS[self.matrix[i, j]]) for i, j in zip(*np.nonzero(self.matrix))]

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Cell('{self.text}')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cell) and np.array_equal(self.matrix, other.matrix)

    def __hash__(self) -> int:
        return hash(self.matrix.tobytes())


def cell_index(matrix: object) -> int:
    """Unique index (into ``space()``) of any accepted 4-node matrix form; ``ValueError`` if invalid."""
    sp = space(NUM_NODES)
    u = sp.fast_index(matrix)
    return sp.index_of(validate(matrix)) if u is None else u


def cell_hash(matrix: object) -> str:
    """Hash of any accepted matrix form (validated; isomorphic and unpruned variants agree)."""
    return space(NUM_NODES).hash_of(cell_index(matrix))


def is_isomorphic(a: object, b: object) -> bool:
    """True when two matrices are the same cell (equal after pruning and canonical relabelling)."""
    return Cell(a, nodes=None).canonical == Cell(b, nodes=None).canonical


def enumerate_cells(kind: Kind, n: int = NUM_NODES) -> Iterator[tuple[Cell, int]]:
    """Every unique cell of a kind's space with the number of raw matrices that map to it."""
    sp = space(n)
    for u in sp.indices(kind):
        yield Cell(sp.matrices[u], nodes=None), int(sp.raw_counts[kind][u])


def sample_cells(count: int, kind: Kind, seed: int, dist: Distribution = "paper") -> list[Cell]:
    """Seeded draw of ``count`` cells (see :meth:`Space.sample_indices`), canonical matrices."""
    sp = space(NUM_NODES)
    return [Cell(sp.matrices[u], nodes=None) for u in sp.sample_indices(count, kind, seed, dist)]
