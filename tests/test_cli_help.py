"""Every command line documents itself: a description, help on every flag, and the defaults in ``--help``.

The commands are discovered, not listed: each module of ``ddpm_core.cli``, each benchmark with a
``build_parser``, and ``python app.py`` (run as a subprocess, since importing it builds the whole UI).
Each flag's help is read back from the ``--help`` text itself, cut into one block per option.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import benchmarks
import ddpm_core.cli
from ddpm_core.cli import make_parser
from ddpm_core.training import RECIPES

ROOT = Path(__file__).resolve().parents[1]
CLI_MODULES = sorted(f"ddpm_core.cli.{m.name}" for m in pkgutil.iter_modules(ddpm_core.cli.__path__))
BENCH_MODULES = sorted(f"benchmarks.{m.name}" for m in pkgutil.iter_modules(benchmarks.__path__))
OPTION_LINE = re.compile(r"^  (-\S.*?)(?:\s{2,}(\S.*))?$")  # "  --flag METAVAR   its help", help maybe below


def option_blocks(help_text: str) -> dict[str, str]:
    """The ``options:`` section of a ``--help`` text, as {longest flag: its help on one line}."""
    section = help_text.split("\noptions:\n", 1)[1].split("\n\n", 1)[0]
    blocks: dict[str, list[str]] = {}
    for line in section.splitlines():
        match = OPTION_LINE.match(line)
        if match:
            flag = max(re.findall(r"(?<![\w-])--?[\w-]+", match.group(1)), key=len)
            blocks[flag] = [match.group(2) or ""]
        else:  # a wrapped help line, indented under its option
            blocks[flag].append(line.strip())
    return {flag: " ".join(" ".join(parts).split()) for flag, parts in blocks.items()}


@pytest.fixture(autouse=True)
def fixed_width(monkeypatch: pytest.MonkeyPatch) -> None:
    """argparse wraps to the terminal's width: fix it, so the text is the same anywhere."""
    monkeypatch.setenv("COLUMNS", "100")


def help_text(parser: argparse.ArgumentParser) -> str:
    return parser.format_help()


def parser_of(module_name: str) -> argparse.ArgumentParser:
    return importlib.import_module(module_name).build_parser()


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def longest_flag(action: argparse.Action) -> str:
    return max(action.option_strings, key=len)


def commands() -> list[str]:
    """Every module that builds a command-line parser: all of ddpm_core.cli, the benchmarks that have one."""
    benches = [name for name in BENCH_MODULES if hasattr(importlib.import_module(name), "build_parser")]
    return CLI_MODULES + benches


# ---------------------------------------------------------------------------------------------
# The shared parser
# ---------------------------------------------------------------------------------------------


def test_make_parser_shows_set_defaults_and_keeps_the_examples_lines() -> None:
    doc = "Command line: do a thing.\n\n    prog --zero 1   # one\n    prog --zero 2   # two\n\nA note.\n"
    p = make_parser("prog", doc)
    p.add_argument("--zero", type=int, default=0, help="a number")
    p.add_argument("--none", default=None, help="left unset")
    p.add_argument("--switch", action="store_true", help="a switch")
    p.add_argument("--need", required=True, help="must be given")
    p.add_argument("--own", default=None, help="set elsewhere (default: from --recipe)")
    p.add_argument("--path", default="a b/c", help="with a space")
    text = help_text(p)
    blocks = option_blocks(text)
    assert blocks["--zero"] == "a number (default: 0)"  # 0 == False, yet it is a default worth showing
    assert blocks["--none"] == "left unset"
    assert blocks["--switch"] == "a switch"
    assert blocks["--need"] == "must be given"
    assert blocks["--own"] == "set elsewhere (default: from --recipe)"
    assert blocks["--path"] == "with a space (default: a b/c)"
    assert p.description == "Do a thing."
    assert "\n    prog --zero 1   # one\n    prog --zero 2   # two\n\nA note.\n" in text  # the lines as written


def test_make_parser_keeps_only_the_paragraphs_asked_for() -> None:
    p = make_parser("prog", "Summary.\n\nRun it::\n\n    prog --x\n\nA long note.", paragraphs=3)
    assert p.description == "Summary."
    assert p.epilog == "Run it:\n\n    prog --x"


# ---------------------------------------------------------------------------------------------
# Every command
# ---------------------------------------------------------------------------------------------


def test_every_command_is_found() -> None:
    found = set(commands())
    expected_cli = {"train", "sample", "evaluate", "distill", "train_classifier", "digits"}
    assert {f"ddpm_core.cli.{name}" for name in expected_cli} <= found
    assert {f"benchmarks.{name}" for name in ("bench", "crowd", "live", "recipes")} <= found


