"""The cell space against independent evidence: networkx isomorphism, a naive pure-Python
canonicaliser, hand-derived counts, and property tests."""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict

import networkx as nx
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from networkx.algorithms.isomorphism import DiGraphMatcher

from snnbench.api.lookup import cell_key
from snnbench.cli import main
from snnbench.space import (
    PAIR_STATES,
    Cell,
    _valid_general,
    canonical_batch,
    cell_hash,
    edge_name,
    edge_nodes,
    entries_code,
    enumerate_cells,
    flat_entries,
    is_isomorphic,
    matrix_states,
    pair_codes,
    pairs,
    prune_batch,
    raw_matrices,
    sample_cells,
    space,
    states_to_matrix,
    texts_of,
    to_text,
    valid_entries,
    validate,
)

PUBLISHED = "0302 0030 3003 0000"  # the authors' CIFAR-100 backward cell
RAW = {kind: raw_matrices(kind) for kind in ("forward", "backward")}


# ----------------------------------------------------------------------------- independent references


def nx_pruned_graph(m: np.ndarray) -> nx.DiGraph:
    """Labelled graph of a matrix after pruning, pruning done with networkx path queries."""
    n = len(m)
    full = nx.DiGraph()
    full.add_nodes_from(range(n))
    full.add_edges_from((i, j) for i in range(n) for j in range(n) if m[i][j])
    alive = {0, n - 1} | {k for k in range(1, n - 1) if nx.has_path(full, 0, k) and nx.has_path(full, k, n - 1)}
    g = nx.DiGraph()
    for k in range(n):
        g.add_node(k, role="in" if k == 0 else "out" if k == n - 1 else "mid")
    for i, j in full.edges:
        if i in alive and j in alive:
            g.add_edge(i, j, op=int(m[i][j]), direction="f" if i < j else "b")
    return g


def nx_same(a: nx.DiGraph, b: nx.DiGraph) -> bool:
    matcher = DiGraphMatcher(
        a, b, node_match=lambda x, y: x["role"] == y["role"], edge_match=lambda x, y: x == y
    )
    return matcher.is_isomorphic()


def invariant(g: nx.DiGraph) -> tuple:
    return tuple(sorted((g.nodes[i]["role"], g.nodes[j]["role"], d["op"], d["direction"]) for i, j, d in g.edges(data=True)))


def nx_classes(matrices: np.ndarray) -> list[int]:
    """Class label of each matrix, found with networkx alone (bucketed by an invariant)."""
    reps: dict[tuple, list[tuple[nx.DiGraph, int]]] = defaultdict(list)
    labels, next_label = [], 0
    for m in matrices:
        g = nx_pruned_graph(m)
        bucket = reps[invariant(g)]
        for rep, label in bucket:
            if nx_same(g, rep):
                labels.append(label)
                break
        else:
            bucket.append((g, next_label))
            labels.append(next_label)
            next_label += 1
    return labels


def naive_canonical(m: tuple[tuple[int, ...], ...]) -> tuple[int, ...]:
    """Pure-Python prune + canonical member (written independently of snnbench.space)."""
    n = len(m)

    def reach(start: int, forward: bool) -> set[int]:
        seen, todo = {start}, [start]
        while todo:
            a = todo.pop()
            for b in range(n):
                if (m[a][b] if forward else m[b][a]) and b not in seen:
                    seen.add(b)
                    todo.append(b)
        return seen

    alive = reach(0, True) & reach(n - 1, False) | {0, n - 1}
    p = [[m[i][j] if i in alive and j in alive else 0 for j in range(n)] for i in range(n)]
    best = None
    for perm in itertools.permutations(range(1, n - 1)):
        lab = (0, *perm, n - 1)  # old node -> new label
        if any(p[i][j] and (i < j) != (lab[i] < lab[j]) for i in range(n) for j in range(n)):
            continue
        q = [[0] * n for _ in range(n)]
        for i in range(n):
            for j in range(n):
                q[lab[i]][lab[j]] = p[i][j]
        flat = tuple(v for row in q for v in row)
        best = flat if best is None or flat < best else best
    return best  # type: ignore[return-value]


