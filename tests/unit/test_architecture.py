"""The package's shape, checked: no import cycles, the public API of the engine and the models is
exactly what their ``__all__`` says (as httpx checks its own), and no module is over 450 lines."""

from __future__ import annotations

import importlib
import tomllib
import types
from pathlib import Path

import grimp
import pytest

import computegate

MAX_MODULE_LINES = 450
PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"


def test_no_module_of_ours_imports_one_that_imports_it_back() -> None:
    graph = grimp.build_graph("computegate")
    cycles = sorted(
        {
            tuple(sorted((module, imported)))
            for module in graph.modules
            for imported in graph.find_modules_directly_imported_by(module)
            if imported.startswith("computegate") and graph.chain_exists(importer=imported, imported=module)
        }
    )
    assert cycles == []


@pytest.mark.parametrize("package", ["computegate.engine", "computegate.models"])
def test_the_public_names_are_exactly_those_exported(package: str) -> None:
    module = importlib.import_module(package)
    exported = set(module.__all__)
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not (isinstance(value, types.ModuleType) and name not in exported)
    } - {"annotations"}
    assert public == exported
    assert all(hasattr(module, name) for name in exported)


def test_no_module_of_ours_is_over_450_lines() -> None:
    package = Path(computegate.__file__).parent
    lengths = {
        str(path.relative_to(package.parent)): len(path.read_text(encoding="utf-8").splitlines())
        for path in sorted(package.rglob("*.py"))
    }
    assert "computegate/engine/decide.py" in lengths  # the walk found the package's modules
    over = {module: lines for module, lines in lengths.items() if lines > MAX_MODULE_LINES}
    assert over == {}, f"modules over {MAX_MODULE_LINES} lines (split them along a seam): {over}"


def test_every_module_has_its_place_in_a_layer_contract() -> None:
    """import-linter checks only the modules its contracts name: a new module left out of the
    layers (pyproject.toml) would be free to import anything."""
    contracts = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["importlinter"]["contracts"]
    layered = {
        name.strip()
        for contract in contracts
        if contract["type"] == "layers"
        for layer in contract["layers"]
        for name in layer.split("|")
    }
    graph = grimp.build_graph("computegate")
    modules = {module for module in graph.modules if module != "computegate"}
    unplaced = sorted(
        module
        for module in modules
        if module not in {"computegate.__main__"}  # the entry point: `python -m computegate` → cli
        and not any(module == name or module.startswith(name + ".") for name in layered)
    )
    assert "computegate.webhook.review" in modules  # the graph holds the package's modules
    assert unplaced == []
    # Inside the webhook each module has a layer of its own, not just the package's.
    webhook = {module for module in modules if module.startswith("computegate.webhook.")}
    assert sorted(webhook - layered) == []
