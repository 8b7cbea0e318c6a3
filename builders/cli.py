"""``snnbench build``, ``snnbench merge`` and ``snnbench info``: fill, join and describe benchmark tables."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from snnbench.builders.request import OPTIONS, BuildRequest, flag
from snnbench.cli.common import FiniteFloatRange, NonEmptyPath, InputError, echo_json
from snnbench.table import default_table_path

_KIND_CELLS = {"forward": "forward cells", "backward": "cells with a backward edge"}


@contextlib.contextmanager
def _data_dir_env(data_dir: str | None) -> Iterator[None]:
    """While the body runs, ``$SNNBENCH_DATA_DIR`` is ``data_dir`` (when given): the workers a build starts (pool
    processes, Ray tasks) load a named dataset from there; the settings hold no folder. Restored on exit."""
    from snnbench.data import DATA_DIR_ENV

    before = os.environ.get(DATA_DIR_ENV)
    if data_dir is not None:
        os.environ[DATA_DIR_ENV] = data_dir
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(DATA_DIR_ENV, None)
        else:
            os.environ[DATA_DIR_ENV] = before


def _table_arg(table: str | None) -> Path:
    return Path(table).expanduser() if table else default_table_path()


def _is_shipped(path: Path) -> bool:
    """Whether ``path`` (followed through links) lies in the package's folder of shipped tables."""
    from snnbench import table as table_module

    return Path(os.path.realpath(path)).parent == Path(os.path.realpath(table_module.SHIPPED_DIR))


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _duration(s: float) -> str:
    return f"{int(s // 60)}m{s % 60:04.1f}s" if s >= 60 else f"{s:.1f}s"


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """While the body runs, stdout (``sys.stdout`` and file descriptor 1, which child processes inherit) goes to
    stderr: what libraries print (Ray's "(raylet) ..." lines) stays out of ``--json`` output. Restored on exit."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """While the body runs, `kill PID` acts as Ctrl-C (KeyboardInterrupt); handler and hook restored on exit.

    Python swallows a KeyboardInterrupt raised inside a finalizer (a weakref callback, ``__del__``), which would
    let a build run on to the end: a ``sys.unraisablehook`` sends SIGTERM again 50 ms later, until one lands in
    the body (other unraisable exceptions go to the previous hook). No resend is sent once the exit has begun; one
    sent just before lands during the exit, which then restores both and raises it. Signals reach the main
    thread only: elsewhere this changes nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous_hook, done, lock = sys.unraisablehook, threading.Event(), threading.Lock()

    def resend() -> None:  # under the lock: no signal lands once the handler is being restored
        with lock:
            if not done.is_set():
                os.kill(os.getpid(), signal.SIGTERM)

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            threading.Timer(0.05, resend).start()
        else:
            previous_hook(unraisable)

    previous = signal.signal(signal.SIGTERM, _interrupt)
    sys.unraisablehook = hook
    try:
        yield
    finally:
        late: KeyboardInterrupt | None = None
        while True:  # an interrupt landing here must not skip the restores
            try:
                with lock:
                    done.set()
                sys.unraisablehook = previous_hook
                signal.signal(signal.SIGTERM, previous)
                break
            except KeyboardInterrupt as err:
                late = err
        if late is not None:
            raise late


def _request_options(f: Any) -> Any:
    """``snnbench build``'s options for the fields of :class:`BuildRequest` (``--NAME``, its help and type)."""
    for fld in reversed(OPTIONS):
        spec = dict(fld.metadata["click"])
        kind = spec.pop("type", None)
        default = fld.default
        if isinstance(default, tuple) and not spec.get("multiple"):
            default = ",".join(map(str, default))  # a list option's default, as typed
        f = click.option(flag(fld.name), fld.name, type=click.Choice(kind) if isinstance(kind, tuple) else kind,
                         default=default, show_default=default is not None and not spec.get("multiple"),
                         help=fld.metadata["help"], **spec)(f)
    return f


@click.command()
@click.argument("table", type=NonEmptyPath(dir_okay=False), required=False)
@_request_options
@click.option("--data-dir", type=NonEmptyPath(file_okay=False), default=None, help="Folder holding the dataset files (default: $SNNBENCH_DATA_DIR or ~/.cache/snnbench/data).")
@click.option("--pack", type=click.IntRange(min=1), default=None, help="Trainings run as one pack (default: by device, "
              "see docs/table.md); changes no number of the table.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where work items run: a pool of local processes, or a Ray cluster.")
