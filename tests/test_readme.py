"""The README's formula → function table and command lines point at code that exists."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def formula_table() -> list[str]:
    """The rows of the "Formula → function" table (header and rule excluded)."""
    section = README.split("## Formula → function", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and "`" in line]


def test_every_function_in_the_formula_table_exists_and_cites_its_source() -> None:
    rows = formula_table()
    assert len(rows) >= 15
    for row in rows:
        names = re.findall(r"`([\w.]+)`", row.rsplit("|", 2)[1])
        module_name = None
        for name in names:
            if name.startswith("ddpm_core."):
                module_name, _, attr = name.rpartition(".")
            else:  # a bare name continues the module of the previous one
                attr = name
            assert module_name is not None, row
            target = getattr(importlib.import_module(module_name), attr)
            assert (target.__doc__ or "").strip(), f"{module_name}.{attr} has no docstring"


def test_every_python_m_command_in_the_readme_names_a_module_that_exists() -> None:
    commands = set(re.findall(r"python -m ([\w.]+)", README))
    assert {"ddpm_core.cli.train", "ddpm_core.cli.sample", "benchmarks.bench"} <= commands
    for module in commands - {"pytest", "pip"}:
        assert importlib.util.find_spec(module) is not None, module


def test_every_torchrun_command_in_the_readme_runs_a_module_that_exists() -> None:
    modules = re.findall(r"torchrun [^\n]*?-m ([\w.]+)", README.replace("\\\n", " "))
    assert "ddpm_core.cli.train" in modules and len(modules) >= 2
    for module in modules:
        assert importlib.util.find_spec(module) is not None, module
