"""The layers stay apart: the core never reaches up into the UI, and only the UI talks to gradio.

Two independent checks for the first rule: reading every core module's source (import statements and
the module names handed to importlib / __import__), and importing every core module in a fresh
interpreter and looking at what got loaded.
"""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import ddpm_core

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "ddpm_core"
UI_MODULES = ("gradio", "gradio_client", "app", "ddpm_ui")
IMPORT_CALLS = {"import_module", "__import__", "find_spec", "import_string"}


def imported_names(source: str) -> set[str]:
    """Top-level module names a source file imports, including string arguments of importlib-style calls."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in IMPORT_CALLS:
                for arg in node.args[:1]:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        names.add(arg.value.split(".")[0])
    return names


def test_the_source_reader_sees_every_kind_of_import() -> None:
    source = (
        "import gradio as gr\nfrom app import demo\nimport importlib\n"
        "importlib.import_module('ddpm_ui.state')\n__import__('gradio_client')\nfrom . import sibling\n"
    )
    assert imported_names(source) >= {"gradio", "app", "ddpm_ui", "gradio_client"}
    assert "sibling" not in imported_names(source)


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_core_module_imports_the_ui(path: Path) -> None:
    reached = imported_names(path.read_text()) & set(UI_MODULES)
    assert not reached, f"{path.relative_to(ROOT)} imports {sorted(reached)}"


def test_importing_every_core_module_loads_no_ui() -> None:
    modules = [m.name for m in pkgutil.walk_packages(ddpm_core.__path__, "ddpm_core.")]
    assert {"ddpm_core.sampling", "ddpm_core.cli.sample", "ddpm_core.paths"} <= set(modules)
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {UI_MODULES!r})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_only_app_and_the_ui_package_import_gradio() -> None:
    outside = [p for p in ROOT.rglob("*.py") if p.parts[len(ROOT.parts)] not in ("tests", "ddpm_ui", ".venv")]
    importers = sorted(
        str(p.relative_to(ROOT)) for p in outside if p.name != "app.py" and "gradio" in imported_names(p.read_text())
    )
    assert importers == []


def test_only_the_paths_module_knows_where_the_core_sits_on_disk() -> None:
    modules = [p for p in CORE.rglob("*.py") if p.name != "paths.py"]
    knowing = sorted(str(p.relative_to(ROOT)) for p in modules if "Path(__file__" in p.read_text())
    assert knowing == []
