"""CLI start-up: whole processes of light commands against ``python -c pass`` (and, given, an older checkout).

Run: ``python benchmarks/bench_startup.py [--baseline DIR] [--repeat N]``. DIR is a checkout of an earlier
snnbench (e.g. ``git worktree add /tmp/before c48663e``), run from its source folder as
``PYTHONPATH=DIR python -c "from snnbench.cli import main; main()" ...``; this checkout runs the same way
through its installed ``snnbench`` package. Commands alternate run by run, so a busy machine slows both
alike; the ratios are medians of the per-round ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = [["--help"], ["cells", "count", "--kind", "backward"], ["query", "0303 0033 0003 0000"], ["info"]]
LAUNCH = "from snnbench.cli import main; main(prog_name='snnbench')"


def seconds(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                   cwd=tempfile.gettempdir())  # not a checkout: its snnbench/ would shadow PYTHONPATH's
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", help="an earlier snnbench checkout to compare with")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    env = {**os.environ, "SNNBENCH_TABLE": ""}
    here = {"PYTHONPATH": ""}
    runs: dict[str, dict[str, list[float]]] = {}
    for _ in range(args.repeat):
        runs.setdefault("python -c pass", {}).setdefault("now", []).append(seconds([sys.executable, "-c", "pass"], env))
        for cmd in COMMANDS:
            row = runs.setdefault("snnbench " + " ".join(cmd), {})
            row.setdefault("now", []).append(seconds([sys.executable, "-c", LAUNCH, *cmd], {**env, **here}))
            if args.baseline:
                old = {**env, "PYTHONPATH": os.path.abspath(args.baseline)}
                row.setdefault("before", []).append(seconds([sys.executable, "-c", LAUNCH, *cmd], old))
    bare = statistics.median(runs["python -c pass"]["now"])
    print(f"{'command':42} {'median s':>9} {'/ python -c pass':>17}" + (f" {'before s':>9} {'before / now':>13}" if args.baseline else ""))
    for name, row in runs.items():
        now = statistics.median(row["now"])
        line = f"{name:42} {now:9.3f} {now / bare:17.1f}"
        if "before" in row:
            ratios = [b / n for b, n in zip(row["before"], row["now"])]
            line += f" {statistics.median(row['before']):9.3f} {statistics.median(ratios):13.1f}"
        print(line)


if __name__ == "__main__":
    main()
