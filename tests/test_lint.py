"""Static checks of the whole code base: no unused import or variable, no undefined name (pyflakes); the
type hints of the library, scripts and tests agree with their code (mypy, settings in pyproject.toml)."""

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


def test_mypy_finds_nothing(monkeypatch) -> None:
    from mypy import api

    monkeypatch.chdir(ROOT)  # pyproject's `files` are relative to the working directory
    out, err, status = api.run(["--config-file", str(ROOT / "pyproject.toml")])
    assert status == 0, out + err
