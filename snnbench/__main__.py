"""``python -m snnbench``: the same as the ``snnbench`` command."""

from snnbench.cli import main

main(prog_name="snnbench")
