"""Write a seeded, class-balanced subset of an .npz dataset pair (``train.npz`` + ``test.npz``), small enough to
carry to a lent GPU machine (the device tool moves at most 64 MiB; CIFAR-10's train.npz alone is 142 MB).

    python benchmarks/make_subset.py ../shared/data/cifar10 .devdata/cifar10 --train 12000 --test 2000

Each split keeps, per class, the first ``n / classes`` images of one seeded permutation, in their original
order; other arrays of the file (``classes``) are copied. ``benchmarks/gpu_session.sh`` reads the result.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def subset_indices(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Ascending indices of ``n`` images, ``n / classes`` of each class (``n`` must divide evenly)."""
    classes = np.unique(labels)
    if n % len(classes):
        raise ValueError(f"size: {n} images do not split evenly over {len(classes)} classes")
    per = n // len(classes)
    order = np.random.default_rng(seed).permutation(len(labels))
    picked = []
    for c in classes:
        members = order[labels[order] == c]
        if len(members) < per:
            raise ValueError(f"size: class {c} has {len(members)} images, fewer than the {per} asked for")
        picked.append(members[:per])
    return np.sort(np.concatenate(picked))


def write_subset(source: Path, out: Path, sizes: dict[str, int], seed: int = 0) -> None:
    """``out/{split}.npz`` for each ``split: size`` of ``sizes``, from ``source/{split}.npz``."""
    out.mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        with np.load(source / f"{split}.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        keep = subset_indices(arrays["labels"], n, seed)
        np.savez(out / f"{split}.npz", **{k: (v[keep] if k in ("images", "labels") else v) for k, v in arrays.items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path, help="folder holding train.npz and test.npz")
    ap.add_argument("out", type=Path)
    ap.add_argument("--train", type=int, default=12000)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    write_subset(args.source, args.out, {"train": args.train, "test": args.test}, args.seed)
    for split in ("train", "test"):
        path = args.out / f"{split}.npz"
        print(f"{path}: {path.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
