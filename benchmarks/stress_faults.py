"""Fault stress: kill writers and merges at random points, race merges, fill the disk, corrupt tables; count losses.

Bounded in time (``--seconds``: no fault starts later). Rounds cycle through the kinds (each once per cycle, in a
random order); each injects one fault (``corrupt``: a batch of 12):

* ``kill-writer``: a writer process (``TableWriter``, the build's only durable part) journals rows one by one,
  printing each row's number once ``add`` returned (the row is acknowledged), folding every few rows; it is killed
  with SIGKILL at a random moment. The next writer resumes the table; every acknowledged row must be there with
  its values (else it counts as lost), and no temporary file of the dead process may stay.
* ``kill-build``: a real (tiny) ``snnbench build`` killed with SIGKILL at a random moment, then rerun to the end:
  the table must equal an uninterrupted build's (all but wall-clock columns), else its rows count as lost.
* ``kill-merge``: ``snnbench merge OUT A B`` killed at a random moment: OUT is absent or the complete merge; the
  merge rerun must then succeed and leave no temporary file.
* ``race-merge``: two ``snnbench merge`` into one new OUT started together: exactly one may exit 0 (both exiting 0
  means one result was lost silently), the other exits 2 with one line.
* ``disk-full``: a merge or a writer run under a random file-size limit (``RLIMIT_FSIZE``, so writes fail with
  EFBIG like a full disk): exit 1 with one line, no temporary file; a writer's acknowledged rows survive the resume.
* ``corrupt``: a copy of a table damaged at random (bytes flipped, truncated, a dataset deleted or retyped, hashes
  permuted, kinds or codes made invalid, values swapped), then opened with ``open_table(..., verify=True)`` in a
  child process: it must refuse the file with a ``TableError`` or read exactly the original (else a wrong answer).

A traceback is any child's stderr holding "Traceback" or a child killed by a signal we did not send.

    python benchmarks/stress_faults.py [--seconds 120] [--seed 0] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"dataset": {"name": "stress"}, "network": {"preset": "bench"}, "device": "cpu",
            "score": {"metrics": ["sahd"], "batch_size": 8, "repeats": 2}}
POOL = 600  # cells rows are drawn from; row k is cell k % POOL, seed k // POOL
CLI = "import sys; from snnbench.cli import main; sys.argv[0] = 'snnbench'; main()"
#: A real build small enough to finish in seconds: 24 cells of a narrowed skeleton scored with SAHD, one worker.
TINY_BUILD = ["--net", "c1=2", "--net", "c2=4", "--net", "hidden=8", "--net", "timesteps=2", "--scores", "sahd",
              "--score-batch", "8", "--cells", "sample:24", "--train-epochs", "0", "--workers", "1", "--quiet",
              "--fold-seconds", "0.5"]


def _pool() -> list[str]:
    from snnbench.space import space

    return space().hashes[:POOL]


def row(k: int, pool: list[str]) -> dict[str, Any]:
    """Row number ``k``: its key and values follow from ``k`` alone, so a reader can check them."""
    h, seed = pool[k % POOL], k // POOL
    x = int(h[:8], 16) / 2**32 + seed
    return {"hash": h, "seed": seed, "values": {"scores/sahd": x, "batch_scores/sahd": [x, -x], "singular/sahd": k % 7 == 0,
                                                 "params": k, "seconds": 0.001 * k}}


def child_writer(path: str, start: int, count: int, fold_every: int) -> None:
    """Journal rows ``start .. start + count - 1`` one by one, acknowledging each on stdout; fold every few rows."""
    from snnbench.table import TableIOError, TableWriter

    pool = _pool()
    try:
        with TableWriter(path) as w:
            p = w.ensure_protocol("score", SETTINGS, command="stress", environment={}, shard=None)
            for k in range(start, start + count):
                w.add(p.id, [row(k, pool)])
                print(k, flush=True)
                if (k + 1) % fold_every == 0:
                    w.fold()
    except TableIOError as err:  # as the CLI reports it: one line, exit 1
        print(f"Error: {err}", file=sys.stderr)
        sys.exit(1)


def child_open(paths: list[str]) -> None:
    """Open each table (verify) and print one JSON line: refused (its message), or its content summary."""
    from snnbench.table import TableError, open_table, rows_digest

    for p in paths:
        try:
            t = open_table(p, verify=True)
        except TableError as err:
            print(json.dumps({"path": p, "refused": str(err)}), flush=True)
            continue
        content = {pid: rows_digest(q.hash, q.seed, q.columns) for pid, q in t.protocols.items()}
        cells = [t.cells[k].tobytes().hex() for k in sorted(t.cells)]
        print(json.dumps({"path": p, "content": content, "cells": cells}), flush=True)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _limit(fsize: int | None) -> Callable[[], None] | None:
    if fsize is None:
        return None

    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return preexec


class Stress:
    def __init__(self, folder: Path, rng: random.Random) -> None:
        self.dir, self.rng = folder, rng
        self.counts: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.notes: list[str] = []
        self.pool = _pool()
        self.writer_table, self.next_row = folder / "w.h5", 0
        self.acked: set[int] = set()
        self.a, self.b, self.merged = folder / "a.h5", folder / "b.h5", folder / "ref.h5"
        self.reference: dict[str, Any] | None = None
        self.build_reference = folder / "b-ref.h5"
        self._inputs()

    # ---------------------------------------------------------------- helpers
    def _inputs(self) -> None:
        from snnbench.table import TableWriter, merge_tables

        for path, rows in ((self.a, range(0, 3000)), (self.b, range(3000, 6000))):
            with TableWriter(path) as w:
                p = w.ensure_protocol("score", SETTINGS, command="stress", environment={}, shard=None)
                w.add(p.id, [row(k, self.pool) for k in rows])
        merge_tables(self.merged, [self.a, self.b])

    def _child(self, args: list[str], fsize: int | None = None) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, *args], cwd=self.dir, env=_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, preexec_fn=_limit(fsize))

    def _finish(self, proc: subprocess.Popen, killed: bool = False, timeout: float = 120) -> tuple[int, str, str]:
        out, err = proc.communicate(timeout=timeout)
        if "Traceback" in err or (proc.returncode < 0 and not killed):
            self.counts["tracebacks"] += 1
            self.notes.append(f"traceback or crash (exit {proc.returncode}): {err.strip()[-300:]}")
        return proc.returncode, out, err

    def _tmp_left(self, name: str) -> None:
        left = list(self.dir.glob(f"{name}.tmp-*"))
        self.counts["temporary files left"] += len(left)
        for p in left:
            p.unlink()

    def _writer(self, count: int, fsize: int | None = None, kill_after: float | None = None) -> set[int]:
        """Run a writer child; returns the rows it acknowledged."""
        start = self.next_row
        self.next_row += count
        proc = self._child([__file__, "--child-writer", str(self.writer_table), str(start), str(count),
                            str(self.rng.choice([1, 5, 40]))], fsize)
        if kill_after is not None:
            time.sleep(kill_after)
            proc.kill()
        code, out, err = self._finish(proc, killed=kill_after is not None)
        if fsize is not None and code != 0:
            self._one_line_exit_1(code, err, "disk-full writer")
        return {int(line) for line in out.split()}

    def _one_line_exit_1(self, code: int, err: str, what: str) -> None:
        if code != 1 or err.count("\n") != 1:
            self.counts["wrong exits"] += 1
            self.notes.append(f"{what}: exit {code}, stderr {err.strip()[-300:]!r}")

    def _resume_and_count(self) -> None:
        """Resume the writer's table (no rows) and count acknowledged rows missing or changed."""
        from snnbench.table import TableWriter, open_table

        with TableWriter(self.writer_table):
            pass
        self._tmp_left(self.writer_table.name)
        p = next(iter(open_table(self.writer_table).protocols.values()), None)
        stored = {} if p is None else {(h.decode(), int(s)): i for i, (h, s) in enumerate(zip(p.hash, p.seed))}
        for k in self.acked:
            r = row(k, self.pool)
            i = stored.get((r["hash"], r["seed"]))
            if i is None or p is None or p.columns["scores/sahd"][i] != r["values"]["scores/sahd"] or p.columns["params"][i] != k:
                self.counts["rows lost"] += 1

    # ---------------------------------------------------------------- faults
    def kill_writer(self) -> None:
        self.acked |= self._writer(4000, kill_after=self.rng.uniform(0.5, 4.0))
        self._resume_and_count()

    def kill_build(self) -> None:
        from snnbench.table import open_table, records_equal, is_wall_clock

        if not self.build_reference.exists():
            code, _, err = self._finish(self._child(["-c", CLI, "build", str(self.build_reference), *TINY_BUILD]))
            assert code == 0, err
        path = self.dir / "b-killed.h5"
        proc = self._child(["-c", CLI, "build", str(path), *TINY_BUILD])
        time.sleep(self.rng.uniform(2.0, 10.0))
        proc.kill()
        self._finish(proc, killed=True)
        code, _, err = self._finish(self._child(["-c", CLI, "build", str(path), *TINY_BUILD]))
        if code != 0:
            self.counts["wrong exits"] += 1
            self.notes.append(f"resumed build: exit {code}: {err.strip()[-300:]}")
        else:
            ref, got = open_table(self.build_reference), open_table(path)
            for pid, p in ref.protocols.items():
                q = got.protocols.get(pid)
                if q is None or not records_equal(p, q, ignore=[n for n in p.columns if is_wall_clock(n)]):
                    self.counts["rows lost"] += len(p) - (0 if q is None else min(len(q), len(p)))
                    self.counts["builds differing"] += 1
        self._tmp_left(path.name)
        for leftover in self.dir.glob("b-killed.h5*"):
            leftover.unlink()

    def kill_merge(self) -> None:
        from snnbench.table import merge_tables, open_table, records_equal

        out = self.dir / "m.h5"
        proc = self._child(["-c", CLI, "merge", str(out), str(self.a), str(self.b)])
        time.sleep(self.rng.uniform(0.3, 3.0))
        proc.kill()
        self._finish(proc, killed=True)
        if out.exists():  # finished before the kill: it must be the whole merge
            ref, got = open_table(self.merged), open_table(out)
            if not all(records_equal(p, got.protocols[pid]) for pid, p in ref.protocols.items()):
                self.counts["rows lost"] += 1
        else:
            merge_tables(out, [self.a, self.b])
        self._tmp_left(out.name)
        out.unlink()

    def race_merge(self) -> None:
        out = self.dir / "r.h5"
        start = time.time() + 3.0
        wait = f"import time; time.sleep(max(0.0, {start} - time.time())); " + CLI
        procs = [self._child(["-c", wait, "merge", str(out), *ins]) for ins in ([str(self.a)], [str(self.a), str(self.b)])]
        results = [self._finish(p) for p in procs]
        codes = sorted(r[0] for r in results)
        if codes == [0, 0]:
            self.counts["merges lost"] += 1
        elif codes != [0, 2] or next(r for r in results if r[0] == 2)[2].count("\n") != 1:
            self.counts["wrong exits"] += 1
            self.notes.append(f"race: exits {codes}")
        self._tmp_left(out.name)
        out.unlink(missing_ok=True)

    def disk_full(self) -> None:
        if self.rng.random() < 0.5:
            out = self.dir / "f.h5"
            size = self.merged.stat().st_size
            proc = self._child(["-c", CLI, "merge", str(out), str(self.a), str(self.b)], self.rng.randint(1, size - 1))
            code, _, err = self._finish(proc)
            self._one_line_exit_1(code, err, "disk-full merge")
            if out.exists():
                self.counts["partial outputs"] += 1
                out.unlink()
            self._tmp_left(out.name)
        else:
            size = max(self.writer_table.stat().st_size if self.writer_table.exists() else 0, 50_000)
            self.acked |= self._writer(300, fsize=self.rng.randint(size // 2, 2 * size))
            self._resume_and_count()

    CORRUPTIONS = ("flip", "truncate", "delete", "retype", "permute-hash", "kind", "code", "swap-values", "negative-seed")

    def corrupt(self, batch: int = 12) -> None:
        paths, kinds = [], []
        for n in range(batch):
            kind = self.rng.choice(self.CORRUPTIONS)
            copy = self.dir / f"c{n}.h5"
            shutil.copyfile(self.merged, copy)
            self._damage(copy, kind)
            paths.append(str(copy))
            kinds.append(kind)
        proc = self._child([__file__, "--child-open", *paths])
        code, out, err = self._finish(proc)
        lines = [json.loads(line) for line in out.splitlines()]
        if self.reference is None:
            self.reference = json.loads(self._summary(self.merged))
        reference = self.reference
        for kind, line in zip(kinds, lines):
            self.faults[f"corrupt:{kind}"] += 1
            if "refused" in line:
                self.counts["corruptions refused"] += 1
            elif line["content"] != reference["content"] or line["cells"] != reference["cells"]:
                self.counts["wrong answers"] += 1
                self.notes.append(f"corruption {kind} read as other content")
            else:
                self.counts["corruptions harmless"] += 1  # e.g. a flip in unused space
        if len(lines) < len(paths):
            self.counts["tracebacks"] += 1
            self.notes.append(f"open child died at {kinds[len(lines)]} (exit {code})")
        for name in paths:
            os.unlink(name)

    def _summary(self, path: Path) -> str:
        return subprocess.run([sys.executable, __file__, "--child-open", str(path)], env=_env(), capture_output=True,
                              text=True, check=True).stdout

    def _damage(self, path: Path, kind: str) -> None:
        rng = self.rng
        if kind in ("flip", "truncate"):
            data = bytearray(path.read_bytes())
            if kind == "truncate":
                data = data[:rng.randint(0, len(data) - 1)]
            else:
                for _ in range(rng.randint(1, 8)):
                    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            path.write_bytes(bytes(data))
            return
        with h5py.File(path, "r+") as f:
            g = f["protocols"][next(iter(f["protocols"]))]
            names: list[str] = []
            g.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)

            def put(where: h5py.Group, name: str, data: np.ndarray) -> None:
                del where[name]
                where.create_dataset(name, data=data)
            if kind == "delete":
                del g[rng.choice(names)]
            elif kind == "retype":
                name = rng.choice([n for n in names if n != "cell"])
                put(g, name, g[name][()].astype(rng.choice([bool, np.float32, "S8"])))
            elif kind == "permute-hash":
                h = f["cells/hash"][()]
                i, j = rng.sample(range(len(h)), 2)
                h[[i, j]] = h[[j, i]]
                put(f["cells"], "hash", h)
            elif kind == "kind":
                k = f["cells/kind"][()]
                k[rng.randrange(len(k))] = rng.choice([1 - k[0], 7])
                put(f["cells"], "kind", k)
            elif kind == "code":
                m = f["cells/matrix"][()]
                m[rng.randrange(len(m)), rng.randrange(4), rng.randrange(4)] = rng.choice([5, 9, -1])
                put(f["cells"], "matrix", m)
            elif kind == "swap-values":
                name = rng.choice([n for n in names if n not in ("cell", "seed")])
                v = g[name][()]
                i, j = rng.sample(range(len(v)), 2)
                if np.array_equal(v[i], v[j]):
                    v[i] = v[i] + 1 if v.dtype.kind != "b" else ~v[i]
                else:
                    v[[i, j]] = v[[j, i]]
                put(g, name, v)
            else:
                s = g["seed"][()]
                s[rng.randrange(len(s))] = -5
                put(g, "seed", s)

    def run(self, seconds: float) -> None:
        kinds = {"kill-writer": self.kill_writer, "kill-build": self.kill_build, "kill-merge": self.kill_merge, "race-merge": self.race_merge,
                 "disk-full": self.disk_full, "corrupt": self.corrupt}
        end = time.monotonic() + seconds
        while time.monotonic() < end:  # every kind once per cycle, in a random order
            for name in self.rng.sample(sorted(kinds), len(kinds)):
                if time.monotonic() > end:
                    break
                if name != "corrupt":
                    self.faults[name] += 1
                kinds[name]()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0, help="stop starting faults after this long")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, help="work in this folder (kept) instead of a temporary one")
    ap.add_argument("--child-writer", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--child-open", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_writer:
        path, start, count, every = args.child_writer
        child_writer(path, int(start), int(count), int(every))
        return
    if args.child_open:
        child_open(args.child_open)
        return
    folder = args.keep or Path(tempfile.mkdtemp(prefix="snnbench-stress-"))
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    stress = Stress(folder, random.Random(args.seed))
    stress.run(args.seconds)
    total = sum(stress.faults.values())
    print(f"stress_faults: {total} faults injected in {time.monotonic() - t0:.0f} s (seed {args.seed})")
    for name, n in sorted(stress.faults.items()):
        print(f"  {name:24} {n}")
    print(f"  rows acknowledged        {len(stress.acked)}")
    for name in ("rows lost", "builds differing", "merges lost", "wrong answers", "tracebacks", "wrong exits", "partial outputs",
                 "temporary files left", "corruptions refused", "corruptions harmless"):
        print(f"  {name:24} {stress.counts[name]}")
    for note in stress.notes[:10]:
        print(f"  note: {note}")
    if args.keep is None:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