@click.option("--workers", type=click.IntRange(min=0), default=None, help="Worker processes (default: CPU cores; 0: run in this process, --executor local only).")
@click.option("--ray-address", default=None, help="Ray cluster address (default: start a local Ray instance).")
@click.option("--gpus-per-task", type=FiniteFloatRange(min=0), default=None, help="GPUs each Ray task requests (default: 1 with --device cuda, else 0).")
@click.option("--fold-seconds", type=FiniteFloatRange(min=0, min_open=True), default=20.0, show_default=True, help="How often results are folded into the HDF5 file (a table slow to write folds less often, see docs/table.md; the journal keeps the rows in between).")
@click.option("--into-shipped", is_flag=True, help="Allow TABLE to be a table shipped inside the package (what every "
              "unnamed query of this install reads); refused without it.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def build(ctx: click.Context, table: str | None, **opts: Any) -> None:
    """Build or resume TABLE (default: $SNNBENCH_TABLE or ~/.cache/snnbench/snnbench.h5).

    Rerunning the same command skips every stored row; an interrupted build (even kill -9) loses at
    most the rows in flight. With no options: the embedded default (whole forward space scored with
    SAHD and Hamming on digits, bench skeleton, plus 16 cells trained 3 epochs with 2 seeds).
    """
    from snnbench.builders.build import build as run_build
    from snnbench.builders.build import environment
    from snnbench.builders.executors import WorkerDied, make_executor
    from snnbench.builders.stages import run_item
    from snnbench.scores import resolve_device
    from snnbench.training import default_pack

    path = _table_arg(table)
    quiet, as_json = opts.pop("quiet"), opts.pop("as_json")
    if _is_shipped(path) and not opts["into_shipped"]:
        raise InputError(f"{path} is a table shipped with snnbench (unnamed queries read it): build into another file, "
                         "or pass --into-shipped to change it")
    given = {n for n in ctx.params if ctx.get_parameter_source(n) != click.core.ParameterSource.DEFAULT}
    default = not given - {"table", "quiet", "as_json", "into_shipped"}
    request = BuildRequest.from_options(str(path), **opts)
    if opts["executor"] != "ray" and (opts["ray_address"] is not None or opts["gpus_per_task"] is not None):
        raise InputError("--ray-address and --gpus-per-task: only with --executor ray")
    if opts["executor"] == "local":  # a Ray cluster's workers may have GPUs this driver lacks
        resolve_device(request.device)
    if not request.scores and not request.train_epochs:
        raise InputError("nothing to build: --scores none and --train-epochs 0")
    unused = []  # told after the build, so that a refused build's error stays its one line
    for stage, names, why in (("train", ("train", "seeds", "train_cells", "pack"), "--train-epochs 0 (nothing is trained)"),
                              ("score", ("score_batch", "score_repeats", "score_mode", "score_seeds", "cells"), "--scores none (nothing is scored)")):
        flags = [flag(n) for n in names if n in given]
        if flags and not (request.train_epochs if stage == "train" else request.scores):
            unused.append(f"note: {', '.join(flags)} unused with {why}")
    data_dir = str(Path(opts["data_dir"]).expanduser().resolve()) if opts["data_dir"] else None
    gpus = opts["gpus_per_task"] if opts["gpus_per_task"] is not None else (1.0 if request.device == "cuda" else 0.0)
    try:
        with _data_dir_env(data_dir):  # pool workers and Ray tasks find a named dataset through the environment
            stages = request.stages(pack=opts["pack"] if opts["pack"] is not None else default_pack(request.device),
                                    data_dir=data_dir)
            if default and not as_json:
                click.echo("Building the embedded default table: the whole forward space (7,012 cells) scored with "
                           "SAHD and Hamming on digits (bench skeleton), plus 16 cells trained 3 epochs with seeds 0 "
                           "and 1; about 8.5 CPU-minutes: 5 minutes on 2 idle cores, 1 minute on 16.", err=True)
            with _sigterm_interrupts(), _stdout_to_stderr() if as_json else contextlib.nullcontext():
                executor = make_executor(opts["executor"], workers=opts["workers"], address=opts["ray_address"],
                                         gpus=gpus)
                report = run_build(path, stages, work=run_item, executor=executor, shard=request.shard,
                                   progress=not quiet, fold_seconds=opts["fold_seconds"],
                                   environment=lambda: environment(request.device, opts["executor"], opts["workers"]))
    except WorkerDied as err:
        raise click.ClickException(f"{err}; rerun the same command to resume") from None
    except KeyboardInterrupt:
        click.echo(f"interrupted: the rows finished so far are stored in {path}; rerun the same command to resume",
                   err=True)
        sys.exit(130)
    summary = {
        "table": str(report.path.resolve()), "size_bytes": report.size, "seconds": round(report.seconds, 3),
        "replayed_from_journal": report.replayed,
        "stages": [{"protocol": s.protocol, "type": s.type, "wanted": s.wanted, "already_stored": s.skipped,
                    "added": s.added, "failed": s.failed, "rows_in_table": s.rows, "seconds": round(s.seconds, 3),
                    "errors": s.errors} for s in report.stages],
    }
    if as_json:
        echo_json(summary)
    else:
        click.echo(f"table {summary['table']} ({_size(report.size)}), built in {_duration(report.seconds)}")
        for s in report.stages:
            click.echo(f"  {s.type:5} protocol {s.protocol}: {s.rows:,} rows stored; this run added {s.added:,}, "
                       f"found {s.skipped:,} already stored, {s.failed:,} failed ({_duration(s.seconds)})")
        click.echo(f"  inspect: snnbench info {shlex.quote(str(report.path))}")
        click.echo(f"  query it: snnbench query --table {shlex.quote(str(report.path))} MATRIX (or set SNNBENCH_TABLE; "
                   "unnamed, queries open the shipped tables)")
    for line in unused:
        click.echo(line, err=True)
    if report.failed:
        for s in report.stages:
            for e in s.errors:
                click.echo(f"  failed: {e}", err=True)
        raise click.ClickException(f"{report.failed} rows failed and were not stored; rerun the same command to retry them")


def request_of(command: str) -> BuildRequest:
    """The request of a ``snnbench build TABLE [OPTIONS]`` command line (as tables record it), read by the options of
    :func:`build`; ``ValueError`` for another command or a bad option."""
    argv = shlex.split(command)
    if argv[:2] != ["snnbench", "build"] or len(argv) < 3:
        raise ValueError(f"not a snnbench build command with a TABLE: {command!r}")
    try:
        params = build.make_context("build", argv[2:]).params
    except click.UsageError as err:
        raise ValueError(" ".join(err.format_message().split())) from None
    if params["table"] is None:
        raise ValueError(f"not a snnbench build command with a TABLE: {command!r}")
    return BuildRequest.from_options(**params)


@click.command()
@click.argument("out", type=NonEmptyPath(dir_okay=False))
@click.argument("inputs", type=NonEmptyPath(dir_okay=False), nargs=-1, required=True)
@click.option("--union", is_flag=True, help="Keep protocols that only some INPUTS hold (e.g. join a training run to a score table).")
def merge(out: str, inputs: tuple[str, ...], union: bool) -> None:
    """Join shard tables INPUTS into a new table OUT (refuses tables built with different settings unless --union)."""
    from snnbench.table import merge_tables

    start = time.perf_counter()
    table = merge_tables(out, inputs, union=union)
    rows = ", ".join(f"{p.id} ({p.type}): {len(p):,} rows" for p in table.protocols.values())
    click.echo(f"merged {len(inputs)} table{'s' if len(inputs) > 1 else ''} into {out} ({_size(os.path.getsize(out))}) in {_duration(time.perf_counter() - start)}: {rows}")


def _environment_line(env: dict) -> str:
    cpu = f" ({env['cpu_capability']})" if "cpu_capability" in env else ""
    loops = f", CPU loops: {env['cpu_loops']}" if "cpu_loops" in env else ""
    return (f"{env.get('device_name', '?')}{cpu}, torch {env.get('torch', '?')}, {env.get('executor', '?')} executor, "
            f"workers {env.get('workers', '?')}, {env.get('platform', '?')}{loops}")


_SEED_OPTIONS = ("--score-seeds", "--seeds")


def _seed_key(argv: list[str]) -> tuple[tuple[str, ...], tuple[frozenset[int], ...]] | None:
    """A build command's arguments but the seed options, and each seed option's seeds (``None``: a seed option
    this snnbench would not have written)."""
    from snnbench.seeds import parse_seeds

    rest, seeds = list(argv), []
    try:
        for name in _SEED_OPTIONS:
            if name in rest[:-1]:
                i = rest.index(name)
                seeds.append(frozenset(parse_seeds(rest[i + 1])))
                del rest[i:i + 2]
            else:
                seeds.append(frozenset())
    except ValueError:
        return None
    return tuple(rest), tuple(seeds)


def _rebuild_commands(commands: list[str], path: str) -> list[str]:
    """The recorded build commands with their output table replaced by ``path`` (the table shown: a build into a
    scratch file that was merged in rebuilds this one; ``--into-shipped`` added for a shipped table, so the command
    runs as shown), duplicates dropped, first-recorded order kept. A command that another repeats with more seeds
    (``--score-seeds 0`` against ``--score-seeds 0,1,2,3,4``, the rest alike) is dropped: the other builds its rows."""
    keys: dict[str, tuple[tuple[str, ...], tuple[frozenset[int], ...]] | None] = {}
    for cmd in commands:
        try:
            argv = shlex.split(cmd)
        except ValueError:  # not a command line this snnbench wrote: shown as recorded
            keys.setdefault(cmd, None)
            continue
        if argv[:2] == ["snnbench", "build"] and len(argv) > 2:
            argv[2] = str(path)
            if _is_shipped(Path(path)) and "--into-shipped" not in argv:
                argv.append("--into-shipped")
            cmd = shlex.join(argv)
        keys.setdefault(cmd, _seed_key(argv))

    def covered(a: tuple[tuple[str, ...], tuple[frozenset[int], ...]] | None) -> bool:
        return a is not None and any(b is not None and b != a and b[0] == a[0] and all(x <= y for x, y in zip(a[1], b[1]))
                                     for b in keys.values())

    return [cmd for cmd, key in keys.items() if not covered(key)]


@click.command()
@click.argument("table", type=NonEmptyPath(dir_okay=False), required=False)
@click.option("--dataset", default=None, help="With no TABLE: the table `snnbench query --dataset` opens.")
@click.option("--verify", is_flag=True, help="Also recompute each protocol's content digest: a table edited or damaged "
              "since snnbench wrote it is refused (exit 2).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(table: str | None, dataset: str | None, verify: bool, as_json: bool) -> None:
    """Protocols, coverage and summary statistics of TABLE (default: the table `snnbench query` opens:
    $SNNBENCH_TABLE, else the table shipped for --dataset, digits when none)."""
    from snnbench.builders.inventory import describe
    from snnbench.table import open_table, resolve_table

    if table is not None and dataset is not None:
        raise ValueError("--dataset: picks the table when no TABLE is given; info describes every protocol of TABLE")
    path = resolve_table(table, dataset, name_it="the TABLE argument")
    checked = open_table(path, verify=True) if verify else None
    d = describe(path)
    if checked is not None:
        d["verified"] = {"protocols": len(checked.protocols),
                         "without_digest": sorted(p.id for p in checked.protocols.values() if not p.digest)}
    if as_json:
        echo_json(d)
        return
    c = d["cells"]
    click.echo(f"{d['path']}: snnbench table, schema {d['schema_version']}, {_size(d['size_bytes'])}, "
               f"modified {d['modified']}; {c['total']:,} cells ({c['forward']:,} forward, {c['backward']:,} backward)")
    for p in d["protocols"]:
        s = p["settings"]
        what = ",".join(s["score"]["metrics"]) if p["type"] == "score" else f"{s['train']['epochs']} epochs"
        shards = "" if p["shards"] is None else f", shards {p['shards']['indices']} of {p['shards']['count']}"
        click.echo(f"\nprotocol {p['id']} ({p['type']}: {what}; {s['dataset']['name']}, {s['network']['preset']} skeleton, "
                   f"{s['device']}{shards})")
        cover = ", ".join(f"{c['cells']:,} of the {c['of']:,} {_KIND_CELLS[k]} ({100 * c['cells'] / c['of']:.1f}%)"
                          for k, c in p["coverage"].items())
        click.echo(f"  {p['rows']:,} rows, {p['cells']:,} cells: {cover or 'none'}; seeds {p['seeds']}")
        for name, st in p["stats"].items():
            if "mean" in st:
                click.echo(f"  {name:28} n={st['finite']:>7,}  mean {st['mean']:.6g}  std {st['std']:.6g}  "
                           f"min {st['min']:.6g}  max {st['max']:.6g}")
            else:
                click.echo(f"  {name:28} n={st['finite']:>7,} finite of {st['rows']:,}")
        if p["worker_seconds"] is not None and p["rows"]:
            click.echo(f"  compute: {p['worker_seconds'] / 3600:.2f} worker-hours ({p['worker_seconds'] / p['rows']:.3g} s per row)")
        for env in dict.fromkeys(_environment_line(e) for e in p["environments"]):
            click.echo(f"  built with: {env}")
        for cmd in _rebuild_commands(p["commands"], d["path"]):
            click.echo(f"  rebuild: {cmd}")
    if "verified" in d:
        v = d["verified"]
        old = f"; {len(v['without_digest'])} written before digests were stored, checked for structure only" if v["without_digest"] else ""
        click.echo(f"\nverified: the rows of {v['protocols'] - len(v['without_digest'])} of {v['protocols']} protocols match "
                   f"their content digests{old}")
    sys.stdout.flush()
