"""``snnbench build`` / ``merge`` / ``info`` and the pipeline: kill -9 + resume, shards, Ray, plans, failures."""

from __future__ import annotations

import _thread
import contextlib
import hashlib
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from snnbench.builders.build import Stage, build
from snnbench.builders.executors import LocalExecutor, WorkerDied
from snnbench.builders.plan import in_shard, parse_shard, select_cells
from snnbench import kernels
from snnbench.seeds import cell_seed, parse_seeds
from snnbench.cli import main
from snnbench.builders.cli import _interrupt, _rebuild_commands, _sigterm_interrupts
from snnbench.space import Cell, space
from snnbench.table import Protocol, TableError, open_table, records_equal

# Tiny but real: the bench skeleton on digits narrowed to a few channels, 2 time steps.
TINY = ["--net", "c1=2", "--net", "c2=4", "--net", "hidden=8", "--net", "timesteps=2", "--score-batch", "8",
        "--cells", "sample:16", "--train-epochs", "1", "--train-cells", "sample:2:7", "--seeds", "0",
        "--train", "batch_size=256", "--train", "eval_batch_size=512", "--quiet"]
TIMES = ("seconds", "train_seconds", "curves/epoch_seconds")  # wall-clock columns: the only ones allowed to differ


def _times(p: Protocol) -> tuple[str, ...]:
    """:data:`TIMES` and the protocol's per-metric scoring seconds (wall clock too)."""
    return TIMES + tuple(n for n in p.columns if n.startswith("metric_seconds/"))


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _same_tables(a: Path, b: Path) -> None:
    ta, tb = open_table(a), open_table(b)
    assert set(ta.protocols) == set(tb.protocols)
    np.testing.assert_array_equal(ta.cells["hash"], tb.cells["hash"])
    np.testing.assert_array_equal(ta.cells["matrix"], tb.cells["matrix"])
    for pid, p in ta.protocols.items():
        assert p.settings == tb.protocols[pid].settings
        assert records_equal(p, tb.protocols[pid], ignore=_times(p)), pid


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted tiny build (in this process): the table every other build must reproduce."""
    path = tmp_path_factory.mktemp("ref") / "ref.h5"
    _cli("build", str(path), *TINY, "--workers", "0")
    return path


def test_reference_holds_what_was_asked(reference: Path) -> None:
    t = open_table(reference)
    score = next(p for p in t.protocols.values() if p.type == "score")
    train = next(p for p in t.protocols.values() if p.type == "train")
    assert sorted(h.decode() for h in score.hash) == sorted(select_cells("sample:16", "forward"))
    assert len(train) == 2 and set(train.seed.tolist()) == {0}
    assert score.settings["network"]["config"]["c1"] == 2 and score.settings["score"]["batch_size"] == 8
    assert np.isfinite(score.columns["scores/sahd"]).all() and np.isfinite(score.columns["scores/hd"]).all()
    assert train.columns["curves/train_loss"].shape == (2, 1) and ((train.columns["test_acc"] >= 0) & (train.columns["test_acc"] <= 1)).all()
    # the stored command rebuilds the protocol: same id when replayed
    out = _cli("build", str(reference), *train.commands[0].split()[3:], "--workers", "0", "--quiet")
    assert "added 0" in out and "found 2 already stored" in out


def test_kill_9_at_a_random_point_then_resume_equals_uninterrupted(reference: Path, tmp_path: Path) -> None:
    """Kill the driver and its pool worker once results are flowing, after a further random delay (drawn
    again, from a halved range, when a fast machine finished every row before the kill)."""
    path, journal = tmp_path / "killed.h5", Path(f"{tmp_path / 'killed.h5'}.journal")
    rng = random.Random(os.getpid() ^ time.time_ns())
    cmd = [sys.executable, "-c", "from snnbench.cli import main; main()", "build", str(path), *TINY,
           "--workers", "1", "--fold-seconds", "0.2"]
    for attempt in range(6):
        for leftover in tmp_path.iterdir():
            leftover.unlink()
        delay = rng.uniform(0.0, 1.5 / 2 ** attempt)
        proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while _stored_rows(path, journal) == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # until the first result is stored
        time.sleep(delay)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.wait() != -signal.SIGKILL:
            continue  # the build ended before the kill: again, with a shorter delay
        survived = open_table(path)  # whatever survived is a complete, readable table
        if sum(len(p) for p in survived.protocols.values()) < 18:
            break
    assert proc.returncode == -signal.SIGKILL and sum(len(p) for p in survived.protocols.values()) < 18, \
        "every row was stored before the kill, 6 times"
    out = _cli("build", str(path), *TINY, "--workers", "0")
    assert out.count(", 0 failed") == 2
    _same_tables(path, reference)
    assert not Path(f"{path}.journal").exists()


def _children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
    return out


def _workers(pid: int) -> set[int]:
    """Pool worker PIDs of the driver ``pid``: its children but multiprocessing's resource_tracker."""
    out = set()
    for c in _children(pid):
        with contextlib.suppress(OSError):
            if "resource_tracker" not in Path(f"/proc/{c}/cmdline").read_text():
                out.add(c)
    return out


def _stored_rows(path: Path, journal: Path) -> int:
    """Rows a build has made durable so far: those folded into the table and those journalled (each counted once)."""
    rows: set[tuple[str, str, int]] = set()
    with contextlib.suppress(OSError, TableError):
        for p in open_table(path).protocols.values():
            rows |= {(p.id, h.decode(), int(s)) for h, s in zip(p.hash, p.seed)}
    with contextlib.suppress(OSError):
        for line in journal.read_text().splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if "values" in entry:
                    rows.add((entry["protocol"], entry["hash"], entry["seed"]))
    return len(rows)


def _alive(pid: int) -> bool:
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


class _SignalsWhenCollected:
    """Sends this process SIGTERM from ``__del__``: the KeyboardInterrupt its handler raises there is swallowed
    by Python ("Exception ignored in ..."), as happens when `kill PID` lands in a weakref callback."""

    def __del__(self) -> None:
        signal.raise_signal(signal.SIGTERM)


