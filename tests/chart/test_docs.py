"""docs/install.md: every shell block is named and run (or checked) by a named test."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.chart import docs

HERE = Path(__file__).parent


def _test_functions(file: str) -> set[str]:
    tree = ast.parse((HERE / file).read_text())
    return {
        node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    }


def test_every_shell_block_of_the_install_guide_is_named() -> None:
    assert docs.unnamed_block_count() == 0
    assert len(docs.blocks()) >= 10


def test_every_shell_block_of_the_install_guide_is_exercised_by_an_existing_test() -> None:
    assert set(docs.blocks()) == set(docs.EXERCISED)
    for name, (file, function) in docs.EXERCISED.items():
        assert function in _test_functions(file), f"block {name}: {file}::{function} does not exist"


def test_install_guide_names_the_test_file_of_every_row_it_claims() -> None:
    text = docs.INSTALL_MD.read_text()
    claimed = {word.strip("`") for word in text.split() if word.startswith("`tests/chart/test_")}
    assert claimed, "the 'What is tested where' table names no test file"
    for path in claimed:
        assert (HERE.parents[1] / path).is_file(), path
