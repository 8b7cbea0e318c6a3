"""Cost of the table's integrity checks: open, open with digest verification, and write, side by side with a
previous revision's ``snnbench/table.py`` (the baseline, loaded from git) on the shipped tables.

    python benchmarks/bench_table_io.py [--baseline REV] [--repeats 7]

Each figure is the minimum over ``--repeats`` runs, the two versions timed in alternation in one process on the same
files.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]


def baseline_module(rev: str) -> ModuleType:
    """``snnbench/table.py`` as of git revision ``rev``, importable beside the current one."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:snnbench/table.py"], capture_output=True, text=True,
                            check=True).stdout
    path = Path(tempfile.mkdtemp()) / "table_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("table_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["table_baseline"] = module
    spec.loader.exec_module(module)
    return module


def best_pair(before: Callable[[], object], now: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Minimum seconds of each, the two timed in alternation (a load change on a shared machine hits both)."""
    before(), now()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((before, times[0]), (now, times[1])):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return min(times[0]), min(times[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="2f78f22", help="git revision whose table.py is the baseline")
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    from snnbench import table as current

    old = baseline_module(args.baseline)
    out = Path(tempfile.mkdtemp())
    print(f"{'table':8} {'what':28} {'baseline ms':>12} {'now ms':>9} {'ratio':>6}")
    for name, path in current.SHIPPED.items():
        protos = list(current.open_table(path).protocols.values())
        old_protos = list(old.open_table(path).protocols.values())
        rows = [
            ("open", lambda: old.open_table(path), lambda: current.open_table(path)),
            ("open + verify digests", lambda: old.open_table(path), lambda: current.open_table(path, verify=True)),
            ("write (fold)", lambda: old.write_table(out / "old.h5", old_protos),
             lambda: current.write_table(out / "new.h5", protos)),
        ]
        for what, before, now in rows:
            a, b = best_pair(before, now, args.repeats)
            print(f"{name:8} {what:28} {a * 1e3:12.1f} {b * 1e3:9.1f} {b / a:6.2f}")
        written = current.open_table(out / "new.h5")
        a, b = best_pair(lambda: current.open_table(out / "new.h5"), lambda: current.open_table(out / "new.h5", verify=True),
                         args.repeats)
        print(f"{name:8} {'rewritten: verify / open':28} {a * 1e3:12.1f} {b * 1e3:9.1f} {b / a:6.2f}"
              f"  ({len(written.protocols)} digests)")


if __name__ == "__main__":
    main()
