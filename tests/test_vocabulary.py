"""One vocabulary (docs/cli.md): one option name, default and meaning per idea across the commands; every option
has help; former spellings still parse (hidden), so scripts and recorded rebuild commands keep working."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from snnbench.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def _commands() -> dict[str, click.Command]:
    """Every command, by its path (``model summary``), through the lazy group as ``snnbench --help`` finds them."""
    out: dict[str, click.Command] = {}

    def walk(group: click.Group, prefix: str, ctx: click.Context) -> None:
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            assert cmd is not None, name
            path = f"{prefix}{name}"
            if isinstance(cmd, click.Group):
                walk(cmd, path + " ", click.Context(cmd, parent=ctx, info_name=name))
            else:
                out[path] = cmd

    walk(main, "", click.Context(main, info_name="snnbench"))
    return out


COMMANDS = _commands()


def _option(command: str, name: str) -> click.Option:
    """The option of ``command`` that ``name`` (any of its spellings) parses into."""
    found = [p for p in COMMANDS[command].params if isinstance(p, click.Option) and name in p.opts + p.secondary_opts]
    assert len(found) == 1, (command, name, found)
    return found[0]


def _default(command: str, name: str) -> object:
    d = _option(command, name).default
    return tuple(d) if isinstance(d, (list, tuple)) else d


def test_every_option_has_help() -> None:
    """Each visible option of each command says what it does (today's main: --trials, --runs, --device, ... had none)."""
    missing = [f"{c} {p.opts[0]}" for c, cmd in COMMANDS.items() for p in cmd.params
               if isinstance(p, click.Option) and not p.hidden and not (p.help or "").strip()]
    assert not missing, missing


def test_the_command_list_shows_whole_phrases() -> None:
    """``snnbench --help`` lists each command by its first sentence: a whole phrase, not one cut at "e.g." (train
    was listed as "Train MATRIX (e.g.")."""
    for name in [*main.list_commands(click.Context(main)), *COMMANDS]:
        cmd = COMMANDS.get(name) or main.get_command(click.Context(main), name)
        assert cmd is not None
        text = cmd.get_short_help_str(limit=1000)
        assert text.count("(") == text.count(")") and not text.endswith(("e.g.", "i.e.")), (name, text)


@pytest.mark.parametrize("idea, uses, default", [
    # score metrics a command computes or compares: one comma-separated --scores (replay had --score, report --replay-scores)
    ("scores", [("build", "--scores"), ("replay", "--scores"), ("report", "--scores")], "sahd,hd"),
    # the one metric computed or ranked by (score had --metric)
    ("score", [("score", "--score"), ("compare", "--score"), ("report", "--score")], "sahd"),
    # images per scoring batch and batches averaged (score had --batch-size 256, --repeats 2)
    ("score batch", [("build", "--score-batch"), ("score", "--score-batch")], 64),
    ("score repeats", [("build", "--score-repeats"), ("score", "--score-repeats")], 1),
    ("score mode", [("build", "--score-mode"), ("score", "--score-mode")], "clean"),
    # the network skeleton (paper in score and model summary, bench in train and build)
    ("preset", [("build", "--preset"), ("train", "--preset"), ("score", "--preset"), ("model summary", "--preset")], "bench"),
    # the dataset computed on (score: required, model summary: cifar10)
    ("dataset", [("build", "--dataset"), ("train", "--dataset"), ("score", "--dataset"), ("model summary", "--dataset")],
     "digits"),
    # NetworkConfig overrides (model summary had --set)
    ("net", [("build", "--net"), ("model summary", "--net")], ()),
    # search runs (10 in compare, 100 in report), replay draws and sizes, correlation resamples (0 and 1000)
    ("runs", [("compare", "--runs"), ("report", "--runs")], 100),
    ("trials", [("replay", "--trials"), ("report", "--trials")], 1000),
    ("samples", [("replay", "--samples"), ("report", "--samples")], (10, 100, 1000, 5000)),
    ("bootstrap", [("correlate", "--bootstrap"), ("report", "--bootstrap")], 0),
    # accuracy reported, accuracy a search sees
    ("split", [("replay", "--split"), ("compare", "--split"), ("correlate", "--split"), ("report", "--split")], "test"),
    ("observe", [("compare", "--observe"), ("report", "--observe")], "val"),
])
def test_one_name_and_default_per_idea(idea: str, uses: list[tuple[str, str]], default: object) -> None:
    for command, name in uses:
        option = _option(command, name)
        assert option.opts[0] == name, (idea, command, option.opts)
        assert _default(command, name) == default, (idea, command)
    helps = {_option(c, n).help for c, n in uses}
    if idea not in ("scores", "score", "dataset", "preset", "split"):  # same words where the role is the same too
        assert len(helps) == 1, (idea, helps)


@pytest.mark.parametrize("command, old, new, value", [
    ("replay", "--score", "--scores", "sahd,hd,vanrossum"),
    ("report", "--replay-scores", "--scores", "sahd"),
    ("score", "--metric", "--score", "hd"),
    ("score", "--batch-size", "--score-batch", "32"),
    ("score", "--repeats", "--score-repeats", "2"),
    ("score", "--mode", "--score-mode", "release"),
    ("model summary", "--set", "--net", "pool=4"),
    ("model summary", "--batch", "--batch-size", "4"),
])
def test_former_spellings_parse_as_the_new_name_and_stay_out_of_help(command: str, old: str, new: str, value: str) -> None:
    """Scripts written with a former spelling give the same parameters as the vocabulary's name; ``--help`` shows
    only the latter."""
    cmd = COMMANDS[command]
    matrix = ["0303 0033 0003 0000"] if command in ("score", "model summary") else []
    extra = ["--out", "x"] if command == "report" else []
    a = cmd.make_context(command, [*matrix, *extra, old, value]).params
    b = cmd.make_context(command, [*matrix, *extra, new, value]).params
    assert a == b and a[_option(command, new).name] in (value, (value,), int(value) if value.isdigit() else value)
    out = CliRunner().invoke(main, [*command.split(), "--help"]).output
    assert re.search(rf"{re.escape(new)}\b", out) and not re.search(rf"{re.escape(old)}[\s,]", out), out


def test_shipped_rebuild_commands_still_parse() -> None:
    """The rebuild commands ``snnbench info`` prints for the shipped tables parse with today's options."""
    from snnbench.builders.cli import request_of
    from snnbench.table import SHIPPED, open_table

    commands = [c for path in SHIPPED.values() if path.exists() for p in open_table(path).protocols.values()
                for c in p.commands]
    assert commands
    for command in commands:
        if "/work/" not in command:  # the CIFAR-10 table's commands name an .npz this machine may lack: parsed below
            request_of(command)
        COMMANDS["build"].make_context("build", shlex.split(command)[2:])


def test_the_vocabulary_page_names_every_option() -> None:
    """docs/cli.md names every visible option of every command and every former spelling it still accepts."""
    page = DOCS.read_text()
    missing = []
    for c, cmd in COMMANDS.items():
        for p in cmd.params:
            if isinstance(p, click.Option) and p.name not in ("help",):
                for name in p.opts:
                    if name.startswith("--") and not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", page):
                        missing.append(f"{c} {name}")
    assert not missing, missing


def test_scores_all_is_every_score_of_the_table(tmp_path: Path) -> None:
    """``--scores all`` picks by every score the table holds: the same curve as naming each one."""
    import json

    from snnbench.api.benchmark import load

    names = ",".join(load().scores)
    runs = [CliRunner().invoke(main, ["replay", "-n", "10", "--trials", "20", "--json", "--scores", s]) for s in ("all", names)]
    assert all(r.exit_code == 0 for r in runs), runs[0].output
    a, b = (json.loads(r.output) for r in runs)
    assert a == b and len(a["methods"]) == len(load().scores) + 2  # each score, random choice, the oracle


def test_the_api_speaks_the_clis_words() -> None:
    """``split`` is the accuracy reported or evaluated and ``observe`` the one a search sees, in the API as on the
    command line, with the same defaults (today's main: ``compare(split=...)`` was the observed accuracy)."""
    import dataclasses
    import inspect

    from snnbench.api import CompareSettings, Oracle, run, trajectory
    from snnbench.api.correlate import correlate
    from snnbench.api.replay import replay_curve
    from snnbench.api.report import report_sections

    fields = {f.name: f.default for f in dataclasses.fields(CompareSettings)}
    assert fields["observe"] == _default("compare", "--observe") and fields["split"] == _default("compare", "--split")
    for fn in (run, Oracle):
        params = inspect.signature(fn).parameters
        assert "split" not in params and params["observe"].default == _default("compare", "--observe")
    for fn, command in ((trajectory, "compare"), (replay_curve, "replay"), (correlate, "correlate"),
                        (report_sections, "report")):
        params = inspect.signature(fn).parameters
        assert params["split"].default == _default(command, "--split"), fn.__name__
    report = inspect.signature(report_sections).parameters
    assert report["observe"].default == _default("report", "--observe")
    assert report["bootstrap"].default == _default("report", "--bootstrap")
    assert inspect.signature(correlate).parameters["bootstrap"].default == _default("correlate", "--bootstrap")
    assert report["runs"].default == _default("report", "--runs") == _default("compare", "--runs")
    assert "scores" in report and "replay_scores" not in report
