"""Kubernetes resource quantities (``"8"``, ``8``, ``"500m"``, ``"1Ki"``) as exact fractions."""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

_SUFFIXES: dict[str, Fraction] = {
    "": Fraction(1),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}
_EXPECTED = 'expected a Kubernetes quantity such as 8 or "8"'
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$")


def parse_quantity(value: object) -> Fraction:
    """Parse a quantity as the API server does; a negative one is an input error here."""
    if isinstance(value, str):
        return _parse_string(value)
    if isinstance(value, bool):
        raise ValueError(f"{_EXPECTED}, got {value!r}")
    if isinstance(value, Fraction):
        parsed = value
    elif isinstance(value, int):
        parsed = Fraction(value)
    elif isinstance(value, float):
        parsed = Fraction(str(value))
    else:
        raise ValueError(f"{_EXPECTED}, got {type(value).__name__}")
    return _not_negative(parsed, value)


@lru_cache(maxsize=4096)
def _parse_string(value: str) -> Fraction:
    # Cached: a pod's cpu and memory strings repeat across admissions, and parsing them was
    # most of the cost of reading a pod (docs/benchmarks.md). Fractions are immutable.
    match = _QUANTITY.match(value.strip())
    if not match:
        raise ValueError(f"{_EXPECTED}, got {value!r}")
    number, exponent, suffix = match.groups()
    parsed = Fraction(number)
    parsed *= Fraction(10) ** int(exponent[1:]) if exponent else _SUFFIXES[suffix or ""]
    return _not_negative(parsed, value)


def _not_negative(parsed: Fraction, value: object) -> Fraction:
    if parsed < 0:
        raise ValueError(f"a resource quantity cannot be negative, got {value!r}")
    return parsed


def _serialize(value: Fraction) -> int | str:
    return int(value) if value.denominator == 1 else f"{int(value * 1000)}m"


Quantity = Annotated[Fraction, BeforeValidator(parse_quantity), PlainSerializer(_serialize)]
