"""The built-in catalog shipped as package data: accelerator profiles, country groups, default
rules, bandwidth controls and the remote-user list.

Read once per process; every figure and rule in the data files carries its source
(docs/catalog.md, docs/regulation.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml
from pydantic import TypeAdapter

from computegate.engine.state import Catalog
from computegate.models.base import CountryCode
from computegate.models.resources import AcceleratorProfileSpec, BandwidthControl, PolicyRule

_COUNTRY: TypeAdapter[str] = TypeAdapter(CountryCode)


def _load(name: str) -> Any:
    return yaml.safe_load((resources.files("computegate") / "data" / name).read_text(encoding="utf-8"))


@cache
def builtin_catalog() -> Catalog:
    accelerators = _load("accelerators.yaml")
    groups = _load("country_groups.yaml")
    return Catalog(
        profiles={
            entry["name"]: AcceleratorProfileSpec.model_validate(entry["spec"])
            for entry in accelerators["profiles"]
        },
        country_groups={name: frozenset(codes) for name, codes in groups["groups"].items()},
        rules=tuple(PolicyRule.model_validate(rule) for rule in groups["rules"]),
        bandwidth_controls=tuple(
            BandwidthControl.model_validate(entry["control"])
            for entry in _load("bandwidth_controls.yaml")["controls"]
        ),
    )


@dataclass(frozen=True)
class JurisdictionList:
    """A named list of jurisdictions from a regulation, with its source (e.g. the remote-user list)."""

    name: str
    source: str
    effective: str
    jurisdictions: tuple[CountryCode, ...]


@cache
def remote_user_jurisdictions() -> JurisdictionList:
    """The default of `computegate report remote-users --jurisdictions` (data/remote_users.yaml)."""
    data = _load("remote_users.yaml")
    codes = tuple(_COUNTRY.validate_python(code) for code in data["jurisdictions"])
    return JurisdictionList(data["name"], data["source"], str(data["effective"]), codes)