def naive_valid(obj: object) -> bool:
    try:
        rows = [list(r) for r in obj]  # type: ignore[attr-defined]  # any object: not iterable -> TypeError
    except TypeError:
        return False
    if len(rows) != 4 or any(len(r) != 4 for r in rows):
        return False
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v == int(v) and 0 <= v <= 4 for r in rows for v in r):
        return False
    return (
        all(rows[i][i] == 0 for i in range(4))
        and all(not (rows[i][j] and rows[j][i]) for i in range(4) for j in range(4) if i != j)
        and rows[0][3] != 0
    )


# ----------------------------------------------------------------------------- counts and equivalence


def test_raw_counts_match_the_spec_formula() -> None:
    assert len(raw_matrices("forward")) == 4 * 5**5 == 12_500
    assert len(raw_matrices("backward")) == 4 * 9**5 == 236_196
    sp = space()
    assert sp.raw_counts["forward"].sum() == 12_500
    assert sp.raw_counts["backward"].sum() == 236_196
    # every raw backward matrix is distinct and valid
    raw = raw_matrices("backward")
    assert len(np.unique(raw.reshape(len(raw), -1), axis=0)) == len(raw)
    for m in raw[:: 9973]:
        validate(m)


def test_whole_forward_space_agrees_with_networkx() -> None:
    raw = raw_matrices("forward")
    ours = [cell_hash(m) for m in raw]
    theirs = nx_classes(raw)
    # same partition: a bijection between our hashes and networkx classes
    pairs = set(zip(ours, theirs))
    assert len(pairs) == len(set(ours)) == len(set(theirs)) == 7_012
    assert len(space().indices("forward")) == 7_012
    # each raw matrix is networkx-isomorphic to the canonical member we chose for it
    sp = space()
    for m in raw[::50]:
        assert nx_same(nx_pruned_graph(m), nx_pruned_graph(Cell(m).canonical.matrix))
    # raw counts per cell equal the networkx class sizes
    size = Counter(theirs)
    hash_to_label = dict(pairs)
    for u in sp.indices("forward")[::37]:
        assert sp.raw_counts["forward"][u] == size[hash_to_label[sp.hash_of(u)]]


def test_backward_sample_agrees_with_networkx() -> None:
    raw = raw_matrices("backward")
    pick = raw[np.random.default_rng(0).choice(len(raw), 4_000, replace=False)]
    ours = [cell_hash(m) for m in pick]
    theirs = nx_classes(pick)
    assert len(set(zip(ours, theirs))) == len(set(ours)) == len(set(theirs))


def test_backward_unique_count_matches_naive_canonicaliser() -> None:
    raw = raw_matrices("backward")
    classes = Counter(naive_canonical(tuple(map(tuple, m.tolist()))) for m in raw)
    sp = space()
    assert len(classes) == len(sp.indices("backward")) == 102_596
    ours = {tuple(sp.matrices[u].ravel().tolist()): int(sp.raw_counts["backward"][u]) for u in sp.indices("backward")}
    assert ours == dict(classes)


def test_forward_cells_are_the_backward_cells_without_backward_edges() -> None:
    sp = space()
    fwd = set(sp.indices("forward").tolist())
    assert fwd == set(np.flatnonzero(~sp.is_backward).tolist())
    assert all(Cell(sp.matrices[u]).kind == "forward" for u in list(fwd)[:200])


def test_five_node_canonicaliser_agrees_with_networkx() -> None:
    """The canonicaliser is written for N nodes: check N = 5 on random valid matrices."""
    rng = np.random.default_rng(1)
    mats: list[np.ndarray] = []
    while len(mats) < 600:
        m = np.zeros((5, 5), dtype=np.int8)
        for i, j in itertools.combinations(range(5), 2):
            op = rng.integers(0, 5) if rng.random() < 0.6 else 0
            if rng.random() < 0.3 and (i, j) != (0, 4):
                m[j, i] = op
            else:
                m[i, j] = op
        if m[0, 4]:
            mats.append(m)
    # relabelled copies: those that keep every edge on its side of the diagonal are the same cell
    lower = np.tril(np.ones((5, 5), bool), -1)
    same: list[tuple[int, int]] = []
    for i, m in enumerate(list(mats[:300])):
        p = np.array([0, *rng.permutation([1, 2, 3]), 4])
        q = m[p][:, p]
        if np.array_equal((q != 0) & lower, ((m != 0) & lower)[p][:, p]):
            same.append((i, len(mats)))
        mats.append(q)
    batch = np.stack(mats)
    canon = canonical_batch(prune_batch(batch))
    ours = [c.tobytes() for c in canon]
    theirs = nx_classes(batch)
    assert len(set(zip(ours, theirs))) == len(set(ours)) == len(set(theirs))
    assert len(same) > 30 and all(ours[i] == ours[j] and theirs[i] == theirs[j] for i, j in same)
    assert [tuple(c.ravel()) for c in canon[:100]] == [naive_canonical(tuple(map(tuple, m.tolist()))) for m in mats[:100]]
    assert Cell(mats[0], nodes=None).canonical.matrix.tobytes() == ours[0]


