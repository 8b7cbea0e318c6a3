"""The ``snnbench`` command line: the top floor, found lazily.

The core commands (``cells``, ``model``, ``score``, ``train``) live here; each layer above the core keeps its own
commands beside its code (``snnbench.api.cli``: query, replay, compare, correlate, report; ``snnbench.builders.cli``:
build, merge, info) and registers them as ``snnbench.commands`` entry points in ``pyproject.toml``. A command's
module is imported only when that command runs or help lists it, and no command module imports torch at import
time, so ``snnbench --help``, ``cells``, ``query`` and ``info`` start without it. Bad input exits 2 with one line.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points

import click

from snnbench.cli.common import SnnbenchGroup

#: command name -> "module:attribute" of the core commands; the layers' own come from entry points
CORE_COMMANDS: dict[str, str] = {
    "cells": "snnbench.cli.cells:cells",
    "model": "snnbench.cli.model:model",
    "score": "snnbench.cli.score:score",
    "train": "snnbench.cli.train:train",
}
ENTRY_POINT_GROUP = "snnbench.commands"


@cache
def command_targets() -> dict[str, str]:
    """command name -> "module:attribute": the installed ``snnbench.commands`` entry points, then
    :data:`CORE_COMMANDS` (a core name wins); read once per process (each read scans the installed packages)."""
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return {**found, **CORE_COMMANDS}


class LazyGroup(SnnbenchGroup):
    """A group whose commands are imported on first use: :data:`CORE_COMMANDS`, then the installed
    ``snnbench.commands`` entry points (:func:`command_targets`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *command_targets()})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands:
            return self.commands[name]
        target = command_targets().get(name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} (command {name!r}) is not a click command")
        self.commands[name] = command
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="snnbench")
def main() -> None:
    """snnbench: a tabular NAS benchmark for spiking neural networks."""