def test_an_interrupt_swallowed_by_a_finalizer_still_stops_the_build(reference: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import snnbench.builders.stages

    run_item, items = snnbench.builders.stages.run_item, []

    def work(item: dict) -> list[dict]:
        items.append(item)
        if len(items) == 1:
            _SignalsWhenCollected()  # collected at once: SIGTERM inside __del__
        return run_item(item)

    monkeypatch.setattr(snnbench.builders.stages, "run_item", work)
    path = tmp_path / "t.h5"
    hooked, handler = sys.unraisablehook, signal.getsignal(signal.SIGTERM)
    result = CliRunner().invoke(main, ["build", str(path), *TINY, "--workers", "0"])
    assert result.exit_code == 130 and "interrupted: " in result.output, result.output
    assert "Traceback" not in result.output and "Exception ignored" not in result.output
    assert sys.unraisablehook is hooked and signal.getsignal(signal.SIGTERM) is handler  # both restored
    stored = sum(len(p) for p in open_table(path).protocols.values())
    assert stored < 18 and len(items) <= 2  # stopped within an item or two, not at the end
    monkeypatch.undo()
    _cli("build", str(path), *TINY, "--workers", "0")
    _same_tables(path, reference)


def test_a_resend_under_way_lands_before_the_handler_is_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    sending, handler_when_sent = threading.Event(), []

    def slow_kill(pid: int, signum: int) -> None:  # a resend caught between its check and its signal
        sending.set()
        time.sleep(0.3)
        handler_when_sent.append(signal.getsignal(signal.SIGTERM))

    monkeypatch.setattr(os, "kill", slow_kill)
    with _sigterm_interrupts():
        sys.unraisablehook(SimpleNamespace(exc_value=KeyboardInterrupt(), exc_type=KeyboardInterrupt))
        assert sending.wait(5)
    assert handler_when_sent == [_interrupt]  # the exit waited for the signal: it met our handler


def test_a_resend_landing_during_the_exit_is_raised_after_the_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    sending = threading.Event()

    def late_kill(pid: int, signum: int) -> None:  # the signal lands while the exit waits for the lock
        sending.set()
        time.sleep(0.3)
        _thread.interrupt_main(signal.SIGTERM)

    monkeypatch.setattr(os, "kill", late_kill)
    hooked, handler = sys.unraisablehook, signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with _sigterm_interrupts():
            sys.unraisablehook(SimpleNamespace(exc_value=KeyboardInterrupt(), exc_type=KeyboardInterrupt))
            assert sending.wait(5)
    assert sys.unraisablehook is hooked and signal.getsignal(signal.SIGTERM) is handler


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_mid_training_leaks_no_semaphore(tmp_path: Path) -> None:
    """Workers terminated mid-training (tqdm bar open) leave nothing for multiprocessing's resource_tracker
    to warn about: the only stderr line is ours."""
    cmd = [sys.executable, "-c", "from snnbench.cli import main; main()", "build", str(tmp_path / "t.h5"), *TINY[:8],
           "--scores", "none", "--train-epochs", "200", "--train-cells", "sample:4:7", "--seeds", "0", "--quiet",
           "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if len(_workers(proc.pid)) == 2:
            break
        time.sleep(0.05)
    time.sleep(8.0)  # the workers import torch and start training (200 epochs: far from done)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    lines = err.strip().splitlines()
    assert proc.returncode == 130 and len(lines) == 1 and lines[0].startswith("interrupted: "), err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_whole_process_group_stops_the_build_cleanly(tmp_path: Path, sig: int) -> None:
    """Ctrl-C (SIGINT) and a job scheduler's stop (SIGTERM: scancel, systemd) reach the driver and its workers at
    once: one line of ours, exit 130, no traceback from the pool's manager thread, and a rerun resumes."""
    path = tmp_path / "t.h5"
    cmd = [sys.executable, "-c", "from snnbench.cli import main; main()", "build", str(path), *TINY[:8],
           "--scores", "none", "--train-epochs", "200", "--train-cells", "sample:4:7", "--seeds", "0", "--quiet",
           "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(_workers(proc.pid)) < 2:
        time.sleep(0.05)
    workers = _workers(proc.pid)
    assert len(workers) == 2, "the pool did not start"
    time.sleep(8.0)  # the workers import torch and start training (200 epochs: far from done)
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    lines = err.strip().splitlines()
    assert proc.returncode == 130 and len(lines) == 1 and lines[0].startswith("interrupted: "), err
    deadline = time.monotonic() + 30
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers), "a worker outlived its driver"
    open_table(path)  # readable


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_driver_leaves_no_worker_running(reference: Path, tmp_path: Path, sig: int) -> None:
    """`kill PID` (SIGTERM) or `kill -9 PID` of the driver alone: its pool workers stop too (SIGTERM: at once,
    with a one-line message and exit 130), the table holds what finished, and a rerun completes it."""
    path, journal = tmp_path / "t.h5", Path(f"{tmp_path / 't.h5'}.journal")
    cmd = [sys.executable, "-c", "from snnbench.cli import main; main()", "build", str(path), *TINY,
           "--workers", "2", "--fold-seconds", "0.2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    workers: set[int] = set()  # gathered while waiting: on a fast machine the pool may be done by the first rows
    while _stored_rows(path, journal) == 0 and proc.poll() is None and time.monotonic() < deadline:
        workers |= _workers(proc.pid)
        time.sleep(0.02)
    # freeze the build (driver, then its workers) so that no row lands between this check and the signal
    proc.send_signal(signal.SIGSTOP)
    workers |= _workers(proc.pid)
    for w in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(w, signal.SIGSTOP)
    assert workers, "no pool worker found"
    assert proc.poll() is None and _stored_rows(path, journal) < 18, "the build ended before the test could stop it"
    proc.send_signal(sig)  # pending until the driver continues (SIGKILL: at once)
    for pid in (*workers, proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGTERM:
        # one line of ours and nothing else (no resource_tracker warning about semaphores of terminated workers)
        lines = err.strip().splitlines()
        assert proc.returncode == 130 and len(lines) == 1 and lines[0].startswith("interrupted: "), err
        assert "Traceback" not in err
    deadline = time.monotonic() + 30
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers), "a worker outlived its driver"
    open_table(path)  # readable
    _cli("build", str(path), *TINY, "--workers", "0")
    _same_tables(path, reference)


def test_shards_merged_equal_one_build(reference: Path, tmp_path: Path) -> None:
    a, b, m = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "m.h5"
    _cli("build", str(a), *TINY, "--workers", "0", "--shard", "0/2")
    _cli("build", str(b), *TINY, "--workers", "0", "--shard", "1/2")
    ta, tb = open_table(a), open_table(b)
    for pid, p in ta.protocols.items():
        ha, hb = {h.decode() for h in p.hash}, {h.decode() for h in tb.protocols[pid].hash}
        assert not ha & hb and all(int(h, 16) % 2 == 0 for h in ha) and all(int(h, 16) % 2 == 1 for h in hb)
        assert p.shards == {"count": 2, "indices": [0]}
    out = _cli("merge", str(m), str(a), str(b))
    assert f"merged 2 tables into {m}" in out
    _same_tables(m, reference)
    assert all(p.shards is None for p in open_table(m).protocols.values())
    # a shard built with other settings is refused with one line naming the difference
    c, d = tmp_path / "c.h5", tmp_path / "d.h5"
    _cli("build", str(c), *TINY, "--workers", "0", "--shard", "0/2", "--train-epochs", "0", "--cells", "sample:4")
    _cli("build", str(d), *TINY, "--workers", "0", "--shard", "1/2", "--train-epochs", "0", "--cells", "sample:4", "--score-batch", "6")
    result = CliRunner().invoke(main, ["merge", str(tmp_path / "x.h5"), str(c), str(d)])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "different settings" in result.output and "score.batch_size: 6 vs 8" in result.output
    assert not (tmp_path / "x.h5").exists()
    out = _cli("merge", "--union", str(tmp_path / "u.h5"), str(c), str(d))  # both score protocols, each its shard
    shards = [p.shards for p in open_table(tmp_path / "u.h5").protocols.values()]
    assert sorted(s["indices"] for s in shards if s is not None) == [[0], [1]]


def test_ray_build_equals_local_build(reference: Path, tmp_path: Path) -> None:
    path = tmp_path / "ray.h5"
    _cli("build", str(path), *TINY, "--executor", "ray", "--workers", "2")
    _same_tables(path, reference)
    envs = [e for p in open_table(path).protocols.values() for e in p.environments]
    assert all(e["executor"] == "ray" and "ray" in e for e in envs)


def test_environment_names_the_cpu_and_its_vector_isa(reference: Path) -> None:
    """Gradient proxies and trainings differ in the last bits between CPUs: the table says which one ran."""
    import re

    envs = [e for p in open_table(reference).protocols.values() for e in p.environments]
    assert envs and all(e["cpu_capability"] == torch.backends.cpu.get_cpu_capability() for e in envs)
    if Path("/proc/cpuinfo").exists():
        model = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        if model:
            assert all(e["device_name"] == model.group(1).strip() for e in envs)


def _check_info(path: Path) -> None:
    d = json.loads(_cli("info", str(path), "--json"))
    t = open_table(path)
    assert d["cells"]["total"] == len(t.cells["hash"]) and d["schema_version"] == 1
    temporal = int(np.tril(space().matrices, -1).any(axis=(1, 2)).sum())  # unique cells with a backward edge
    sizes = {"forward": len(space().matrices) - temporal, "backward": temporal}
    for p in d["protocols"]:
        proto = t.protocols[p["id"]]
        assert p["rows"] == len(proto) and p["cells"] == len(set(proto.hash.tolist()))
        kinds = [Cell(space().matrices[space().hashes.index(h.decode())]).kind for h in set(proto.hash.tolist())]
        assert p["coverage"] == {k: {"cells": kinds.count(k), "of": sizes[k]} for k in ("forward", "backward") if k in kinds}
        for name, st in p["stats"].items():
            col = proto.columns[name]
            col = col[np.isfinite(col)]
            assert st["finite"] == len(col) and ("mean" in st) == (len(col) > 0)
            if len(col):
                assert st["mean"] == pytest.approx(float(np.mean(col))) and st["max"] == pytest.approx(float(np.max(col)))
        assert p["commands"] and p["commands"][0].startswith("snnbench build ")
        assert p["worker_seconds"] == pytest.approx(float(np.sum(proto.columns["seconds"])))
    types = [p["type"] for p in d["protocols"]]  # score protocols first: the order to rebuild in
    assert types == sorted(types, key=lambda t: t != "score") and {p["id"] for p in d["protocols"]} == set(t.protocols)


@pytest.mark.parametrize("builds, replay", [
    # top: over scores an earlier command stored: the training's command scores nothing, and runs after the scores'
    ([["--train-epochs", "0"], ["--scores", "none", "--train-cells", "top:2:sahd"]], ["score", "train"]),
    # top: and strata: over this command's scores: the training's command alone rebuilds both protocols
    ([["--train-cells", "top:2:sahd"]], ["train"]),
    ([["--train-cells", "strata:2:sahd:2"]], ["train"]),
    ([["--shard", " 1 / 2 "]], ["score", "train"]),  # a shard as typed, spaces and all
])
def test_recorded_commands_rebuild_the_table_on_a_fresh_path(tmp_path: Path, builds: list[list[str]],
                                                              replay: list[str]) -> None:
    """The commands `snnbench info` prints (``rebuild:``), of the protocols of the types in ``replay``, in that
    order, run on a new path, give the same table."""
    original, fresh = tmp_path / "original.h5", tmp_path / "fresh.h5"
    for args in builds:
        _cli("build", str(original), *TINY, "--workers", "0", *args)
    protocols = open_table(original).protocols.values()
    for kind in replay:
        for p in (p for p in protocols if p.type == kind):
            for cmd in _rebuild_commands(p.commands, str(fresh)):
                _cli(*shlex.split(cmd)[1:], "--workers", "0", "--quiet")
    _same_tables(fresh, original)


def test_info_drops_a_rebuild_command_another_repeats_with_more_seeds() -> None:
    """A forward scoring recorded with seed 0 and later with seeds 0-4 (rows, not settings): `info` shows the later
    one only; commands that differ in anything else, or whose seeds are not a subset, all stay, in recorded order."""
    base = "snnbench build t.h5 --kind forward --cells all --score-seeds"
    recorded = [f"{base} 0", "snnbench build t.h5 --kind backward --cells all --score-seeds 0", f"{base} 0,1,2,3,4",
                f"{base} 5", "snnbench build t.h5 --kind forward --cells paper --score-seeds 0",
                "snnbench build t.h5 --train-cells all --seeds 0", "snnbench build t.h5 --train-cells all --seeds 0-1"]
    assert _rebuild_commands(recorded, "t.h5") == [recorded[1], recorded[2], recorded[3], recorded[4], recorded[6]]
    assert _rebuild_commands([f"{base} 0-2", f"{base} 0,1,2"], "t.h5") == [f"{base} 0-2", f"{base} 0,1,2"]  # same seeds: both


def test_info_rebuild_commands_name_the_table_shown(tmp_path: Path) -> None:
    """Shards built into scratch files and merged: info prints each distinct command once, writing to the
    merged table (the recorded commands, with their scratch paths, stay in the file's provenance)."""
    args = [*TINY[:8], "--scores", "params", "--train-epochs", "0", "--quiet", "--workers", "0"]
    a, b, merged = tmp_path / "scratch a.h5", tmp_path / "b.h5", tmp_path / "merged.h5"
    _cli("build", str(a), *args, "--cells", "sample:6:1")
    _cli("build", str(b), *args, "--cells", "sample:6:1")
    _cli("build", str(b), *args, "--cells", "sample:9:2")
    _cli("merge", "--union", str(merged), str(a), str(b))
    text = _cli("info", str(merged))
    rebuild = [line.split("rebuild: ", 1)[1] for line in text.splitlines() if "rebuild: " in line]
    assert [shlex.split(c)[:3] for c in rebuild] == [["snnbench", "build", str(merged)]] * 2
    assert [(argv := shlex.split(c))[argv.index("--cells") + 1] for c in rebuild] == ["sample:6:1", "sample:9:2"]
    (p,) = open_table(merged).protocols.values()
    assert {shlex.split(c)[2] for c in p.commands} == {str(a), str(b)}
    assert _rebuild_commands(["snnbench build 'unbalanced", "make all"], "t.h5") == ["snnbench build 'unbalanced", "make all"]


def test_options_of_a_stage_not_run_are_noted_after_the_build(tmp_path: Path) -> None:
    """Training options with --train-epochs 0 and scoring options with --scores none change nothing: the build
    says so on stderr after its summary (stdout stays the summary), and leaves them out of the recorded command."""
    args = [*TINY[:8], "--workers", "0", "--quiet"]
    r = CliRunner().invoke(main, ["build", str(tmp_path / "s.h5"), *args, "--scores", "params", "--cells", "sample:2",
                                  "--train-epochs", "0", "--seeds", "0,1", "--train-cells", "sample:1", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["stages"][0]["type"] == "score"
    assert r.stderr.splitlines() == ["note: --seeds, --train-cells unused with --train-epochs 0 (nothing is trained)"]
    r = CliRunner().invoke(main, ["build", str(tmp_path / "t.h5"), *args, "--scores", "none", "--score-repeats", "3",
                                  "--train-epochs", "1", "--train-cells", "sample:1", "--train", "batch_size=256"])
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines() == ["note: --score-repeats unused with --scores none (nothing is scored)"]
    (p,) = open_table(tmp_path / "t.h5").protocols.values()
    assert "--score-repeats" not in p.commands[0]
    r = CliRunner().invoke(main, ["build", str(tmp_path / "t.h5"), *args, "--scores", "none", "--train-epochs", "1",
                                  "--train-cells", "sample:1", "--train", "batch_size=256"])
    assert r.exit_code == 0 and r.stderr == "", r.output


def test_a_build_with_no_options_announces_the_embedded_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a build given no option but TABLE, --quiet or --json (which silences it) says what the default builds."""
    import snnbench.builders.build

    def stop(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # the build itself is not run here

    monkeypatch.setattr(snnbench.builders.build, "build", stop)
    for args, told in (([], True), (["--quiet"], True), (["--json"], False), (["--workers", "1"], False)):
        r = CliRunner().invoke(main, ["build", str(tmp_path / "t.h5"), *args])
        assert r.exit_code == 130, r.output
        assert ("Building the embedded default table" in r.stderr) == told, (args, r.stderr)


def test_file_selection_is_recorded_by_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A build given a relative FILE selection records it by absolute path, so its recorded command rebuilds
    the same rows from another folder."""
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    (work / "my cells.txt").write_text("0302 0030 0003 0000\n0011 0000 0001 0000\n")
    monkeypatch.chdir(work)
    args = [*TINY[:8], "--scores", "params", "--train-epochs", "0", "--quiet", "--workers", "0"]
    _cli("build", "t.h5", *args, "--cells", "my cells.txt")
    (p,) = open_table(work / "t.h5").protocols.values()
    (command,) = p.commands
    argv = shlex.split(command)
    assert argv[argv.index("--cells") + 1] == str(work / "my cells.txt")
    monkeypatch.chdir(elsewhere)
    for cmd in _rebuild_commands(p.commands, str(elsewhere / "t.h5")):
        _cli(*shlex.split(cmd)[1:], "--workers", "0", "--quiet")
    _same_tables(elsewhere / "t.h5", work / "t.h5")


def test_info_reports_coverage_and_statistics(reference: Path, tmp_path: Path) -> None:
    _check_info(reference)
    text = _cli("info", str(reference))
    assert "rebuild: snnbench build" in text and "scores/sahd" in text and "of the 7,012 forward cells" in text
    protocols = open_table(reference).protocols.values()
    assert text.count("  compute: ") == len(protocols) and text.count("  built with: ") == len(protocols)
    assert f"({torch.backends.cpu.get_cpu_capability()}), torch {torch.__version__}, local executor" in text
    assert f", CPU loops: {kernels.describe()}" in text
    mixed = tmp_path / "mixed.h5"  # a backward sample holds forward cells too: each kind counted against its own
    _cli("build", str(mixed), *TINY[:8], "--kind", "backward", "--cells", "sample:40:1", "--scores", "params",
         "--train-epochs", "0", "--quiet", "--workers", "0")
    _check_info(mixed)
    assert "of the 95,584 cells with a backward edge" in _cli("info", str(mixed))
    result = CliRunner().invoke(main, ["info", str(mixed), "--dataset", "digits"])  # was silently ignored
    assert result.exit_code == 2 and result.output.startswith("Error: --dataset: picks the table when no TABLE"), result.output


@pytest.mark.parametrize("args, message", [
    (["--shard", "2/2"], "shard: expected I/N"),
    (["--gpus-per-task", "-1"], "Invalid value for '--gpus-per-task': -1.0 is not in the range x>=0."),
    (["--gpus-per-task", "nan"], "Invalid value for '--gpus-per-task': nan is not a finite number."),
    (["--fold-seconds", "0"], "Invalid value for '--fold-seconds': 0.0 is not in the range x>0."),
    (["--fold-seconds", "inf"], "Invalid value for '--fold-seconds': inf is not a finite number."),
    (["--val-fraction", "nan"], "Invalid value for '--val-fraction': nan is not a finite number."),
    (["--dataset", "mnist"], "unknown dataset 'mnist': use one of digits, cifar10, cifar100, tinyimagenet or a path to a "
                             "train .npz file"),
    (["--score-seeds", "0-99999999999"], "seeds: at most 10,000 seeds in one list, got '0-99999999999'"),
    (["--cells", "sample:x"], "cells: expected sample:N"),
    (["--cells", "/nonexistent/cells.txt"], "is neither a selection"),
    (["--scores", "sahd,nope"], "metric: unknown"),
    (["--scores", "none", "--train-epochs", "0"], "nothing to build"),
    (["--ray-address", "auto"], "only with --executor ray"),
    (["--gpus-per-task", "1"], "only with --executor ray"),
    (["--net", "c1"], "--net: expected KEY=VALUE"),
    (["--train-cells", "sample:0"], "cells: expected sample:N"),  # refused before the score stage runs
    *([(["--device", "cuda"], "device: cuda: CUDA is not available on this machine; use cpu")]
      if not torch.cuda.is_available() else []),
    (["--net", "dropout=abc"], "dropout must be a finite number, got 'abc'"),
    (["--train", "lr=abc"], "lr must be a finite number, got 'abc'"),
    (["--train", "lr=-1"], "train config: lr must be > 0, got -1.0"),
    (["--train", "batch_size=1.5"], "batch_size must be an integer >= 1, got 1.5"),
    (["--train", "test_epochs=5"], "test_epochs must be a list of epochs, got 5"),
    (["--train", "epochs=50"], "--train epochs: the budget is set with --train-epochs"),
    (["--train-cells", "top:2:sahd", "--scores", "none"], "needs exactly one stored score protocol"),
    (["--executor", "ray", "--workers", "0"], "workers: 0 (run in this process) is for --executor local only"),  # Ray with 0 CPUs: a hang
])
def test_bad_options_give_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["build", str(tmp_path / "t.h5"), *TINY, "--workers", "0", *args])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: ") and message in result.output and result.output.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # refused before any file is made


@pytest.mark.parametrize("command, name", [
    (["build", "", *TINY, "--workers", "0"], "[TABLE]"), (["build", "{tmp}/t.h5", *TINY, "--workers", "0", "--data-dir", ""], "--data-dir"),
    (["info", ""], "[TABLE]"), (["merge", "", "{tmp}/a.h5"], "OUT"), (["merge", "{tmp}/t.h5", ""], "INPUTS..."),
    (["query", "0303 0033 0003 0000", "--table", ""], "--table"), (["replay", "--plot", ""], "--plot"),
    (["compare", "--plot", ""], "--plot"), (["report", "--out", ""], "--out"), (["correlate", "--scores-from", ""], "--scores-from"),
    (["train", "0303 0033 0003 0000", "--checkpoint", ""], "--checkpoint"),
    (["score", "0303 0033 0003 0000", "--dataset", "digits", "--data-dir", ""], "--data-dir"),
])
def test_an_empty_path_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str], name: str) -> None:
    """An empty path is not read as the default table or the current folder."""
    monkeypatch.setenv("SNNBENCH_TABLE", str(tmp_path / "default.h5"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, [a.replace("{tmp}", str(tmp_path)) for a in command])
    assert result.exit_code == 2 and result.output == f"Error: Invalid value for '{name}': the path is empty.\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["replay"], ["compare"], ["correlate"], ["report"], ["query", "0303 0033 0003 0000"],
                                     ["score", "0303 0033 0003 0000", "--dataset", "digits"], ["train", "0303 0033 0003 0000"],
                                     ["model", "summary", "0303 0033 0003 0000"], ["build", "{tmp}/t.h5", "--split-seed"]])
@pytest.mark.parametrize("seed", ["-1", "99999999999999999999"])
def test_seed_options_take_non_negative_64_bit_integers(tmp_path: Path, command: list[str], seed: str) -> None:
    """Every --seed (and build's --split-seed) is refused by click at once, not by numpy or torch later."""
    args = [a.replace("{tmp}", str(tmp_path)) for a in command] + ([] if command[-1] == "--split-seed" else ["--seed"])
    result = CliRunner().invoke(main, [*args, seed])
    option = "--split-seed" if command[-1] == "--split-seed" else "--seed"
    assert result.exit_code == 2 and result.output == (f"Error: Invalid value for '{option}': {seed} is not in the range "
                                                       "0<=x<=9223372036854775807.\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--val-fraction", "1.5"], "Invalid value for '--val-fraction'"),
    (["--val-fraction", "1"], "Invalid value for '--val-fraction'"),  # no training image left
    (["--val-fraction", "-0.1"], "Invalid value for '--val-fraction'"),
    (["--dataset", "cifar100"], "cifar100: "),  # no data in $SNNBENCH_DATA_DIR: found in the driver, not the workers
])
def test_bad_dataset_settings_are_refused_before_anything_is_written(reference: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch, args: list[str],
                                                                     message: str) -> None:
    monkeypatch.setenv("SNNBENCH_DATA_DIR", str(tmp_path / "no-data"))
    old, new = tmp_path / "old.h5", tmp_path / "new.h5"
    old.write_bytes(reference.read_bytes())
    for path in (old, new):
        result = CliRunner().invoke(main, ["build", str(path), *TINY, "--workers", "0", *args])
        assert result.exit_code == 2 and f"Error: {message}" in result.output, result.output
        assert "Traceback" not in result.output and "--download" not in result.output  # build has no --download
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.h5"] and old.read_bytes() == reference.read_bytes()