# ----------------------------------------------------------------------------- the value type


def test_published_cell() -> None:
    c = Cell(PUBLISHED)
    assert c.text == PUBLISHED and str(c) == PUBLISHED
    assert c.to_list() == [[0, 3, 0, 2], [0, 0, 3, 0], [3, 0, 0, 3], [0, 0, 0, 0]]
    assert c.kind == "backward"
    assert c.edges() == [(0, 1, "conv3x3"), (0, 3, "conv1x1"), (1, 2, "conv3x3"), (2, 0, "conv3x3"), (2, 3, "conv3x3")]
    assert len(c.hash) == 16 and int(c.hash, 16) >= 0


def test_hash_is_a_pinned_function_of_the_canonical_text() -> None:
    import hashlib

    c = Cell("0000 0003 0003 0000".replace("0000 0003 0003 0000", "0301 0003 0000 0000"))
    expected = hashlib.sha256(b"snnbench-cell-v1:" + c.canonical.text.encode()).hexdigest()[:16]
    assert c.hash == expected
    assert cell_hash(PUBLISHED) == "705e2289d2d667b5"  # stable across processes and releases


# ----------------------------------------------------------------------------- fast paths against the one reference


def accepts(matrix: object, n: int) -> bool:
    """The reference: :func:`validate` accepts the matrix."""
    try:
        validate(matrix, n)
    except ValueError:
        return False
    return True


def mutated(rng: np.random.Generator, n: int, count: int) -> list[list[list[object]]]:
    """Raw valid matrices with 0-3 entries replaced by codes, out-of-range numbers, floats (whole or not) and NaN:
    about half stay valid, the rest break each rule of the space."""
    raw = raw_matrices("backward", n)
    values: list[object] = [0, 1, 2, 3, 4, -1, 5, 9, 1.0, 3.0, 0.0, 2.5, float("nan"), float("inf")]
    out = []
    for m in raw[rng.integers(0, len(raw), count)].tolist():
        for _ in range(int(rng.integers(0, 4))):
            m[int(rng.integers(n))][int(rng.integers(n))] = values[int(rng.integers(len(values)))]
        out.append(m)
    return out


@pytest.mark.parametrize("n", [3, 4])
def test_valid_entries_and_fast_index_agree_with_validate(n: int) -> None:
    """Every 0/1 matrix (every rule but the codes' range) and a large sample of damaged valid matrices (every rule,
    floats included): the pure-Python check (its 4-node unrolled form and its general form) is :func:`validate`'s
    verdict, and the fast index the reference's. (The 4-node check this replaced missed ``M[0][3]`` and ``M[3][0]``
    both non-zero.)"""
    every01 = [np.array(bits).reshape(n, n).tolist() for bits in itertools.product((0, 1), repeat=n * n)]
    sample = mutated(np.random.default_rng(n), n, 20000)
    sp = space(n)
    verdicts: Counter[bool] = Counter()
    for m in every01 + sample:
        want = accepts(m, n)
        verdicts[want] += 1
        flat = flat_entries(m, n)
        assert flat is not None and valid_entries(flat, n) is want, m
        assert (set(flat) <= {0, 1, 2, 3, 4} and _valid_general(flat, n)) is want, m  # the form of any N, at 4 too
        assert valid_entries(flat_entries(to_text(np.array(m)) if want else m, n), n) is want, m  # type: ignore[arg-type]
        got = sp.fast_index(m)
        assert got == (sp.index_of(validate(m, n)) if want else None), m
    assert min(verdicts.values()) > 5000  # both verdicts are well represented
    assert naive_valid([[0, 3, 0, 2], [0, 0, 3, 0], [3, 0, 0, 3], [0, 0, 0, 0]]) and valid_entries(
        flat_entries(PUBLISHED, 4), 4)  # type: ignore[arg-type]


