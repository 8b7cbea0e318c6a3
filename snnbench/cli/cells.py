"""``snnbench cells``: count, hash and list the cell space."""

from __future__ import annotations

import click

from snnbench.cli.common import echo_json, matrix_argument, parse_matrix
from snnbench.space import KINDS, Kind, enumerate_cells, space

kind_option = click.option("--kind", type=click.Choice(KINDS), default="forward", show_default=True,
                           help="Cell space: forward cells only, or cells with a backward edge too.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group()
def cells() -> None:
    """Enumerate, count and hash cells."""


@cells.command()
@kind_option
@json_option
def count(kind: Kind, as_json: bool) -> None:
    """Raw and unique cell counts of a kind's space."""
    sp = space()
    raw, unique = int(sp.raw_counts[kind].sum()), len(sp.indices(kind))
    if as_json:
        echo_json({"kind": kind, "raw": raw, "unique": unique})
    else:
        click.echo(f"{kind}: {raw:,} raw matrices, {unique:,} unique cells")


@cells.command("hash")
@matrix_argument
@json_option
def hash_(matrix: tuple[str, ...], as_json: bool) -> None:
    """Canonical form, hash and kind of MATRIX ("0302 0030 3003 0000", four rows, or JSON)."""
    cell = parse_matrix(matrix)
    record = {"canonical": cell.canonical.text, "hash": cell.hash, "kind": cell.kind}
    if as_json:
        echo_json(record)
    else:
        click.echo(f"{record['hash']}  {record['canonical']}  {record['kind']}")


@cells.command("list")
@kind_option
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Print at most N cells.")
@json_option
def list_(kind: Kind, limit: int | None, as_json: bool) -> None:
    """Every unique cell of a kind: hash, canonical matrix, kind, raw matrices mapping to it."""
    rows = []
    for i, (cell, raw) in enumerate(enumerate_cells(kind)):
        if limit is not None and i >= limit:
            break
        rows.append({"hash": cell.hash, "canonical": cell.text, "kind": cell.kind, "raw": raw})
    if as_json:
        echo_json(rows)
    else:
        for r in rows:
            click.echo(f"{r['hash']}  {r['canonical']}  {r['kind']:8}  {r['raw']}")