def test_a_selection_that_cannot_be_made_leaves_the_table_untouched(reference: Path, tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    path.write_bytes(reference.read_bytes())
    for cells in ("top:2:nope", "strata:4:sahd:99"):  # no stored 'nope' score; fewer scored cells than bins
        result = CliRunner().invoke(main, ["build", str(path), *TINY, "--workers", "0", "--scores", "none",
                                           "--train-cells", cells])
        assert result.exit_code == 2 and result.output.startswith("Error: cells: ") and result.output.count("\n") == 1
        assert path.read_bytes() == reference.read_bytes()  # no empty protocol added, not even rewritten
    assert not (tmp_path / "new.h5").exists()
    result = CliRunner().invoke(main, ["build", str(tmp_path / "new.h5"), *TINY, "--workers", "0", "--scores", "none",
                                       "--train-cells", "top:2:sahd"])
    assert result.exit_code == 2 and "no score protocol" in result.output and not (tmp_path / "new.h5").exists()


def test_a_ranking_metric_neither_scored_nor_stored_is_refused_before_scoring(reference: Path, tmp_path: Path) -> None:
    """`--scores hd --train-cells top:1:sahd` on a new table is refused at once, not after the score stage; on a
    table that holds sahd it ranks by the stored scores."""
    old, new = tmp_path / "old.h5", tmp_path / "new.h5"
    old.write_bytes(reference.read_bytes())
    for path, cells in ((new, "top:1:sahd"), (new, "strata:2:scores/sahd:2"), (old, "top:1:vanrossum")):
        result = CliRunner().invoke(main, ["build", str(path), *TINY, "--workers", "0", "--scores", "hd",
                                           "--train-cells", cells])
        assert result.exit_code == 2 and result.output.startswith("Error: cells: ") and result.output.count("\n") == 1
        assert "no score protocol" in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.h5"] and old.read_bytes() == reference.read_bytes()
    _cli("build", str(old), *TINY, "--workers", "0", "--scores", "hd", "--train-cells", "top:1:sahd", "--seeds", "1")
    stored = next(p for p in open_table(reference).protocols.values() if p.type == "score")
    train = next(p for p in open_table(old).protocols.values() if p.type == "train")
    assert [h.decode() for h in train.hash[train.seed == 1]] == select_cells("top:1:sahd", "forward", {stored.id: stored})


def test_score_rows_match_an_independent_recomputation() -> None:
    """A score row's spikes equal network.spike_stats on the same weights and batches; its scores equal score_cell's."""
    import torch

    from snnbench.builders.stages import run_item
    from snnbench.data import load_dataset
    from snnbench.network import build_network, network_config, spike_stats
    from snnbench.scores import draw_batches, score_cell

    cfg = network_config("digits", "bench", c1=2, c2=4, hidden=8, timesteps=3)
    settings = {"dataset": {"name": "digits", "val_fraction": 0.1, "split_seed": 0}, "device": "cpu",
                "network": {"preset": "bench", "config": cfg.to_dict()},
                "score": {"metrics": ["sahd", "hd"], "batch_size": 16, "repeats": 2, "tau": 1.0}}
    ds = load_dataset("digits")
    for text in ("0302 0030 3003 0000", "0302 0030 0003 0000"):
        c = Cell.from_text(text)
        (rec,) = run_item({"stage": "score", "protocol": "p", "settings": settings, "rows": [(c.hash, c.text, 3)]})
        seed = cell_seed(c.hash, 3)
        torch.manual_seed(seed)
        model = build_network(c, cfg).train()
        stats = [spike_stats(model, x) for x, _ in draw_batches(ds, 16, 2, seed, torch.device("cpu"))]
        assert rec["values"]["spikes_per_image"] == pytest.approx(np.mean([s["spikes_per_image"] for s in stats]), rel=1e-12)
        assert rec["values"]["spike_rate"] == pytest.approx(np.mean([s["rate"] for s in stats]), rel=1e-12)
        direct = score_cell(c, ds, cfg, ["sahd", "hd"], 16, 2, seed, "cpu")
        assert rec["values"]["scores/sahd"] == direct["scores"]["sahd"] and rec["values"]["batch_scores/hd"] == direct["batch_scores"]["hd"]


# --------------------------------------------------------------------------- the pipeline with a cheap work function


def fake_work(item: dict) -> list[dict]:
    """Deterministic stand-in for scoring: a number from the row's seed; cells with hash ending in 0 or 1 fail if asked."""
    fail = item["settings"].get("fail", False)
    out = []
    for h, text, s in item["rows"]:
        if fail and h[-1] in "01":
            out.append({"hash": h, "seed": s, "error": "RuntimeError: boom"})
        else:
            out.append({"hash": h, "seed": s, "values": {"v": cell_seed(h, s) / 2**31, "edges": len(Cell.from_text(text).edges())}})
    return out


def _stage(cells: str = "sample:40", seeds: tuple[int, ...] = (0, 1), **settings: object) -> Stage:
    return Stage("score", {"fake": 1, **settings}, cells, "forward", seeds, batch=3)


def _naive_fold_points(items: int, item_s: float, fold_s: float, every: float, share: float) -> list[int]:
    """After which work items a build folds mid-stage, simulated step by step: when ``every`` seconds have passed
    since the last fold and at least the last fold's duration divided by ``share``."""
    now = last = cost = 0.0
    out = []
    for k in range(1, items + 1):
        now += item_s
        if now - last >= max(every, cost / share):
            now += fold_s
            last, cost = now, fold_s
            out.append(k)
    return out


def test_a_slow_fold_is_spaced_by_its_own_cost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a simulated clock (each item 1 s, each fold 0.5 s, --fold-seconds 5): folds wait 0.5 / FOLD_SHARE = 10 s
    after the last one, not 5; creating the table, the stage's end and the writer's exit fold whatever the clock says."""
    import snnbench.builders.build as build_module
    from snnbench.table import TableWriter

    clock = [0.0]
    monkeypatch.setattr(build_module, "time", SimpleNamespace(monotonic=lambda: clock[0], perf_counter=lambda: clock[0]))
    done, folds = [0], []
    fold = TableWriter.fold

    def slow_fold(self: TableWriter) -> None:
        fold(self)
        clock[0] += 0.5
        folds.append(done[0])

    def work(item: dict) -> list[dict]:
        clock[0] += 1.0
        done[0] += 1
        return fake_work(item)

    monkeypatch.setattr(TableWriter, "fold", slow_fold)
    build(tmp_path / "t.h5", [_stage()], work=work, progress=False, fold_seconds=5.0)
    items = done[0]
    assert items == 27  # 80 rows in items of 3
    paced = _naive_fold_points(items, 1.0, 0.5, 5.0, build_module.FOLD_SHARE)
    assert paced == [5, 15, 25]  # by hand: 5 (clock 5.5), then clock >= 15.5 at item 15 (16), >= 26 at item 25
    assert folds == [0, *paced, items, items]  # a new table is written at once, before the stage's clock starts
    assert _naive_fold_points(items, 1.0, 0.5, 5.0, 1.0) == [5, 10, 15, 20, 25]  # what --fold-seconds alone gives
    assert len(next(iter(open_table(tmp_path / "t.h5").protocols.values()))) == 80


def test_interrupted_build_resumes_to_the_same_table(tmp_path: Path) -> None:
    whole, part = tmp_path / "whole.h5", tmp_path / "part.h5"
    build(whole, [_stage()], work=fake_work, progress=False)
    calls = 0

    def dying(item: dict) -> list[dict]:
        nonlocal calls
        calls += 1
        if calls > 5:
            raise KeyboardInterrupt
        return fake_work(item)

    with pytest.raises(KeyboardInterrupt):
        build(part, [_stage()], work=dying, progress=False, fold_seconds=0.0)
    kept = next(iter(open_table(part).protocols.values()))
    assert len(kept) == 15  # 5 items of 3 rows were kept: the first 15 rows in (hash, seed) order
    rows = sorted((h, s) for h in select_cells("sample:40", "forward") for s in (0, 1))
    assert sorted(zip((h.decode() for h in kept.hash), kept.seed.tolist())) == rows[:15]
    report = build(part, [_stage()], work=fake_work, progress=False)
    assert report.stages[0].skipped == 15 and report.stages[0].added == 65
    _same_tables(part, whole)
    p: Protocol = next(iter(open_table(whole).protocols.values()))
    for h, s, v in zip(p.hash, p.seed, p.columns["v"]):
        assert v == cell_seed(h.decode(), int(s)) / 2**31


def test_failed_rows_are_reported_left_out_and_retried(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    report = build(path, [Stage("score", {"fake": 1}, "sample:40", "forward", (0,), batch=4, command="c")],
                   work=lambda item: fake_work({**item, "settings": {**item["settings"], "fail": True}}), progress=False)
    expected_fail = sum(h[-1] in "01" for h in select_cells("sample:40", "forward"))
    assert expected_fail > 0 and report.failed == expected_fail and "boom" in report.stages[0].errors[0]
    assert len(next(iter(open_table(path).protocols.values()))) == 40 - expected_fail
    report = build(path, [Stage("score", {"fake": 1}, "sample:40", "forward", (0,), batch=4, command="c")], work=fake_work, progress=False)
    assert report.failed == 0 and report.stages[0].added == expected_fail and report.stages[0].rows == 40


# --------------------------------------------------------------------------- plans


def test_shards_partition_any_selection() -> None:
    cells = select_cells("sample:300:3", "backward")
    parts = [[h for h in cells if in_shard(h, (i, 3))] for i in range(3)]
    assert sorted(sum(parts, [])) == sorted(cells) and all(parts)
    assert not set(parts[0]) & set(parts[1])
    assert parse_shard("1/3") == (1, 3) and parse_shard(None) is None


def test_cell_selections() -> None:
    sp = space()
    fwd = set(sp.indices("forward").tolist())
    every = select_cells("all", "forward")
    assert len(every) == 7012 and len(select_cells("all", "backward")) == 102596
    s = select_cells("sample:50", "forward")
    assert s == select_cells("sample:50:0", "forward") and s != select_cells("sample:50:1", "forward")
    assert len(set(s)) == 50 and all(sp.hashes.index(h) in fwd for h in s[:10])
    assert s == sorted(s, key=sp.hashes.index)
    assert set(s) < set(select_cells("sample:400", "forward")) < set(select_cells("sample:4000", "forward"))  # nested
    assert select_cells("sample:7013:4", "forward") == every  # beyond the space: all of it
    perm = np.random.default_rng(0).permutation(sp.indices("forward"))  # the documented draw, done directly
    assert set(s) == {sp.hashes[u] for u in perm[:50]}
    assert parse_seeds("0-2,5,1") == (0, 1, 2, 5)
    assert parse_seeds("9999-0,0-9999,3") == tuple(range(10_000))  # the bound counts distinct seeds; "9999-0" is none
    for text in ("0-99999999999", "0-9999,10000", ",".join(map(str, range(10_001)))):  # at once, not a quadratic hang
        with pytest.raises(ValueError, match=r"^seeds: at most 10,000 seeds in one list, got '[0-9,-]{1,40}(\.\.\.)?'$"):
            parse_seeds(text)
    with pytest.raises(ValueError, match=r"^seeds: 9223372036854775808 is above the largest seed 9223372036854775807$"):
        parse_seeds("0,9223372036854775808")
    assert cell_seed("00aa", 0) != cell_seed("00aa", 1) and cell_seed("00aa", 0) == cell_seed("00aa", 0)


def test_the_paper_selection_names_the_published_cells() -> None:
    """``paper``: the cell the SNASNet paper publishes (backward edges 2 -> 0 and 3 -> 0), by hash."""
    assert select_cells("paper", "backward") == [Cell("0302 0030 3003 0000").hash]
    assert Cell("0302 0030 3003 0000").kind == "backward"
    with pytest.raises(ValueError, match="^cells: the paper's published cells .* have backward edges; use --kind backward$"):
        select_cells("paper", "forward")


def test_top_and_file_selections(tmp_path: Path) -> None:
    proto = Protocol("p", "score", {})
    cells = select_cells("sample:30:5", "forward")
    rng = np.random.default_rng(0)
    vals = rng.normal(size=(30, 2))
    proto.hash = np.array([h for h in cells for _ in range(2)], dtype="S16")
    proto.seed = np.array([0, 1] * 30)
    proto.columns = {"scores/sahd": vals.reshape(-1)}
    brute = [cells[i] for i in np.argsort(-vals.mean(axis=1))[:5]]
    assert sorted(select_cells("top:5:sahd", "forward", {"p": proto})) == sorted(brute)
    with pytest.raises(ValueError, match="metric 'hd'"):
        select_cells("top:5:hd", "forward", {"p": proto})
    f = tmp_path / "cells.txt"
    c1, c2 = Cell.from_text("0302 0030 0003 0000"), Cell.from_text("0011 0000 0001 0000")
    f.write_text(f"# my cells\n{c1.text}\n\n{c2.hash}  # by hash\n[[0,3,0,2],[0,0,3,0],[0,0,0,3],[0,0,0,0]]\n")
    assert select_cells(str(f), "forward") == sorted({c1.hash, c2.hash}, key=space().hashes.index)
    f.write_text("0302 0030 3003 0000\n")
    with pytest.raises(ValueError, match="backward cell"):
        select_cells(str(f), "forward")
    f.write_bytes(b"\x89HDF\r\n\x1a\n\xff")  # a table given as --cells
    with pytest.raises(ValueError) as err:
        select_cells(str(f), "forward")
    assert str(err.value) == f"cells: {f}: not a text file of cells (byte 0 is not UTF-8)"
    result = CliRunner().invoke(main, ["build", str(tmp_path / "t.h5"), *TINY, "--workers", "0", "--cells", str(f)])
    assert result.output == f"Error: cells: {f}: not a text file of cells (byte 0 is not UTF-8)\n"
    assert result.exit_code == 2 and not (tmp_path / "t.h5").exists()


def test_strata_selection_spreads_over_score_bins() -> None:
    """strata:N:METRIC against a brute-force ranking: N/BINS cells per equal-count bin, nested, seeded."""
    proto = Protocol("p", "score", {})
    cells = select_cells("sample:103:7", "forward")
    vals = np.random.default_rng(1).normal(size=103)
    vals[:4] = -np.inf  # singular kernels rank lowest
    vals[4:7] = np.nan  # no score: left out
    proto.hash = np.array(cells, dtype="S16")
    proto.seed = np.zeros(103, dtype=np.int64)
    proto.columns = {"scores/sahd": vals}
    order = space().hashes.index
    ranked = sorted((i for i in range(103) if not np.isnan(vals[i])), key=lambda i: (-vals[i], order(cells[i])))
    assert len(ranked) == 100
    bin_of = {cells[i]: r // 10 for r, i in enumerate(ranked)}  # 10 bins of 10
    chosen = select_cells("strata:25:sahd", "forward", {"p": proto})
    assert chosen == sorted(chosen, key=order) and len(set(chosen)) == 25
    counts = np.bincount([bin_of[h] for h in chosen], minlength=10)
    assert sorted(counts.tolist()) == [2] * 5 + [3] * 5 and counts[:5].tolist() == [3] * 5
    assert set(chosen) < set(select_cells("strata:50:sahd", "forward", {"p": proto}))  # nested as N grows
    assert chosen == select_cells("strata:25:sahd:10:0", "forward", {"p": proto})
    assert chosen != select_cells("strata:25:sahd:10:1", "forward", {"p": proto})
    five = select_cells("strata:5:sahd:5", "forward", {"p": proto})
    assert sorted(bin_of[h] // 2 for h in five) == [0, 1, 2, 3, 4]  # 5 bins of 20: one cell each
    assert set(select_cells("strata:500:sahd", "forward", {"p": proto})) == {cells[i] for i in ranked}
    for bad in ("strata:0:sahd", "strata:5", "strata:5:sahd:0", "strata:x:sahd"):
        with pytest.raises(ValueError, match="strata"):
            select_cells(bad, "forward", {"p": proto})
    with pytest.raises(ValueError, match="metric 'hd'"):
        select_cells("strata:5:hd", "forward", {"p": proto})


def die_once(item: dict) -> list[dict]:
    """fake_work, except that the worker process running the victim's item dies, once (or always)."""
    cfg = item["settings"]
    marker = Path(cfg["marker"])
    if any(h == cfg["victim"] for h, _, _ in item["rows"]) and (cfg["always"] or not marker.exists()):
        marker.write_text("died")
        os._exit(1)
    return fake_work(item)


def test_a_dead_worker_process_is_replaced_and_its_items_rerun(tmp_path: Path) -> None:
    victim = select_cells("sample:40", "forward")[17]
    cfg = {"fake": 1, "marker": str(tmp_path / "marker"), "victim": victim, "always": False}
    ex = LocalExecutor(2)
    try:
        report = build(tmp_path / "t.h5", [Stage("score", cfg, "sample:40", "forward", (0,), batch=4, command="c")],
                       work=die_once, executor=ex, progress=False)
    finally:
        ex.close()
    assert (tmp_path / "marker").exists() and report.failed == 0
    p = next(iter(open_table(tmp_path / "t.h5").protocols.values()))
    assert sorted(h.decode() for h in p.hash) == sorted(select_cells("sample:40", "forward"))
    assert all(v == cell_seed(h.decode(), 0) / 2**31 for h, v in zip(p.hash, p.columns["v"]))

    ex = LocalExecutor(2, max_retries=1)
    try:
        with pytest.raises(WorkerDied, match="died 2 times"):
            build(tmp_path / "u.h5", [Stage("score", {**cfg, "always": True}, "sample:40", "forward", (0,), batch=4,
                                            command="c")], work=die_once, executor=ex, progress=False, fold_seconds=0.0)
    finally:
        ex.close()
    kept = open_table(tmp_path / "u.h5").protocols
    assert all(victim.encode() not in p.hash for p in kept.values())  # rows finished before the failure are kept


def test_a_ray_task_whose_worker_always_dies_ends_the_build_with_worker_died(tmp_path: Path) -> None:
    """After its retries, a task whose worker process keeps dying is WorkerDied (one line from the CLI), as with
    the local pool, not a Ray exception traceback; rows finished before it are kept."""
    from snnbench.builders.executors import RayExecutor

    victim = select_cells("sample:40", "forward")[17]
    cfg = {"fake": 1, "marker": str(tmp_path / "marker"), "victim": victim, "always": True}
    ex = RayExecutor(num_cpus=2, max_retries=1)
    try:
        with pytest.raises(WorkerDied, match="failed 2 times"):
            build(tmp_path / "u.h5", [Stage("score", cfg, "sample:40", "forward", (0,), batch=4, command="c")],
                  work=die_once, executor=ex, progress=False, fold_seconds=0.0)
    finally:
        ex.close()
    kept = open_table(tmp_path / "u.h5").protocols
    assert all(victim.encode() not in p.hash for p in kept.values())


def _npz_pair(folder: Path, seed: int) -> Path:
    """A small 3-channel 8x8 image set in the .npz pair format (train.npz + test.npz)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", 120), ("test", 40)):
        np.savez(folder / f"{name}.npz", images=rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8),
                 labels=rng.integers(0, 10, n))
    return folder / "train.npz"


def test_npz_datasets_are_named_and_identified_by_content(tmp_path: Path) -> None:
    a, b = _npz_pair(tmp_path / "a", 0), _npz_pair(tmp_path / "elsewhere" / "b", 0)  # same files, two places
    c = _npz_pair(tmp_path / "c", 1)  # other content
    args = ["--net", "c1=2", "--net", "c2=4", "--net", "hidden=8", "--net", "timesteps=2", "--score-batch", "8",
            "--cells", "sample:3", "--train-epochs", "0", "--quiet", "--workers", "0", "--dataset-name", "tiny-rgb"]
    for name, data in (("a", a), ("b", b), ("c", c)):
        _cli("build", str(tmp_path / f"{name}.h5"), "--dataset", str(data), *args)
    (pa,), (pb,), (pc,) = (list(open_table(tmp_path / f"{n}.h5").protocols.values()) for n in "abc")
    digest = hashlib.sha256(a.read_bytes() + a.with_name("test.npz").read_bytes()).hexdigest()[:16]
    assert pa.settings["dataset"] == {"name": "tiny-rgb", "sha256": digest, "val_fraction": 0.1, "split_seed": 0}
    assert pa.id == pb.id != pc.id and records_equal(pa, pb, ignore=_times(pa))
    assert "--dataset-name tiny-rgb" in pa.commands[0] and str(a) in pa.commands[0]
    # without --dataset-name the absolute path names the set: the same files elsewhere give another protocol
    for name, data in (("a2", a), ("b2", b)):
        _cli("build", str(tmp_path / f"{name}.h5"), "--dataset", str(data), *args[:-2])
    (pa2,), (pb2,) = (list(open_table(tmp_path / f"{n}.h5").protocols.values()) for n in ("a2", "b2"))
    assert pa2.settings["dataset"] == {**pa.settings["dataset"], "name": str(a.resolve())}
    assert pb2.settings["dataset"]["name"] == str(b.resolve()) and len({pa.id, pa2.id, pb2.id}) == 3
    result = CliRunner().invoke(main, ["build", str(tmp_path / "d.h5"), "--dataset", "digits", "--dataset-name", "x"])
    assert result.exit_code == 2 and "--dataset-name" in result.output


def _cifar10_folder(root: Path, seed: int) -> Path:
    """A tiny stand-in for the official CIFAR-10 python folder (``root/cifar-10-batches-py``): 20 images a batch."""
    import pickle

    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, 20).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return root


def test_a_worker_refuses_npz_files_other_than_the_protocols(tmp_path: Path) -> None:
    """A worker whose .npz path holds other files than those the protocol's sha256 names (a cluster node with a
    stale copy) refuses them instead of filling the protocol with rows from other data."""
    from snnbench.builders.stages import _dataset
    from snnbench.data import npz_digest

    train = _npz_pair(tmp_path / "d", 0)
    settings = {"name": "toy", "val_fraction": 0.1, "split_seed": 0, "sha256": npz_digest(train)}
    assert len(_dataset(json.dumps(settings), "cpu", str(train)).train.labels) > 0
    _npz_pair(tmp_path / "d", 1)  # the files change under the same path (a fresh worker process: no cache)
    _dataset.cache_clear()
    with pytest.raises(ValueError, match=f"is not the files the protocol names .sha256 {npz_digest(train)} != "
                                         f"{settings['sha256']}"):
        _dataset(json.dumps(settings), "cpu", str(train))


def test_pool_workers_load_a_named_dataset_from_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--data-dir reaches spawned pool workers (through $SNNBENCH_DATA_DIR) and stays out of the settings: the same
    files in another folder give the same protocol and the same rows."""
    monkeypatch.setenv("SNNBENCH_DATA_DIR", str(tmp_path / "unset"))  # restored after the builds set it
    args = [*TINY[:8], "--cells", "sample:2", "--train-epochs", "0", "--quiet", "--dataset", "cifar10"]
    for name in ("a", "b"):
        data = _cifar10_folder(tmp_path / f"data-{name}", 0)
        _cli("build", str(tmp_path / f"{name}.h5"), *args, "--data-dir", str(data), "--workers", "1")
    (pa,), (pb,) = (list(open_table(tmp_path / f"{n}.h5").protocols.values()) for n in "ab")
    assert pa.settings["dataset"] == {"name": "cifar10", "val_fraction": 0.1, "split_seed": 0}
    assert pa.id == pb.id and len(pa) == 2 and records_equal(pa, pb, ignore=_times(pa))