def test_an_input_output_pair_with_both_directions_is_refused_on_every_path() -> None:
    """``M[0][3]`` and ``M[3][0]`` both non-zero breaks the one-direction rule: the fast paths refuse it as the cell
    type does (the 4-node check they replaced let ``cell_key`` canonicalise it)."""
    m = [[0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0], [2, 0, 0, 0]]
    for read in (Cell, cell_hash, cell_key, lambda x: space().fast_index(x) or validate(x)):
        with pytest.raises(ValueError, match="one direction per pair: entries \\[0\\]\\[3\\]"):
            read(m)
    assert not valid_entries(flat_entries(m, 4), 4)  # type: ignore[arg-type]


def test_entries_of_other_types_are_left_to_validate() -> None:
    """Entries that compare equal to a code but are not ``int``/``float`` (numpy scalars, bools, Decimal, complex)
    skip the fast read: the cell type's reading of them decides."""
    from decimal import Decimal

    base: list[list[object]] = [[0, 3, 0, 2], [0, 0, 3, 0], [3, 0, 0, 3], [0, 0, 0, 0]]
    for odd in (np.int64(3), True, Decimal(3), complex(3)):
        m = [row[:] for row in base]
        m[0][1] = odd
        assert flat_entries(m, 4) is None
        if accepts(m, 4):
            assert cell_hash(m) == cell_hash(PUBLISHED if odd == 3 else m)
        else:
            with pytest.raises(ValueError):
                cell_hash(m)


def test_pair_code_is_the_lookup_key_of_every_raw_matrix() -> None:
    """The pair code, computed by hand from each pair's state (most significant first), keys ``Space.lookup`` to the
    canonical form of every raw matrix; the pure-Python code and the state round trip agree with it."""
    raw = RAW["backward"]
    sp = space()
    states = np.zeros((len(raw), len(pairs())), dtype=np.int64)
    for p, (i, j) in enumerate(itertools.combinations(range(4), 2)):
        states[:, p] = np.where(raw[:, i, j] != 0, raw[:, i, j], np.where(raw[:, j, i] != 0, raw[:, j, i] + 4, 0))
    by_hand = sum(states[:, p] * 9 ** (5 - p) for p in range(6))
    assert PAIR_STATES == 9 and np.array_equal(matrix_states(raw), states)
    assert np.array_equal(pair_codes(raw), by_hand)
    assert np.array_equal(sp.matrices[sp.lookup[by_hand]], canonical_batch(prune_batch(raw)))
    assert (np.delete(sp.lookup, by_hand) == -1).all()  # every other code is an invalid matrix
    rng = np.random.default_rng(0)
    for k in rng.choice(len(raw), 3000, replace=False):
        assert entries_code(raw[k].ravel().tolist(), 4) == by_hand[k]
        assert states_to_matrix(states[k].tolist()) == raw[k].tolist()


def test_text_form_and_hash_of_every_cell_equal_a_naive_build() -> None:
    """One text form and one hash serve the space's table, the cell type and :func:`cell_hash`."""
    import hashlib

    sp = space()
    naive = [" ".join("".join(str(v) for v in row) for row in m) for m in sp.matrices.tolist()]
    assert [t.decode() for t in texts_of(sp.matrices)] == naive == [t.decode() for t in sp.texts]
    for u in np.random.default_rng(1).choice(len(naive), 500, replace=False).tolist():
        want = hashlib.sha256(f"snnbench-cell-v1:{naive[u]}".encode()).hexdigest()[:16]
        assert sp.hashes[u] == sp.hash_of(u) == Cell(naive[u]).hash == cell_hash(naive[u]) == want
        assert to_text(sp.matrices[u]) == Cell(sp.matrices[u]).text == naive[u]
    assert to_text(np.array([[0, 1, 2], [0, 0, 4], [3, 0, 0]])) == "012 004 300"  # any node count


def test_edge_names_round_trip() -> None:
    names = {edge_name(i, j): (i, j) for i in range(4) for j in range(4) if i != j}
    assert len(names) == 12 and names["e12"] == (1, 2) and names["e30"] == (3, 0)
    assert all(edge_nodes(name) == ij for name, ij in names.items())


