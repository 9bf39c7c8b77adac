"""Shared model configuration: camelCase on the wire, snake_case in Python."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

COUNTRY_CODE_PATTERN = r"^[A-Z]{2}$"

CountryCode = Annotated[str, Field(pattern=COUNTRY_CODE_PATTERN, description="ISO 3166-1 alpha-2 code")]


class WireModel(BaseModel):
    """A Kubernetes object we only read: unknown fields are ignored, as the API server allows."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class ApiModel(BaseModel):
    """A field of one of our CRDs: unknown fields are errors, so typos do not pass silently."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


_EXPECTED_TIMESTAMP = "expected an RFC 3339 date-time such as 2026-01-01T00:00:00Z"


def _reject_bare_date(value: object) -> object:
    # YAML turns an unquoted 2026-01-01 into a date; RFC 3339 needs the time and the offset.
    if isinstance(value, date) and not isinstance(value, datetime):
        raise ValueError(
            f"expected an RFC 3339 date-time such as 2026-01-01T00:00:00Z, got the bare date {value}"
        )
    if isinstance(value, str) and "T" not in value.upper():
        raise ValueError(f"expected an RFC 3339 date-time such as 2026-01-01T00:00:00Z, got {value!r}")
    return value


def _require_offset(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("expected an RFC 3339 date-time with a time zone offset (Z or +hh:mm)")
    return value


Timestamp = Annotated[
    datetime,
    BeforeValidator(_reject_bare_date),
    AfterValidator(_require_offset),
    Field(json_schema_extra={"format": "date-time"}),
]
