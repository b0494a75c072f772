"""The package's shape, kept: layers (import-linter's contract in pyproject.toml), no import cycle, mypy clean,
modules and functions of a readable size, sorted __all__."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import engine
import engine.widgets
from conftest import ROOT

ENGINE = ROOT / "engine"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# The argparse builder is one long declaration.
LONG_FUNCTIONS = {("engine/cli.py", "build_parser")}

# Every cycle among the package's modules at run time (lazy imports included, TYPE_CHECKING ones not), as JSON.
CYCLES = """
import json, grimp
graph = grimp.build_graph("engine", exclude_type_checking_imports=True)
index, low, stack, on_stack, cycles = {}, {}, [], set(), []
def visit(module):  # Tarjan's strongly connected components
    index[module] = low[module] = len(index)
    stack.append(module)
    on_stack.add(module)
    for other in graph.find_modules_directly_imported_by(module):
        if other not in index:
            visit(other)
            low[module] = min(low[module], low[other])
        elif other in on_stack:
            low[module] = min(low[module], index[other])
    if low[module] == index[module]:
        component = []
        while True:
            other = stack.pop()
            on_stack.discard(other)
            component.append(other)
            if other == module:
                break
        if len(component) > 1:
            cycles.append(sorted(component))
for module in sorted(graph.modules):
    if module not in index:
        visit(module)
print(json.dumps(cycles))
"""


def _lint_imports(package_parent: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the project's contract, on the `engine` package found in package_parent."""
    return subprocess.run([str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=package_parent, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(package_parent)})


def _cycles(package_parent: Path) -> list[list[str]]:
    done = subprocess.run([sys.executable, "-c", CYCLES], cwd=package_parent, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(package_parent)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def upward_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the package whose html.py (layer L2) imports policy (L6) inside a function."""
    parent = tmp_path_factory.mktemp("upward")
    shutil.copytree(ENGINE, parent / "engine", ignore=shutil.ignore_patterns("__pycache__"))
    html = parent / "engine" / "html.py"
    html.write_text(html.read_text(encoding="utf-8") + "\n\ndef _upward() -> object:\n"
                    "    from .policy import Policy  # an upward import, and lazy\n\n    return Policy\n",
                    encoding="utf-8")
    return parent


def test_the_layers_contract_holds():
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "engine layers: run-time imports point down KEPT" in done.stdout
    assert "service layers: run-time imports point down KEPT" in done.stdout
    assert "Contracts: 2 kept, 0 broken." in done.stdout


def test_every_module_is_in_a_layer():
    """A module the contract does not name is held to nothing: each one must be in a layer."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    contracts = {c["containers"][0]: c["layers"] for c in config["contracts"]}
    for container, layers in contracts.items():
        named = {name.strip() for layer in layers for name in re.split(r"[|:]", layer)}
        folder = ROOT.joinpath(*container.split("."))
        present = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
        present |= {p.parent.name for p in folder.glob("*/__init__.py")}
        assert named == present, container


def test_an_upward_import_breaks_the_contract(upward_copy):
    done = _lint_imports(upward_copy)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "engine layers: run-time imports point down BROKEN" in done.stdout
    assert "engine.html -> engine.policy" in done.stdout


def test_no_import_cycle_among_the_modules():
    assert _cycles(ROOT) == []


def test_a_lazy_import_cycle_is_found(upward_copy):
    # policy imports html at module top, so html's lazy import of policy closes a cycle.
    assert any({"engine.html", "engine.policy"} <= set(cycle) for cycle in _cycles(upward_copy))


def test_mypy_finds_no_type_error_in_engine():
    done = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def _sources() -> list[Path]:
    return sorted(ENGINE.rglob("*.py"))


def test_no_module_is_longer_than_400_lines():
    long = {p.relative_to(ROOT).as_posix(): n for p in _sources()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_no_function_is_longer_than_60_lines():
    long = {}
    for path in _sources():
        name = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (name, node.name) not in LONG_FUNCTIONS:
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{name}:{node.lineno} {node.name}"] = lines
    assert long == {}


@pytest.mark.parametrize("package", [engine, engine.widgets], ids=["engine", "engine.widgets"])
def test_all_is_sorted_and_complete(package):
    assert package.__all__ == sorted(package.__all__)
    assert all(hasattr(package, name) for name in package.__all__)
