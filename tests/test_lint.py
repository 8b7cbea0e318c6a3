"""Static check of the whole code base: no unused import or variable, no undefined name (pyflakes)."""

from __future__ import annotations

import io
from pathlib import Path

from pyflakes.api import checkRecursive
from pyflakes.reporter import Reporter

ROOT = Path(__file__).resolve().parents[1]


def test_pyflakes_finds_nothing() -> None:
    out = io.StringIO()
    found = checkRecursive([str(ROOT / d) for d in ("snnbench", "builders", "api", "benchmarks", "tests", "docs")], Reporter(out, out))
    assert found == 0, out.getvalue()
