"""The build request: one value from which ``snnbench build``'s stages, settings and recorded commands derive."""

from __future__ import annotations

import dataclasses
import os
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from snnbench.builders.cli import build, request_of
from snnbench.builders.request import OPTIONS, BuildRequest
from snnbench.names import METRICS
from snnbench.table import protocol_id

_KEY = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
_JSON = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
                  st.text(max_size=8), st.lists(st.integers(0, 50), max_size=3))
_SEEDS = st.lists(st.integers(0, 2**63 - 1), min_size=1, max_size=4, unique=True).map(tuple)
_SPEC = st.one_of(st.just("all"), st.builds(lambda n, s: f"sample:{n}" + (f":{s}" if s is not None else ""),
                                            st.integers(1, 5000), st.none() | st.integers(0, 99)),
                  st.builds(lambda k, m: f"top:{k}:{m}", st.integers(1, 99), st.sampled_from(["sahd", "hd", "params"])),
                  st.builds(lambda n, m, b: f"strata:{n}:{m}:{b}", st.integers(1, 99), st.sampled_from(["sahd", "snip"]),
                            st.integers(1, 20)))


@st.composite
def requests(draw: st.DrawFn) -> BuildRequest:
    """Requests over every option: named and .npz datasets, overrides, selections, seeds, shards, modes."""
    npz = draw(st.booleans())
    mode = draw(st.sampled_from(["clean", "release"]))
    if mode == "release":
        scores: tuple[str, ...] = ("sahd",)
    else:
        scores = tuple(draw(st.lists(st.sampled_from(METRICS), max_size=4, unique=True)))
    shard = draw(st.none() | st.integers(1, 16).flatmap(lambda n: st.tuples(st.integers(0, n - 1), st.just(n))))
    return BuildRequest(
        table=draw(st.sampled_from(["t.h5", "/tmp/a table/t.h5", "out/it's.h5", "~/x.h5"])),
        dataset=draw(st.sampled_from(["data/train.npz", "/tmp/my data/train.npz"])) if npz
        else draw(st.sampled_from(["digits", "cifar10", "cifar100", "tinyimagenet"])),
        dataset_name=draw(st.none() | st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
                                              min_size=1, max_size=10)) if npz else None,
        val_fraction=draw(st.floats(0.0, 1.0, exclude_max=True)), split_seed=draw(st.integers(0, 2**63 - 1)),
        kind=draw(st.sampled_from(["forward", "backward"])), preset=draw(st.sampled_from(["paper", "bench"])),
        net=draw(st.dictionaries(_KEY, _JSON, max_size=3)), device=draw(st.sampled_from(["cpu", "cuda"])), shard=shard,
        scores=scores, score_batch=draw(st.integers(2, 4096)), score_repeats=draw(st.integers(1, 9)), score_mode=mode,
        score_seeds=draw(_SEEDS), cells=draw(_SPEC), train_epochs=draw(st.integers(0, 300)),
        train=draw(st.dictionaries(_KEY.filter(lambda k: k != "epochs"), _JSON, max_size=3)),
        seeds=draw(_SEEDS), train_cells=draw(_SPEC))


@settings(max_examples=300, deadline=None)
@given(requests())
def test_a_request_is_its_command(request: BuildRequest) -> None:
    """request -> command -> parsed request is the same request, for every option combination; and so for the
    command each of its stages records."""
    assert request_of(request.command()) == request
    for stage in ("score", "train"):
        part = request.for_stage(stage)
        assert request_of(part.command()) == part


def test_the_command_spells_the_recorded_form() -> None:
    """The order and spelling of the commands tables have recorded since before requests existed (written out by
    hand here): defaults spelled, clean mode not, shard after the device, training options after the budget."""
    r = BuildRequest(table="t.h5", net={"timesteps": 4, "c1": 8}, shard="1/3", cells="sample:9",
                     train={"test_epochs": [4, 8]}, train_cells="top:5:sahd")
    base = ("snnbench build t.h5 --dataset digits --val-fraction 0.1 --split-seed 0 --kind forward --preset bench "
            "--net c1=8 --net timesteps=4 --device cpu --shard 1/3 --scores sahd,hd --score-batch 64 --score-repeats 1 "
            "--score-seeds 0 --cells sample:9 --train-epochs ")
    assert r.for_stage("score").command() == base + "0"
    # top: ranks by this command's scores, so the training's command scores too
    assert r.for_stage("train").command() == base + "3 --train 'test_epochs=[4, 8]' --seeds 0,1 --train-cells top:5:sahd"
    plain = dataclasses.replace(r, train_cells="sample:2", score_mode="release", scores="sahd")
    assert plain.for_stage("train").command().endswith("--device cpu --shard 1/3 --scores none --train-epochs 3 "
                                                       "--train 'test_epochs=[4, 8]' --seeds 0,1 --train-cells sample:2")
    assert " --score-mode release " in plain.for_stage("score").command()


