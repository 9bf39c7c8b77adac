"""The regulation the built-in data encodes: every control, group and list names its source.

Read as the installed package reads them (importlib.resources), and compared with
docs/regulation.md, so that the page an admin reads is the data that runs.
"""

from __future__ import annotations

import re
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from computegate.catalog import builtin_catalog, remote_user_jurisdictions
from computegate.models import BandwidthControl

REGULATION_MD = Path(__file__).resolve().parents[2] / "docs" / "regulation.md"
_DAY = re.compile(r"^\d{4}-\d{2}(-\d{2})?$")


def _data(name: str) -> Any:
    return yaml.safe_load((resources.files("computegate") / "data" / name).read_text(encoding="utf-8"))


def _is_text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _is_date(value: object) -> bool:
    if not isinstance(value, str) or not _DAY.match(value):
        return False
    date.fromisoformat(value if len(value) == 10 else f"{value}-01")
    return True


CONTROLS = _data("bandwidth_controls.yaml")["controls"]


@pytest.mark.parametrize("entry", CONTROLS, ids=[entry["control"]["name"] for entry in CONTROLS])
def test_every_built_in_bandwidth_control_names_its_source_and_dates(entry: dict[str, Any]) -> None:
    assert set(entry) <= {"control", "effective", "retrieved", "sources", "notes"}
    control = BandwidthControl.model_validate(entry["control"])
    assert _is_text(control.source)
    assert _is_date(entry["effective"]) and _is_date(entry["retrieved"])
    assert entry["sources"] and all(_is_text(text) for text in entry["sources"].values())


def test_the_catalog_carries_exactly_the_controls_of_the_data_file() -> None:
    assert [c.name for c in builtin_catalog().bandwidth_controls] == [e["control"]["name"] for e in CONTROLS]


def test_every_built_in_country_group_names_its_source() -> None:
    groups = _data("country_groups.yaml")
    assert _is_text(groups["source"]) and _is_date(groups["retrieved"])
    assert groups["sources"] and all(_is_text(text) for text in groups["sources"])
    for name in groups["groups"]:
        assert _is_text(groups["notes"].get(name)), f"group {name} has no note on its source"


def test_the_remote_user_list_names_its_source_and_date() -> None:
    data = _data("remote_users.yaml")
    assert _is_text(data["name"]) and _is_text(data["source"])
    assert _is_date(str(data["effective"])) and _is_date(data["retrieved"])
    assert remote_user_jurisdictions().jurisdictions == tuple(data["jurisdictions"])


# ----- docs/regulation.md says what the data says -----


def _documented_groups() -> dict[str, set[str]]:
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+) \|$", REGULATION_MD.read_text(), flags=re.MULTILINE)
    return {name: set(re.findall(r"\b[A-Z]{2}\b", members.split("(")[0])) for name, members in rows}


def test_the_regulation_page_lists_every_group_as_the_data_has_it() -> None:
    groups = {name: set(codes) for name, codes in _data("country_groups.yaml")["groups"].items()}
    assert _documented_groups() == groups


def test_the_regulation_page_names_every_control_and_the_remote_user_list() -> None:
    text = REGULATION_MD.read_text()
    for entry in CONTROLS:
        control = entry["control"]
        assert control["name"] in text
        assert f"jurisdictions: [{', '.join(control['jurisdictions'])}]" in text
        for key in ("dramGBps", "ioGBps", "combinedGBps"):
            if key in control:
                assert f"{key}: {control[key]}" in text
    assert ", ".join(remote_user_jurisdictions().jurisdictions) in text


def test_the_regulation_page_is_linked_from_the_readme_and_the_design() -> None:
    root = REGULATION_MD.parents[1]
    assert "(docs/regulation.md)" in (root / "README.md").read_text()
    assert "(regulation.md)" in (root / "docs" / "design.md").read_text()