@pytest.mark.parametrize("module_name", CLI_MODULES)
def test_every_cli_module_is_a_command(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert callable(getattr(module, "build_parser", None)), f"{module_name} has no build_parser()"
    assert callable(getattr(module, "main", None)), f"{module_name} has no main(argv=None) -> int"


@pytest.mark.parametrize("module_name", commands())
def test_every_command_has_a_description_and_help_on_every_flag(module_name: str) -> None:
    parser = parser_of(module_name)
    assert parser.description and parser.description.strip(), f"{module_name}: empty description"
    assert parser.description in " ".join(help_text(parser).split())
    blocks = option_blocks(help_text(parser))
    for action in options(parser):
        assert action.help and action.help.strip(), f"{module_name}: {longest_flag(action)} has no help"
        assert blocks[longest_flag(action)], f"{module_name}: {longest_flag(action)} shows no help"


@pytest.mark.parametrize("module_name", commands())
def test_every_command_shows_its_defaults(module_name: str) -> None:
    parser = parser_of(module_name)
    blocks = option_blocks(help_text(parser))
    for action in options(parser):
        block = blocks[longest_flag(action)]
        assert "default: None" not in block and "default: False" not in block, f"{module_name}: {block}"
        if action.default is None or action.default is False or action.required:
            continue
        if "default:" in action.help:  # the help names its own default, e.g. "$GRADIO_SERVER_PORT or 7860"
            assert "default:" in block
        else:
            shown = f"(default: {action.default})"  # argparse may break a long default across lines
            assert "".join(block.split()).endswith("".join(shown.split())), f"{module_name}: {block}"


def test_train_says_which_settings_the_recipe_supplies() -> None:
    train = importlib.import_module("ddpm_core.cli.train")
    blocks = option_blocks(help_text(train.build_parser()))
    assert blocks["--recipe"].endswith("(default: fast)")
    for flag, field in train.OVERRIDES.items():
        block = blocks["--" + flag.replace("_", "-")]
        assert "default:" in block, block
        if any(field in recipe for recipe in RECIPES.values()):
            assert "--recipe" in block, block
    # the two recipes differ on the batch size and the model width; each value is named
    assert f"classic {RECIPES['classic']['batch_size']}" in blocks["--batch-size"]
    assert f"fast {RECIPES['fast']['batch_size']}" in blocks["--batch-size"]
    assert f"classic {RECIPES['classic']['preset']}" in blocks["--preset"]


@pytest.mark.parametrize(("module_name", "flag"), [
    ("ddpm_core.cli.sample", "--checkpoint"),
    ("ddpm_core.cli.evaluate", "--checkpoint"),
    ("ddpm_core.cli.evaluate", "--classifier"),
    ("ddpm_core.cli.train", "--resume"),
    ("ddpm_core.cli.distill", "--teacher"),
])  # fmt: skip
def test_checkpoint_flags_say_they_take_a_hub_id(module_name: str, flag: str) -> None:
    assert "owner/repo[@revision]" in option_blocks(help_text(parser_of(module_name)))[flag]


def test_app_help_describes_the_app_and_every_flag() -> None:
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "COLUMNS": "100"}
    done = subprocess.run(
        [sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    description = done.stdout.split("\n\n")[1]
    assert "DDPM Playground" in description
    blocks = option_blocks(done.stdout)
    assert {"--host", "--port", "--share", "--torch-threads"} <= set(blocks)
    for flag, block in blocks.items():
        assert block, f"{flag} has no help"
    for line in done.stdout.split("\noptions:\n", 1)[1].splitlines():
        match = OPTION_LINE.match(line)
        takes_a_value = match and re.search(r"--[\w-]+ [A-Z_]+", match.group(1))
        if takes_a_value:  # a flag with a value has a default (a switch is simply off)
            flag = match.group(1).split()[0]
            assert "default:" in blocks[flag], f"{flag}: {blocks[flag]}"


# ---------------------------------------------------------------------------------------------
# Console scripts
# ---------------------------------------------------------------------------------------------


def console_scripts() -> dict[str, str]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_every_console_script_runs_a_command_with_a_parser() -> None:
    for name, target in console_scripts().items():
        module_name, _, function = target.partition(":")
        module = importlib.import_module(module_name)
        assert callable(getattr(module, function, None)), f"{name} → {target}: no such function"
        assert callable(getattr(module, "build_parser", None)), f"{name} → {module_name} has no build_parser()"


def test_every_cli_module_has_a_console_script() -> None:
    targets = {target.partition(":")[0] for target in console_scripts().values()}
    missing = [name for name in CLI_MODULES if name not in targets]
    assert not missing, f"pyproject.toml [project.scripts] names no script for {missing}"