def test_hashes_are_unique_over_the_whole_space() -> None:
    h = space().hashes
    assert len(set(h)) == len(h)


@pytest.mark.parametrize(
    "form",
    [
        [[0, 3, 0, 2], [0, 0, 3, 0], [3, 0, 0, 3], [0, 0, 0, 0]],
        ((0, 3, 0, 2), (0, 0, 3, 0), (3, 0, 0, 3), (0, 0, 0, 0)),
        np.array([[0, 3, 0, 2], [0, 0, 3, 0], [3, 0, 0, 3], [0, 0, 0, 0]], dtype=np.uint8),
        np.array([[0, 3, 0, 2], [0, 0, 3, 0], [3, 0, 0, 3], [0, 0, 0, 0]], dtype=np.int64),
        np.array([[0, 3, 0, 2], [0, 0, 3, 0], [3, 0, 0, 3], [0, 0, 0, 0]], dtype=np.float32),
        torch.tensor([[0, 3, 0, 2], [0, 0, 3, 0], [3, 0, 0, 3], [0, 0, 0, 0]], dtype=torch.int16),
        torch.tensor([[0.0, 3, 0, 2], [0, 0, 3, 0], [3, 0, 0, 3], [0, 0, 0, 0]], dtype=torch.float64),
        "[[0, 3, 0, 2], [0, 0, 3, 0], [3, 0, 0, 3], [0, 0, 0, 0]]",
        "  0302 0030 3003 0000 ",
        "0302,0030,3003,0000",
    ],
)
def test_every_input_form_gives_the_same_cell(form: object) -> None:
    assert Cell(form) == Cell(PUBLISHED)
    assert cell_hash(form) == Cell(PUBLISHED).hash


@pytest.mark.parametrize(
    "bad, rule",
    [
        ([[0, 1], [0, 0]], "shape"),
        ("0302 0030 3003", "shape"),
        ("0302 0030", "shape: the text form is square (N rows of N digits), got 2 row(s) of lengths [4, 4]"),
        ("0302 0030 3003 000", "shape"),
        ([[0, 1, 0, 1], [0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]], "shape"),
        ([[0, 5, 0, 1], [0] * 4, [0] * 4, [0] * 4], "codes: entry [0][1] = 5"),
        ([[0, -1, 0, 1], [0] * 4, [0] * 4, [0] * 4], "codes: entry [0][1] = -1"),
        ([[0, 1.5, 0, 1], [0] * 4, [0] * 4, [0] * 4], "codes: entry [0][1] = 1.5"),
        ([[0, float("nan"), 0, 1], [0] * 4, [0] * 4, [0] * 4], "codes: entry [0][1]"),
        ([[0, 0, 0, 1], [0, 2, 0, 0], [0] * 4, [0] * 4], "diagonal: entry [1][1]"),
        ([[0, 3, 0, 1], [2, 0, 0, 0], [0] * 4, [0] * 4], "one direction per pair: entries [0][1] = 3 and [1][0] = 2"),
        ([[0, 3, 0, 0], [0, 0, 0, 3], [0] * 4, [0] * 4], "input-output edge: entry [0][3]"),
        ("hello", "format"),
        ("[[0, 1]", "format"),
        ([["a", 0, 0, 1]] * 4, "format"),
        (None, "format"),
        ([[0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1], [0, [0], 0, 0]], "shape"),
    ],
)
def test_each_rule_has_a_one_line_message(bad: object, rule: str) -> None:
    with pytest.raises(ValueError) as err:
        Cell(bad)
    assert rule in str(err.value) and "\n" not in str(err.value)


def test_is_isomorphic_and_pruning() -> None:
    a = Cell("0301 0003 0000 0000")  # node 2 dead
    b = Cell("0031 0000 0003 0000")  # same cell with nodes 1 and 2 swapped
    assert is_isomorphic(a, b) and a.hash == b.hash
    # an edge into a dead node and a backward edge out of it change nothing
    c = Cell("0321 0003 0000 0000")
    assert c.alive.tolist() == [True, True, False, True]
    assert c.pruned == a and c.hash == a.hash
    assert not is_isomorphic(a, "0302 0003 0000 0000")
    # a backward edge that pruning removes leaves a forward cell
    d = Cell("0301 0003 0000 0040")
    assert d.kind == "forward" and d.hash == a.hash


