"""Shared CLI plumbing: matrix arguments, JSON output, and one-line errors with exit code 2."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import sys
from typing import Any, Callable, Iterator, TypeVar

import click

from snnbench.seeds import MAX_SEED
from snnbench.space import Cell


_F = TypeVar("_F", bound=Callable[..., Any])


def threads_option(f: _F) -> _F:
    """``--threads N`` (default 1): torch's CPU threads while a command computes (see :func:`torch_threads`)."""
    return click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
                        help="torch CPU threads. 1, as each build worker uses: the table's arithmetic, and no "
                             "oversubscription of a busy machine; more can be faster on idle cores.")(f)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op CPU thread count is ``n`` while the body runs, and what it was before afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class InputError(click.ClickException):
    """A user-input error: printed as ``Error: <message>`` on stderr, exit code 2."""

    exit_code = 2


# Exceptions that mean "the user's input is wrong" (a library ValueError carries a one-line message; its lookup
# misses, CellNotFound and ProtocolNotFound, are ValueErrors too). A bare KeyError is a bug: it keeps its traceback.
_USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, OSError)


# OS error numbers of a failing disk or file system (not the user's input): one line, exit 1
_IO_ERRNOS = frozenset({errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG, errno.EROFS})


def _io_failure(err: BaseException) -> bool:
    """An I/O failure (disk full, EIO): an exception carrying ``exit_code = 1`` (``snnbench.table.TableIOError``)
    or an ``OSError`` of :data:`_IO_ERRNOS`."""
    return getattr(err, "exit_code", None) == 1 or (isinstance(err, OSError) and err.errno in _IO_ERRNOS)


# click >= 8.2 shows a bare group's help (``snnbench``) by raising this usage error; it stays as it is
_HELP_ERRORS: tuple[type[BaseException], ...] = tuple(
    t for t in (getattr(click.exceptions, "NoArgsIsHelpError", None),) if t is not None)


def _one_line(err: click.UsageError) -> click.ClickException:
    return err if isinstance(err, _HELP_ERRORS) else InputError(" ".join(err.format_message().split()))


class SnnbenchGroup(click.Group):
    """A click group whose commands turn user-input exceptions, and click's usage errors, into one-line errors
    (exit 2), and I/O failures (disk full, EIO: :func:`_io_failure`) into one-line errors with exit 1."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as err:  # the group's own options (``snnbench --bogus``)
            raise _one_line(err) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, BrokenPipeError):
            raise  # a closed pipe (``snnbench info | head``) is not the user's input error
        except click.UsageError as err:  # click's own (bad option value, unknown option): one line too
            raise _one_line(err) from None
        except _USER_ERRORS as err:
            if _io_failure(err):
                raise click.ClickException(" ".join(str(err).split())) from None
            raise InputError(" ".join(str(err).split())) from None


class Aliased(click.Option):
    """An option whose first long name is the one of ``docs/cli.md``'s vocabulary; the other names are former
    spellings, still accepted (recorded commands and scripts keep working) but left out of ``--help``."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        names, self.opts = self.opts, self.opts[:1]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = names


SEED = click.IntRange(0, MAX_SEED)  # a --seed: numpy and torch take any of these (a table stores seeds as int64)


class NonEmptyPath(click.Path):
    """``click.Path`` that refuses an empty path (which would mean the current folder or, for a table, the default)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value == "":
            self.fail("the path is empty.", param, ctx)
        return super().convert(value, param, ctx)


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses nan and infinities."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{rv} is not a finite number.", param, ctx)
        return rv


def matrix_argument(func: Any) -> Any:
    """Add a ``MATRIX...`` argument: one text/JSON word or N row words."""
    return click.argument("matrix", nargs=-1, required=True)(func)


def parse_matrix(words: tuple[str, ...]) -> Cell:
    """The cell named by ``MATRIX...`` words; ``ValueError`` (-> exit 2) when malformed."""
    return Cell.from_text(" ".join(words))


def echo_json(obj: Any) -> None:
    """Print ``obj`` as indented JSON on stdout."""
    json.dump(obj, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
