"""The ``snnbench`` command line. One module per command group; bad input exits 2 with one line."""

from __future__ import annotations

import click

from snnbench.cli.common import SnnbenchGroup
from snnbench.cli.cells import cells
from snnbench.cli.model import model
from snnbench.cli.score import score
from snnbench.cli.build import build, info, merge
from snnbench.cli.query import compare, correlate, query, replay, report
from snnbench.cli.train import train


@click.group(cls=SnnbenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="snnbench")
def main() -> None:
    """snnbench: a tabular NAS benchmark for spiking neural networks."""


main.add_command(cells)
main.add_command(model)
main.add_command(score)
main.add_command(train)
for _command in (query, replay, compare, correlate, report):
    main.add_command(_command)
for _command in (build, merge, info):
    main.add_command(_command)
