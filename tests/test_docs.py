"""The README's and docs/*.md's examples run as written.

* Every ```python block of a page runs, the page's blocks in order as one script (later blocks use earlier names),
  from the repository root against the shipped tables, in a fresh interpreter.
* Every line of a ```bash block runs in bash from the repository root, its ``&&`` parts each checked: a
  ``snnbench ...`` command runs and must exit 0 with no traceback, unless its line says ``# (slow: ...)``: then it
  is parsed as the CLI would parse it (every option and argument converted and validated, nothing run); ``pip
  install`` of this project must name extras that ``pyproject.toml`` defines; ``python -m pytest`` is this suite.
  Anything else fails the test, so a new kind of command gets a check before it is documented.
* Every ``snnbench ...`` line of a synopsis block (no language, or ``text``) and every inline ``snnbench ...`` code
  span names a command that exists and only options that command takes; one without placeholders (``MATRIX``,
  ``...``, ``[``, ``|``) also parses (its values converted and validated; an argument, or the value of a last
  option, left out is allowed: prose names an option without a whole command).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest

from snnbench.cli import main

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
SLOW = "# (slow"


def _blocks(page: Path, languages: tuple[str, ...]) -> list[tuple[int, str]]:
    """``(line, body)`` of every fenced block of ``page`` in one of ``languages``."""
    text = page.read_text()
    return [(text[:m.start()].count("\n") + 2, m.group(2)) for m in FENCE.finditer(text) if m.group(1) in languages]


def _env(tmp: Path) -> dict[str, str]:
    """The environment examples run in: the test's interpreter first on PATH, no table named, a scratch HOME."""
    env = {k: v for k, v in os.environ.items() if k != "SNNBENCH_TABLE"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(tmp)
    env["MPLBACKEND"] = "Agg"
    return env


def _where(page: Path, line: int) -> str:
    return f"{page.relative_to(ROOT)}:{line}"


PYTHON_PAGES = [p for p in PAGES if _blocks(p, ("python",))]


@pytest.mark.slow
@pytest.mark.parametrize("page", PYTHON_PAGES, ids=[p.name for p in PYTHON_PAGES])
def test_python_examples_run_as_written(page: Path, tmp_path: Path) -> None:
    script = "".join(f"# --- {_where(page, line)}\n{body}\n" for line, body in _blocks(page, ("python",)))
    path = tmp_path / f"{page.stem}_examples.py"
    path.write_text(script)
    done = subprocess.run([sys.executable, str(path)], cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True,
                          timeout=600)
    where = {n + 1: text for n, text in enumerate(script.splitlines())}
    assert done.returncode == 0, f"{page.name} examples failed:\n{done.stderr[-3000:]}\n(script lines: {where})"


def _bash_lines() -> list[tuple[str, str]]:
    """``(where, line)`` of every command line of every bash block (comments and blank lines left out)."""
    out = []
    for page in PAGES:
        for start, body in _blocks(page, ("bash", "sh", "shell")):
            for k, line in enumerate(body.splitlines()):
                if line.strip() and not line.lstrip().startswith("#"):
                    out.append((_where(page, start + k), line))
    return out


def _extras() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def _resolve(args: list[str], where: str = "") -> tuple[click.Command, list[str], click.Context]:
    """The command ``snnbench ARGS`` names, its own arguments and its context (groups walked as the CLI walks them)."""
    command: click.Command = main
    ctx = click.Context(main, info_name="snnbench")
    while isinstance(command, click.Group) and args and not args[0].startswith("-"):
        sub = command.get_command(ctx, args[0])
        assert sub is not None, f"{where}: no command {args[0]!r}"
        ctx = click.Context(sub, info_name=args[0], parent=ctx)
        command, args = sub, args[1:]
    return command, args, ctx


def _parse(args: list[str]) -> None:
    """Parse ``snnbench ARGS`` as the CLI would (types converted, choices and required arguments checked), run nothing."""
    command, rest, ctx = _resolve(args)
    try:
        command.make_context(ctx.info_name, rest, parent=ctx.parent)
    except click.exceptions.Exit as done:  # an eager option (--help, --version) ends the parse, successfully
        assert done.exit_code == 0, args


def _check_setup(part: str) -> bool:
    """A ``pip install`` / ``python -m pytest`` part of a set-up line: checked here, not run; False for other parts."""
    words = shlex.split(part)
    if words[:2] == ["pip", "install"]:
        for word in words[2:]:
            match = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", word)
            if match and match.group(1):
                missing = set(match.group(1).split(",")) - _extras()
                assert not missing, f"`{part}`: pyproject.toml defines no extra {', '.join(sorted(missing))}"
        return True
    return words[:3] == ["python", "-m", "pytest"]


BASH = _bash_lines()


@pytest.mark.slow
@pytest.mark.parametrize("where,line", BASH, ids=[w for w, _ in BASH])
def test_shell_commands_run_as_written(where: str, line: str, tmp_path: Path) -> None:
    command, _, comment = line.partition(" # ")
    slow = (" # " + comment).startswith(" " + SLOW)
    for part in (p.strip() for p in command.split("&&")):
        if part.startswith("snnbench ") or part == "snnbench":
            if slow:
                _parse(shlex.split(part)[1:])
                continue
            done = subprocess.run(["bash", "-c", part], cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True,
                                  timeout=600)
            assert done.returncode == 0, f"{where}: `{part}` exited {done.returncode}:\n{done.stderr[-3000:]}"
            assert "Traceback" not in done.stderr, f"{where}: `{part}`:\n{done.stderr[-3000:]}"
        else:
            assert _check_setup(part), f"{where}: `{part}`: tests/test_docs.py does not know how to check this command"


def _mentions() -> list[tuple[str, str]]:
    """``(where, text)`` of every ``snnbench ...`` synopsis line and inline code span of the pages."""
    out = []
    for page in PAGES:
        text = page.read_text()
        for start, body in _blocks(page, ("", "text")):
            for k, line in enumerate(body.splitlines()):
                if line.startswith("snnbench "):
                    out.append((_where(page, start + k), line))
        prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
        for m in re.finditer(r"`(snnbench [^`]+)`", prose):
            out.append((_where(page, prose[:m.start()].count("\n") + 1), m.group(1)))
    return out


MENTIONS = _mentions()


@pytest.mark.parametrize("where,text", MENTIONS, ids=[w for w, _ in MENTIONS])
def test_documented_commands_and_options_exist(where: str, text: str) -> None:
    words = text.split()[1:]
    heads = words[0].split("/") if words else []
    for head in heads:  # `snnbench compare/report --algorithms`: both
        command, args, ctx = _resolve([head, *words[1:]], f"{where}: `{text}`")
        options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)} | {"--help", "-h"}
        for option in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", " ".join(args)):
            assert option in options, f"{where}: `{text}`: `{ctx.command_path}` takes no option {option}"
        if not re.search(r"[A-Z]{2,}|\.\.\.|[\[\]|<>]", text):  # no placeholder: the values must parse too
            try:
                _parse(shlex.split(text)[1:] if len(heads) == 1 else [head, *words[1:]])
            except click.MissingParameter:  # `snnbench score --mode release`: an option named in prose
                pass
            except click.BadOptionUsage as e:  # `snnbench train --seeds`: likewise, the option's value left out
                assert "requires" in str(e) and text.endswith(e.option_name), f"{where}: `{text}`: {e}"
