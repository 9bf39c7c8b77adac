"""docs/install.md: every shell block is named and run (or checked) by a named test."""

from __future__ import annotations

import ast
import textwrap
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


def test_the_chart_readme_shows_only_commands_of_the_install_guide() -> None:
    readme = (HERE.parents[1] / "charts" / "computegate" / "README.md").read_text()
    commands = [
        line.strip()
        for block in readme.split("```sh\n")[1:]
        for line in block.split("```", 1)[0].splitlines()
        if line.strip()
    ]
    documented = {line.strip() for body in docs.blocks().values() for line in body.splitlines()}
    assert commands, "the chart README shows how to install"
    assert set(commands) <= documented


def test_the_readme_install_section_shows_only_named_blocks_of_the_install_guide_verbatim() -> None:
    section = docs.readme_install_section()
    readme_blocks = {
        match.group(1): textwrap.dedent(match.group(3)) for match in docs._NAMED.finditer(section)
    }
    assert {"helm-install", "manifests-apply", "kind-demo", "emergency-audit"} <= set(readme_blocks)
    assert section.count("```sh\n") == len(readme_blocks), "every README install command is a named block"
    guide = docs.blocks()
    for name, body in readme_blocks.items():
        assert body == guide[name], f"README block {name} differs from docs/install.md"