def test_a_request_is_canonical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One build, one request: text and typed forms agree, settings of a stage that does not run are the defaults,
    relative dataset and FILE paths become absolute."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cells.txt").write_text("0303 0033 0003 0000\n")
    a = BuildRequest(table="t.h5", scores="hd, sahd,hd", seeds="0-2", net=("b=1", "a=2", "b=3"), shard=" 0 / 2 ")
    b = BuildRequest(table="t.h5", scores=("hd", "sahd"), seeds=(0, 1, 2), net={"a": 2, "b": 3}, shard=(0, 2))
    assert a == b and a.scores == ("hd", "sahd") and a.net == (("a", 2), ("b", 3))
    assert BuildRequest(table="t.h5", scores="none", score_batch=8, cells="top:3:x") == BuildRequest(table="t.h5", scores="none")
    assert BuildRequest(table="t.h5", train_epochs=0, seeds="5", train={"lr": 1}) == BuildRequest(table="t.h5", train_epochs=0)
    r = BuildRequest(table="t.h5", dataset="d/train.npz", cells="cells.txt", train_cells="cells.txt")
    assert r.dataset == str(tmp_path / "d" / "train.npz") and r.cells == r.train_cells == str(tmp_path / "cells.txt")


@pytest.mark.parametrize("fields, message", [
    (dict(scores="sahd,nope"), "unknown"), (dict(scores=""), "empty"), (dict(kind="sideways"), "kind"),
    (dict(preset="huge"), "preset"), (dict(device="tpu"), "device"), (dict(val_fraction=1.0), "val_fraction"),
    (dict(shard="3/3"), "shard"), (dict(seeds="x"), "seeds"), (dict(net=("c1",)), "--net"),
    (dict(train={"epochs": 2}), "--train-epochs"), (dict(dataset="mnist"), "unknown dataset"),
    (dict(dataset_name="x"), "--dataset-name"), (dict(score_mode="release"), "release"),
    (dict(cells="sample:0"), "sample"), (dict(train_cells="top:3"), "top"), (dict(table=""), "table"),
    (dict(score_batch=1), "score_batch"),
])
def test_a_bad_request_is_refused_when_made(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BuildRequest(**{"table": "t.h5", **fields})


def test_the_build_options_are_the_request_fields() -> None:
    """``snnbench build``'s options for what it builds are made from the request's fields (no second spelling):
    each field's option, default and help come from the field."""
    params = {p.name: p for p in build.params}
    for f in OPTIONS:
        p = params[f.name]
        assert p.opts == ["--" + f.name.replace("_", "-")] and p.help == f.metadata["help"]
    assert request_of("snnbench build t.h5") == BuildRequest(table="t.h5")
    with pytest.raises(ValueError, match="snnbench build"):
        request_of("snnbench merge a.h5 b.h5")
    with pytest.raises(ValueError, match="--bogus"):
        request_of("snnbench build t.h5 --bogus 1")


def test_stages_derive_settings_and_commands_from_the_request() -> None:
    """The stages' settings are the protocols the request's fields name (checked against a settings dict written
    out by hand), each stage carries its cells, seeds and recorded command."""
    r = BuildRequest(table="t.h5", net={"timesteps": 2}, scores="hd", score_batch=8, score_repeats=2, cells="sample:3",
                     train_epochs=2, seeds="4", train_cells="sample:2:1", train={"lr": 0.05})
    score, train = r.stages(pack=3)
    assert (score.type, score.cells, score.seeds, score.kind) == ("score", "sample:3", (0,), "forward")
    assert (train.type, train.cells, train.seeds, train.pack, train.batch) == ("train", "sample:2:1", (4,), 3, 3)
    assert score.settings["dataset"] == {"name": "digits", "val_fraction": 0.1, "split_seed": 0}
    assert score.settings["score"] == {"metrics": ["hd"], "batch_size": 8, "repeats": 2, "tau": 1.0}
    assert score.settings["network"]["preset"] == "bench" and score.settings["network"]["config"]["timesteps"] == 2
    assert train.settings["train"]["epochs"] == 2 and train.settings["train"]["lr"] == 0.05
    assert score.settings["device"] == train.settings["device"] == "cpu"
    assert score.command == r.for_stage("score").command() and train.command == r.for_stage("train").command()
    assert protocol_id("score", score.settings) != protocol_id("score", BuildRequest(table="t.h5").stages()[0].settings)
    with pytest.raises(ValueError, match="exceeds the 1,294 training images"):
        BuildRequest(table="t.h5", score_batch=5000).stages()


def test_data_dir_is_scoped_to_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--data-dir reaches the build's workers through $SNNBENCH_DATA_DIR while it runs and leaves the caller's
    environment as it was (here: unset), also when the build is refused."""
    from snnbench.cli import main

    monkeypatch.delenv("SNNBENCH_DATA_DIR", raising=False)
    result = CliRunner().invoke(main, ["build", str(tmp_path / "t.h5"), "--dataset", "cifar10", "--data-dir",
                                       str(tmp_path), "--workers", "0", "--quiet"])
    assert result.exit_code == 2 and str(tmp_path) in result.output
    assert "SNNBENCH_DATA_DIR" not in os.environ
    assert not (tmp_path / "t.h5").exists()


def test_recorded_commands_parse_after_shlex_round_trip() -> None:
    """A recorded command stays one shell line: split and joined again, it names the same request."""
    r = BuildRequest(table="/tmp/a b/t.h5", dataset="/tmp/x y/train.npz", dataset_name="it's", net={"s": "a b"})
    assert request_of(shlex.join(shlex.split(r.command()))) == r
