"""The build pipeline: plan each stage's missing rows, run them on an executor, journal and fold results.

Invariants
----------
* The driver (the process calling :func:`build`) is the only writer of the table; workers only return
  plain records. Results are journalled (fsync) as each work item finishes and folded into the HDF5
  file atomically every ``fold_seconds`` (or, for a table slow to write, as often as keeps folding under
  :data:`FOLD_SHARE` of the driver's time) and at the end, so an interrupted build loses at most the
  items in flight, and rerunning the same command skips every stored row.
* Stages run in order (scores before training), so ``top:`` and ``strata:`` training selections see the
  scores of the same command.
* A row that raises in a worker is reported and left out of the table; a rerun retries it.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

from snnbench.builders.executors import Executor, LocalExecutor, Work
from snnbench.builders.plan import check_cells, parse_shard, plan_items, ranking_column, select_cells
from snnbench.table import Protocol, TableWriter, journal_path, open_table


@dataclass
class Stage:
    """One protocol to fill: its type and settings (which define its id), and the rows wanted
    (:meth:`snnbench.builders.request.BuildRequest.stages` makes those of a build command)."""

    type: str
    settings: dict[str, Any]
    cells: str
    kind: str
    seeds: tuple[int, ...]
    batch: int = 16
    pack: int = 1  # train: rows trained together as one pack (see snnbench.training.train_pack)
    command: str = ""
    source: str | None = None  # the dataset file workers load, when the settings name it otherwise (.npz)


@dataclass
class StageReport:
    protocol: str
    type: str
    wanted: int = 0
    skipped: int = 0
    added: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    rows: int = 0


@dataclass
class BuildReport:
    path: Path
    stages: list[StageReport]
    seconds: float
    size: int
    replayed: int

    @property
    def failed(self) -> int:
        return sum(s.failed for s in self.stages)


def build(path: str | os.PathLike[str], stages: Sequence[Stage], *, work: Work, executor: Executor | None = None,
          shard: tuple[int, int] | str | None = None, environment: Callable[[], dict[str, Any]] = dict,
          progress: bool = True, fold_seconds: float = 20.0) -> BuildReport:
    """Fill ``stages`` of the table at ``path`` with ``work`` run on ``executor`` (default: this process)."""
    start = time.perf_counter()
    shard = parse_shard(shard) if isinstance(shard, str) else shard
    executor = executor or LocalExecutor(0)
    try:
        _check_selections(path, stages)
        reports, replayed = _run_stages(path, stages, work, executor, shard, environment(), progress, fold_seconds)
    except BaseException:  # interrupted or failed: finished rows are folded already, stop the rest now
        executor.abort()
        raise
    executor.close()
    size = Path(path).stat().st_size
    return BuildReport(Path(path), reports, time.perf_counter() - start, size, replayed)


def _check_selections(path: str | os.PathLike[str], stages: Sequence[Stage]) -> None:
    """Each stage's selection is checked, and those that rank by stored scores (``top:``, ``strata:``) are made
    from the stored table unless an earlier score stage computes their metric (the ``score.metrics`` of its
    settings: they then rank by this run's scores), before anything is written: a bad selection leaves no file
    and no protocol."""
    computed: set[str] = set()
    ranked = []
    for stage in stages:
        check_cells(stage.cells, stage.kind)
        column = ranking_column(stage.cells, stage.kind)
        if column is not None and column not in computed:
            ranked.append(stage)
        if stage.type == "score":
            computed |= {f"scores/{m}" for m in stage.settings.get("score", {}).get("metrics", ())}
    if not ranked or journal_path(path).exists():
        return  # a journal: an interrupted writer's rows are not folded yet; the writer replays them, then selects
    protocols = open_table(path).protocols if Path(path).exists() else {}
    for stage in ranked:
        select_cells(stage.cells, stage.kind, protocols)


def _run_stages(path: str | os.PathLike[str], stages: Sequence[Stage], work: Work, executor: Executor,
                shard: tuple[int, int] | None, env: dict[str, Any], progress: bool,
                fold_seconds: float) -> tuple[list[StageReport], int]:
    """Run the stages in order under one writer (its exit folds whatever finished); returns each stage's report
    and the rows replayed from the journal."""
    reports: list[StageReport] = []
    with TableWriter(path) as writer:
        for stage in stages:
            hashes = select_cells(stage.cells, stage.kind, writer.protocols, [r.protocol for r in reports])
            proto = writer.ensure_protocol(stage.type, stage.settings, command=stage.command, environment=env, shard=shard)
            items, skipped = plan_items(stage.type, proto, hashes, stage.seeds, shard, stage.batch, stage.source,
                                        stage.pack)
            report = StageReport(proto.id, stage.type, skipped=skipped, wanted=skipped + sum(len(i.rows) for i in items))
            reports.append(report)
            t0 = time.perf_counter()
            _run_stage(writer, proto, [i.to_dict() for i in items], report, work, executor, progress, fold_seconds)
            report.seconds = time.perf_counter() - t0
            report.rows = len(proto)
            writer.fold()  # a stage boundary: readers see the finished stage
        return reports, writer.replayed


#: Most of the driver's wall time folding may take: a fold rewrites the whole file, so a large table folds
#: less often than ``fold_seconds`` (the journal keeps the rows in between durable).
FOLD_SHARE = 0.05


def _run_stage(writer: TableWriter, proto: Protocol, items: list[dict[str, Any]], report: StageReport, work: Work,
               executor: Executor, progress: bool, fold_seconds: float) -> None:
    total = sum(len(i["rows"]) for i in items)
    last_fold, fold_cost = time.monotonic(), 0.0
    desc = f"{proto.type} {proto.id}"
    with tqdm(total=total, desc=desc, unit="row", disable=not progress or total == 0, file=sys.stderr,
              dynamic_ncols=True, smoothing=0.05) as bar:
        for _, records in executor.run(work, items):
            good = [r for r in records if "error" not in r]
            for r in records:
                if "error" in r:
                    report.failed += 1
                    if len(report.errors) < 5:
                        report.errors.append(f"cell {r['hash']} seed {r['seed']}: {r['error']}")
            writer.add(proto.id, good)
            report.added += len(good)
            bar.update(len(records))
            if time.monotonic() - last_fold >= max(fold_seconds, fold_cost / FOLD_SHARE):
                start = time.monotonic()
                writer.fold()
                last_fold = time.monotonic()
                fold_cost = last_fold - start


def cpu_name() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else what :mod:`platform` knows."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str, executor: str, workers: int | None) -> dict[str, Any]:
    """Package versions, machine, CPU (model and the vector ISA torch uses: float results of gradient proxies
    and trainings can differ in the last bits between them), the CPU loops in use (``snnbench.kernels``: fused
    batch norm rounds differently from torch's) and device a build runs with; stored with every protocol it touches."""
    import platform

    import h5py
    import numpy
    import torch

    from snnbench import __version__, kernels

    env: dict[str, Any] = {
        "snnbench": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "numpy": numpy.__version__, "h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version,
        "platform": platform.platform(), "cpu_count": os.cpu_count(), "executor": executor,
        "workers": workers if workers is not None else os.cpu_count(), "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" and torch.cuda.is_available() else cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_loops": kernels.describe(),
    }
    if device == "cuda":
        env["cuda"] = torch.version.cuda
    if executor == "ray":
        import ray

        env["ray"] = ray.__version__
    return env
