"""Cell-space speed: canonicalising every raw backward matrix, and one hash (p50/p99).

Run: ``python benchmarks/bench_space.py``. Targets on a 2-core machine: whole backward space
<= 0.5 s, one ``cell_hash`` <= 10 us. Also shows the fast path against the generic one
(validate + numpy canonicalisation) side by side, as a ratio.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from snnbench.space import Space, canonical_batch, cell_hash, prune_batch, raw_matrices, space, validate


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    raw = raw_matrices("backward")
    whole = timed(lambda: canonical_batch(prune_batch(raw)), 5)
    build = timed(lambda: Space(), 3)
    print(f"canonicalise all {len(raw):,} raw backward matrices: best {min(whole):.3f} s, median {statistics.median(whole):.3f} s")
    print(f"enumerate the space (raw + canonical + unique + counts): best {min(build):.3f} s")

    sp = space()
    sp.hash_of(0), cell_hash("0302 0030 3003 0000")  # warm the lazy tables
    mats = [m.tolist() for m in raw[np.random.default_rng(0).choice(len(raw), 2000, replace=False)]]
    forms = {"nested list": mats, "numpy int64": [np.array(m) for m in mats], "text": [" ".join("".join(map(str, r)) for r in m) for m in mats]}
    for name, items in forms.items():
        ns = []
        for m in items * 5:
            t = time.perf_counter_ns()
            cell_hash(m)
            ns.append(time.perf_counter_ns() - t)
        ns.sort()
        print(f"cell_hash({name}): p50 {ns[len(ns) // 2] / 1e3:.2f} us, p99 {ns[int(len(ns) * 0.99)] / 1e3:.2f} us")

    def generic(m: list[list[int]]) -> bytes:
        return canonical_batch(prune_batch(validate(m)[None]))[0].tobytes()

    fast = min(timed(lambda: [cell_hash(m) for m in mats], 3))
    slow = min(timed(lambda: [generic(m) for m in mats], 3))
    print(f"fast path vs generic validate+canonicalise per matrix: {slow / fast:.1f}x ({fast / len(mats) * 1e6:.2f} vs {slow / len(mats) * 1e6:.2f} us)")


if __name__ == "__main__":
    main()