# A training-only build of 6 rows (3 cells x 2 seeds) for packs; the cells mix op member sets across a pack.
PACKED = [*TINY[:8], "--scores", "none", "--train-epochs", "1", "--train-cells", "sample:3:7", "--seeds", "0,1",
          "--train", "batch_size=128", "--train", "eval_batch_size=512", "--quiet"]


@pytest.fixture(scope="module")
def packed_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted packed build (packs of 2, in this process)."""
    path = tmp_path_factory.mktemp("packed") / "ref.h5"
    _cli("build", str(path), *PACKED, "--pack", "2", "--workers", "0")
    return path


def test_packed_build_agrees_with_unpacked_build(packed_reference: Path, tmp_path: Path) -> None:
    """--pack changes no protocol and no number beyond float rounding: same protocol id, rows, accuracies up to one
    image of difference, curves and spike counts within float32 rounding amplified by a few steps."""
    alone = tmp_path / "alone.h5"
    _cli("build", str(alone), *PACKED, "--pack", "1", "--workers", "0")
    ta, tp = open_table(alone), open_table(packed_reference)
    assert set(ta.protocols) == set(tp.protocols) and len(ta.protocols) == 1
    a, p = next(iter(ta.protocols.values())), next(iter(tp.protocols.values()))
    oa, op = np.lexsort((a.seed, a.hash)), np.lexsort((p.seed, p.hash))
    np.testing.assert_array_equal(a.hash[oa], p.hash[op])
    np.testing.assert_array_equal(a.seed[oa], p.seed[op])
    assert len(a) == 6 and len(set(a.hash.tolist())) == 3
    np.testing.assert_allclose(p.columns["curves/train_loss"][op], a.columns["curves/train_loss"][oa], rtol=1e-5)
    np.testing.assert_allclose(p.columns["spikes_per_image"][op], a.columns["spikes_per_image"][oa], rtol=1e-2)
    from snnbench.data import load_dataset

    assert np.abs(p.columns["test_acc"][op] - a.columns["test_acc"][oa]).max() <= 1.5 / len(load_dataset("digits").test)
    # each row's seconds is its share of its pack: the two rows of a pack hold the same value
    seconds = p.columns["seconds"][op]
    assert (seconds > 0).all() and np.allclose(seconds[0::2], seconds[1::2])


def test_kill_9_of_a_packed_build_then_resume_equals_uninterrupted(packed_reference: Path, tmp_path: Path) -> None:
    """A packed build with 2 workers killed (-9, driver and workers) once a training row is stored loses at most its
    unfinished packs; the resumed build (in this process) equals the uninterrupted one, timing columns aside."""
    path, journal = tmp_path / "killed.h5", Path(f"{tmp_path / 'killed.h5'}.journal")
    cmd = [sys.executable, "-c", "from snnbench.cli import main; main()", "build", str(path), *PACKED, "--pack", "2",
           "--workers", "2", "--fold-seconds", "0.2"]
    for attempt in range(6):
        for leftover in tmp_path.iterdir():
            leftover.unlink()
        proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while _stored_rows(path, journal) == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.wait() == -signal.SIGKILL and _stored_rows(path, journal) < 6:
            break
    stored = _stored_rows(path, journal)
    assert proc.returncode == -signal.SIGKILL and 0 < stored < 6, "every row was stored before the kill, 6 times"
    assert stored % 2 == 0  # whole packs only
    out = _cli("build", str(path), *PACKED, "--pack", "2", "--workers", "0")
    assert f"found {stored} already stored, 0 failed" in out
    _same_tables(path, packed_reference)


def test_a_pack_that_raises_is_retrained_row_by_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """A packed train item whose pack raises falls back to its rows one by one: each gets its own result or error."""
    import snnbench.builders.stages as stages

    calls: list[int] = []

    def pack_fails(*args: object) -> list[dict]:
        raise RuntimeError("out of memory")

    def row(cell: Cell, settings: dict, seed: int, source: str | None) -> dict:
        calls.append(seed)
        if len(calls) == 2:
            raise ValueError("diverged")
        return {"v": float(seed)}

    monkeypatch.setattr(stages, "_train_pack", pack_fails)
    monkeypatch.setattr(stages, "_dataset", lambda *args: None)
    monkeypatch.setitem(stages._ROWS, "train", row)
    hashes = sorted(select_cells("sample:3:7", "forward"))
    sp = space()
    rows = [(h, sp.texts[sp.hash_index[h]].decode(), 0) for h in hashes]
    settings = {"dataset": {"name": "digits"}, "device": "cpu", "network": {"config": {"learnable_tau": False}}}
    records = stages.run_item({"stage": "train", "protocol": "p", "settings": settings, "rows": rows, "source": None,
                               "pack": 3})
    assert calls == [cell_seed(h, 0) for h in hashes]
    assert [r["hash"] for r in records] == hashes
    assert "error" in records[1] and records[1]["error"] == "ValueError: diverged"
    assert records[0]["values"]["v"] == float(cell_seed(hashes[0], 0)) and records[0]["values"]["seconds"] >= 0


def test_writing_into_a_shipped_table_needs_into_shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A build whose TABLE (named, through a link, or from $SNNBENCH_TABLE) is in the package's folder of shipped tables
    is refused with one line before anything is computed, the file untouched; --into-shipped allows it."""
    import snnbench.table as table_module

    shipped = Path(table_module.SHIPPED["digits"])
    if shipped.exists():  # the real one: refused, not a byte or a lock file changed beside it
        before, beside = shipped.read_bytes(), sorted(p.name for p in shipped.parent.iterdir())
        r = CliRunner().invoke(main, ["build", str(shipped), *TINY, "--workers", "0"])
        assert r.exit_code == 2 and r.output.count("\n") == 1 and "--into-shipped" in r.output, r.output
        assert shipped.read_bytes() == before and sorted(p.name for p in shipped.parent.iterdir()) == beside
    tables = tmp_path / "package" / "tables"
    tables.mkdir(parents=True)
    monkeypatch.setattr(table_module, "SHIPPED_DIR", tables)
    link = tmp_path / "mine.h5"
    link.symlink_to(tables / "t.h5")
    args = ["--scores", "hd", "--train-epochs", "0", "--cells", "sample:2", "--score-batch", "8", "--net", "c1=2",
            "--net", "c2=4", "--net", "hidden=8", "--net", "timesteps=2", "--workers", "0", "--quiet"]
    monkeypatch.setenv("SNNBENCH_TABLE", str(tables / "t.h5"))
    for target in ([str(tables / "t.h5")], [str(link)], []):
        r = CliRunner().invoke(main, ["build", *target, *args])
        assert r.exit_code == 2 and "is a table shipped with snnbench" in r.output and r.output.count("\n") == 1, r.output
        assert list(tables.iterdir()) == []
    r = CliRunner().invoke(main, ["build", str(tables / "t.h5"), *args, "--into-shipped", "--json"])
    assert r.exit_code == 0, r.output
    assert len(next(iter(open_table(tables / "t.h5").protocols.values()))) == 2
    assert sorted(p.name for p in tables.iterdir()) == ["t.h5"]  # and no lock file left beside it
    r = CliRunner().invoke(main, ["build", str(tmp_path / "other.h5"), *args])  # elsewhere: no flag needed
    assert r.exit_code == 0, r.output
    recorded = ["snnbench build /scratch/x.h5 --cells all"]  # `snnbench info` prints rebuild commands that run as shown
    assert _rebuild_commands(recorded, str(tables / "t.h5")) == [f"snnbench build {tables / 't.h5'} --cells all --into-shipped"]
    assert _rebuild_commands(recorded, str(tmp_path / "other.h5")) == [f"snnbench build {tmp_path / 'other.h5'} --cells all"]