def test_swap_is_refused_when_it_would_flip_an_edge_direction() -> None:
    # 1 -> 2 forward: swapping 1 and 2 would turn it into a backward edge, so no relabelling
    a = Cell("0201 0031 0001 0000")
    b = Cell("0101 0032 0001 0000")  # different ops on 0->1 vs 0->2
    assert not is_isomorphic(a, b)
    assert a.canonical == a


# ----------------------------------------------------------------------------- properties

valid_cells = st.integers(0, 12_500 + 236_196 - 1).map(
    lambda i: RAW["forward"][i] if i < 12_500 else RAW["backward"][i - 12_500]
)


@st.composite
def cell_and_variant(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    m = RAW["backward"][draw(st.integers(0, 236_195))]
    if not (m[1, 2] or m[2, 1]) and draw(st.booleans()):
        p = [0, 2, 1, 3]
        return m, m[p][:, p]
    return m, m


@settings(max_examples=300, deadline=None)
@given(cell_and_variant(), st.sampled_from([np.int8, np.uint8, np.int32, np.int64, np.float32, np.float64]))
def test_hash_invariant_under_relabelling_dtype_and_dead_nodes(pair: tuple[np.ndarray, np.ndarray], dtype: type) -> None:
    m, variant = pair
    h = Cell(m).hash
    assert Cell(variant.astype(dtype)).hash == h
    assert cell_hash(torch.from_numpy(variant.astype(np.int64))) == h
    assert Cell(m).pruned.hash == h
    assert naive_canonical(tuple(map(tuple, m.tolist()))) == tuple(Cell(m).canonical.matrix.ravel().tolist())


@settings(max_examples=300, deadline=None)
@given(valid_cells)
def test_pruning_idempotent_and_text_round_trips(m: np.ndarray) -> None:
    c = Cell(m)
    assert c.pruned.pruned == c.pruned
    assert c.canonical.canonical == c.canonical
    assert Cell.from_text(c.text) == c
    assert Cell(json.dumps(c.to_list())) == c
    assert Cell(c.text).text == c.text


anything = st.recursive(
    st.one_of(
        st.integers(-3, 7), st.floats(allow_nan=True), st.text(max_size=5), st.none(), st.booleans()
    ),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=30,
)
near_matrices = st.lists(st.lists(st.integers(-1, 5) | st.sampled_from([0.0, 1.0, 2.5, 3.0]), min_size=3, max_size=5), min_size=3, max_size=5)


@pytest.mark.parametrize("form", [
    [[0, True, 0, 1], [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]],
    [[0, np.bool_(True), 0, 1], [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]],
    np.array([[0, 1, 0, 1], [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]], dtype=bool),
    "[[0, true, 0, 1], [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]]",
], ids=["python-bool", "numpy-bool", "bool-array", "json-true"])
def test_true_false_entries_are_not_operation_codes(form: object) -> None:
    """True == 1 in Python and numpy: a boolean matrix would silently read as skip connections (naive_valid, the
    reference of the property test below, refuses booleans too)."""
    if not isinstance(form, str):
        assert not naive_valid(form)
    for read in (Cell, cell_hash, cell_key):
        with pytest.raises(ValueError, match="true/false entries are not operation codes"):
            read(form)


@settings(max_examples=300, deadline=None)
@given(st.one_of(anything, near_matrices))
def test_malformed_input_always_gives_value_error(obj: object) -> None:
    try:
        c = Cell(obj)
    except ValueError as err:
        assert "\n" not in str(err)
        assert not naive_valid(obj)
    else:
        assert naive_valid(obj)
        assert cell_hash(obj) == c.hash


# ----------------------------------------------------------------------------- enumeration and sampling


def test_enumerate_cells_yields_each_class_once_with_counts() -> None:
    cells = list(enumerate_cells("forward"))
    assert len(cells) == 7_012 and sum(n for _, n in cells) == 12_500
    assert all(c == c.canonical for c, _ in cells[::101])
    assert len({c.hash for c, _ in cells}) == 7_012


def test_paper_sampling_matches_the_exact_class_distribution() -> None:
    sp = space()
    draws = sp.sample_indices(200_000, "forward", seed=3, dist="paper")
    expected = sp.raw_counts["forward"] / 12_500  # uniform over raw forward matrices
    observed = np.bincount(draws, minlength=len(expected)) / len(draws)
    chi2 = len(draws) * ((observed - expected) ** 2 / np.where(expected > 0, expected, 1)).sum()
    dof = len(sp.indices("forward")) - 1
    assert chi2 < dof + 5 * np.sqrt(2 * dof)  # Pearson chi-square, 5 sigma
    uniform = np.full(len(expected), 1 / 7_012) * (expected > 0)  # a wrong distribution is rejected
    assert len(draws) * ((observed - uniform) ** 2 / np.where(uniform > 0, uniform, 1)).sum() > dof + 50 * np.sqrt(2 * dof)
    # backward: each pair is zero with probability 1/5, the i/o edge never
    draws = sp.sample_indices(50_000, "backward", seed=4, dist="paper")
    raw = raw_matrices("backward")
    nz = (raw != 0).reshape(len(raw), -1).sum(1) - 1  # non-zero pairs besides the i/o edge
    p_raw = (1 / 4) * (1 / 5) ** (5 - nz) * (1 / 10) ** nz
    assert abs(p_raw.sum() - 1) < 1e-9
    p_bwd = np.bincount(sp._raw_to_unique, weights=p_raw, minlength=len(sp.keys))
    frac_backward = sp.is_backward[draws].mean()
    assert abs(frac_backward - p_bwd[sp.is_backward].sum()) < 0.01


def test_uniform_sampling_and_seeds() -> None:
    sp = space()
    a = sp.sample_indices(70_120, "forward", seed=5, dist="uniform")
    assert set(a.tolist()) <= set(sp.indices("forward").tolist())
    counts = np.bincount(a, minlength=len(sp.keys))[sp.indices("forward")]
    assert counts.min() > 0 and counts.max() < 30  # mean 10
    assert (sp.sample_indices(100, "backward", seed=5) == sp.sample_indices(100, "backward", seed=5)).all()
    assert not (sp.sample_indices(100, "backward", seed=5) == sp.sample_indices(100, "backward", seed=6)).all()
    assert [c.text for c in sample_cells(5, "backward", seed=1)] == [c.text for c in sample_cells(5, "backward", seed=1)]
    with pytest.raises(ValueError, match="kind"):
        sp.sample_indices(3, "sideways", seed=0)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- CLI


def test_cli_count_hash_list() -> None:
    run = CliRunner().invoke
    out = run(main, ["cells", "count", "--kind", "backward", "--json"])
    assert out.exit_code == 0 and json.loads(out.output) == {"kind": "backward", "raw": 236_196, "unique": 102_596}
    one = json.loads(run(main, ["cells", "hash", PUBLISHED, "--json"]).output)
    four = json.loads(run(main, ["cells", "hash", *PUBLISHED.split(), "--json"]).output)
    js = json.loads(run(main, ["cells", "hash", json.dumps(Cell(PUBLISHED).to_list()), "--json"]).output)
    assert one == four == js == {"canonical": PUBLISHED, "hash": "705e2289d2d667b5", "kind": "backward"}
    rows = json.loads(run(main, ["cells", "list", "--kind", "forward", "--limit", "3", "--json"]).output)
    assert len(rows) == 3 and all(Cell(r["canonical"]).hash == r["hash"] for r in rows)


@pytest.mark.parametrize(
    "args",
    [
        ["cells", "hash", "0302 0030 3003 0001"],
        ["cells", "hash", "0302", "0030"],
        ["cells", "hash", "[[0,1]"],
        ["cells", "count", "--kind", "sideways"],
        ["cells", "list", "--limit", "-1"],
        ["cells", "--bogus"],  # click's own usage errors, at every level, are one line too
        ["--bogus"],
        ["nosuch"],
        ["query"],
        ["compare", "--budget", "0"],
    ],
)
def test_cli_bad_input_exits_2_with_one_line(args: list[str]) -> None:
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 2
    assert "Traceback" not in out.output and out.exception is None or isinstance(out.exception, SystemExit)
    (line,) = out.output.strip().splitlines()
    assert line.startswith("Error: ")


def test_cli_bare_group_shows_its_help() -> None:
    for args in ([], ["cells"]):
        out = CliRunner().invoke(main, args)
        assert "Usage: " in out.output and "Commands:" in out.output and "Error" not in out.output
