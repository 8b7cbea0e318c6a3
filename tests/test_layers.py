"""The package's layers: imports run one way, light commands start without torch, and it installs as one package.

The core package (``snnbench/``) imports neither layer above it (``snnbench.api``, ``snnbench.builders``) by any
name; the two layers do not import each other; the CLI finds their commands through entry points.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import snnbench
from snnbench.cli import CORE_COMMANDS, ENTRY_POINT_GROUP, main

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"snnbench": ("snnbench.api", "snnbench.builders", "api", "builders"),  # folder -> modules it must not import
          "api": ("snnbench.builders", "builders"),
          "builders": ("snnbench.api", "api")}


def imported_names(source: str, package: str) -> set[str]:
    """Every module ``source`` imports: import statements (relative ones resolved against ``package``), and the
    string given to ``importlib.import_module`` / ``__import__`` calls."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            f = node.func
            called = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return names


def forbidden(names: set[str], banned: tuple[str, ...]) -> set[str]:
    return {n for n in names if any(n == b or n.startswith(b + ".") for b in banned)}


def test_the_import_checker_sees_every_spelling() -> None:
    source = ("import snnbench.api\nfrom snnbench import builders\nfrom snnbench.api.benchmark import load\n"
              "import api\nfrom builders.plan import x\nimport importlib\nm = importlib.import_module('snnbench.api.cli')\n"
              "def f():\n    from .. import api\n    __import__('builders')\n")
    found = forbidden(imported_names(source, "snnbench.cli"), LAYERS["snnbench"])
    assert found >= {"snnbench.api", "snnbench.builders", "snnbench.api.benchmark", "api", "builders.plan",
                     "snnbench.api.cli", "builders"}
    assert not forbidden(imported_names("from snnbench.space import Cell\nimport numpy\n", "snnbench"), LAYERS["snnbench"])


@pytest.mark.parametrize("folder", sorted(LAYERS))
def test_imports_run_one_way(folder: str) -> None:
    package = {"snnbench": "snnbench", "api": "snnbench.api", "builders": "snnbench.builders"}[folder]
    bad = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        rel = path.relative_to(ROOT / folder).with_suffix("")
        module = ".".join([package, *rel.parts]).removesuffix(".__init__")
        found = forbidden(imported_names(path.read_text(), module if path.name != "__init__.py" else module + ".x"),
                          LAYERS[folder])
        if found:
            bad[str(path.relative_to(ROOT))] = sorted(found)
    assert not bad, f"imports against the layering: {bad}"


def test_every_command_is_found_and_entry_points_name_the_layers_commands() -> None:
    from importlib.metadata import entry_points

    import click

    eps = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert {v.split(":")[0] for v in eps.values()} == {"snnbench.api.cli", "snnbench.builders.cli"}
    ctx = click.Context(main)
    names = main.list_commands(ctx)
    assert names == sorted({*CORE_COMMANDS, *eps})
    for name in names:
        command = main.get_command(ctx, name)
        assert isinstance(command, click.Command) and command.name == name


def _modules_after(args: list[str], env: dict[str, str] | None = None) -> tuple[set[str], str]:
    """The modules a whole ``snnbench ARGS`` process imported, and what it printed."""
    code = ("import sys, json\nfrom snnbench.cli import main\ntry:\n    main(sys.argv[1:], prog_name='snnbench')\n"
            "except SystemExit as e:\n    assert not e.code, e.code\nsys.stderr.write('\\nMODULES ' + json.dumps(sorted(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **(env or {})})
    assert out.returncode == 0, out.stderr[-2000:]
    return set(json.loads(out.stderr.rsplit("MODULES ", 1)[1])), out.stdout


@pytest.mark.parametrize("args", [["--help"], ["cells", "count", "--kind", "backward"], ["query", "0303 0033 0003 0000"],
                                  ["info"], ["correlate", "--help"], ["build", "--help"], ["train", "--help"],
                                  ["score", "--help"]])
def test_commands_that_need_no_network_do_not_import_torch(args: list[str]) -> None:
    modules, printed = _modules_after(args, {"SNNBENCH_TABLE": ""})
    heavy = sorted(m for m in modules if m.split(".")[0] in ("torch", "torchvision", "scipy", "sklearn", "matplotlib"))
    assert not heavy, heavy[:5]
    assert printed  # it did its work


def test_a_network_command_does_import_torch() -> None:
    """The check above can see torch: ``model summary`` builds a network."""
    modules, printed = _modules_after(["model", "summary", "0303 0033 0003 0000", "--dataset", "digits", "--preset", "bench"])
    assert "torch" in modules and "params" in printed


def test_the_wheel_installs_one_top_level_package(tmp_path: Path) -> None:
    """``pip wheel`` of the repository holds ``snnbench`` (with ``snnbench.api`` and ``snnbench.builders``) and its
    metadata, nothing else top-level; installed, a user's own ``api.py`` in the working folder shadows nothing."""
    source = tmp_path / "source"  # a copy: setuptools writes build/ into the folder it builds
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("snnbench", "api", "builders"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(source),
                            "-w", str(tmp_path / "wheel")], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "wheel").glob("snnbench-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        z.extractall(tmp_path / "site")
    assert {n.split("/")[0] for n in names} == {"snnbench", wheel.name.split("-py")[0] + ".dist-info"}
    assert {"snnbench/api/__init__.py", "snnbench/api/cli.py", "snnbench/builders/cli.py",
            "snnbench/tables/digits.h5"} <= set(names)
    work = tmp_path / "work"
    work.mkdir()
    (work / "api.py").write_text("raise RuntimeError('the user file was imported')\n")
    (work / "builders.py").write_text("raise RuntimeError('the user file was imported')\n")
    code = ("import sys; sys.path.insert(1, sys.argv[1])\nfrom snnbench import api, builders\nimport snnbench\n"
            "assert snnbench.__file__.startswith(sys.argv[1]), snnbench.__file__\n"
            "print(api.query('0303 0033 0003 0000')['hash'])")
    ran = subprocess.run([sys.executable, "-c", code, str(tmp_path / "site")], cwd=work, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "SNNBENCH_TABLE": ""})
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.strip() == snnbench.cell_hash("0303 0033 0003 0000")


def test_names_agree_with_the_modules_that_compute() -> None:
    """``snnbench.names`` holds the valid values; the torch modules accept exactly those."""
    from snnbench import names, network, scores, training

    assert tuple(training._TRAIN_PRESETS) == names.TRAIN_PRESETS and set(names.TRAIN_NETWORK) == set(names.TRAIN_PRESETS)
    for dataset in names.DATASETS:
        for preset in names.NETWORK_PRESETS:
            network.network_config(dataset, preset)
    with pytest.raises(ValueError, match="preset"):
        network.network_config("digits", "release")
    assert set(scores._SAHD_FAMILY) <= set(names.SPIKE_METRICS) <= set(names.METRICS)
