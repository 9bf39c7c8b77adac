"""The built-in catalog shipped as package data: accelerator profiles and country groups.

Read once per process; every figure in the data files carries its source (docs/catalog.md).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml

from computegate.engine.state import Catalog
from computegate.models.resources import AcceleratorProfileSpec, PolicyRule


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
    )
