"""The usage record (DESIGN.md "After admission"), pure: pods' run intervals in, per tenant and
period (a day by default) the controlled TPP-hours and accelerator-hours per license out, each
record chained by hash to the one before; and the check of such a chain.

A record's ``hash`` is SHA-256 over its canonical JSON (sorted keys, no spaces) without the
``hash`` field, and that JSON holds ``previousHash``: editing, dropping or reordering a record
breaks the chain at that point (``verify_chain``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = [
    "GENESIS",
    "Interval",
    "Problem",
    "chain_record",
    "heads_in_audit_log",
    "parse_head",
    "record_hash",
    "usage_by_license",
    "verify_chain",
]

GENESIS = "0" * 64  # the previousHash of the first record


@dataclass(frozen=True)
class Interval:
    """One pod's run under a license: from its start until it ended (None: still running)."""

    uid: str
    tenant: str
    license: str
    tpp: float  # controlled TPP of the pod
    accelerators: float  # controlled accelerators of the pod
    start: datetime
    end: datetime | None = None

    def seconds_within(self, start: datetime, end: datetime) -> float:
        """How long it ran inside [start, end)."""
        stop = end if self.end is None else min(self.end, end)
        return max(0.0, (stop - max(self.start, start)).total_seconds())


def usage_by_license(
    intervals: Iterable[Interval], tenant: str, start: datetime, end: datetime
) -> dict[str, dict[str, float]]:
    """The tenant's controlled TPP-hours and accelerator-hours per license within [start, end)."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: {"tppHours": 0.0, "acceleratorHours": 0.0})
    for interval in intervals:
        if interval.tenant != tenant:
            continue
        seconds = interval.seconds_within(start, end)
        if seconds <= 0:
            continue
        figures = out[interval.license]
        figures["tppHours"] += interval.tpp * seconds / 3600
        figures["acceleratorHours"] += interval.accelerators * seconds / 3600
    return {name: {k: round(v, 6) for k, v in figures.items()} for name, figures in sorted(out.items())}


def _canonical(record: Mapping[str, Any]) -> bytes:
    body = {key: value for key, value in record.items() if key != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical(record)).hexdigest()


def chain_record(content: Mapping[str, Any], *, sequence: int, previous: str) -> dict[str, Any]:
    """The record as stored: the content, its place in the chain, and its hash."""
    record = {**content, "sequence": sequence, "previousHash": previous}
    return {**record, "hash": record_hash(record)}


@dataclass(frozen=True)
class Problem:
    sequence: int | None
    name: str
    what: str

    def __str__(self) -> str:
        where = f"record {self.sequence} ({self.name})" if self.sequence is not None else self.name
        return f"{where}: {self.what}"


def verify_chain(
    records: Sequence[tuple[str, Mapping[str, Any]]],
    *,
    heads: Iterable[tuple[int, str]] = (),
    allow_truncated_start: bool = True,
) -> list[Problem]:
    """Check a chain of (name, record) pairs; ``heads``: (sequence, hash) pairs written elsewhere
    (the API server's audit log) that the chain must contain. Records are taken in the order of
    their ``sequence``; an empty list means the chain holds.

    ``allow_truncated_start``: the oldest record may follow one that retention removed (its
    previousHash is then not checked against anything)."""
    problems: list[Problem] = []
    ordered = sorted(records, key=lambda pair: int(pair[1].get("sequence", -1)))
    by_sequence: dict[int, str] = {}
    previous_hash: str | None = None
    previous_sequence: int | None = None
    for name, record in ordered:
        sequence = int(record.get("sequence", -1))
        if sequence in by_sequence:
            problems.append(Problem(sequence, name, "a second record with this sequence number"))
            continue
        if record_hash(record) != record.get("hash"):
            problems.append(Problem(sequence, name, "edited: its content does not match its hash"))
        if previous_sequence is None:
            if sequence != 0 and not allow_truncated_start:
                problems.append(Problem(sequence, name, f"records 0..{sequence - 1} are missing"))
            elif sequence == 0 and record.get("previousHash") != GENESIS:
                problems.append(Problem(sequence, name, "the first record does not start the chain"))
        else:
            if sequence != previous_sequence + 1:
                problems.append(
                    Problem(
                        sequence, name, f"missing: records {previous_sequence + 1}..{sequence - 1} are gone"
                    )
                )
            elif record.get("previousHash") != previous_hash:
                problems.append(
                    Problem(
                        sequence,
                        name,
                        "out of order or replaced: previousHash is not the hash of the record before",
                    )
                )
        by_sequence[sequence] = str(record.get("hash"))
        previous_hash, previous_sequence = str(record.get("hash")), sequence
    for sequence, digest in heads:
        found = by_sequence.get(sequence)
        if found is None:
            if previous_sequence is None or sequence > previous_sequence:
                problems.append(
                    Problem(sequence, "audit log", "missing: the audit log saw this record as the head")
                )
        elif found != digest:
            problems.append(
                Problem(
                    sequence, "audit log", "the audit log saw a different hash for this record: rewritten"
                )
            )
    return problems


_HEAD = re.compile(r"^([0-9]+):([0-9a-f]{64})$")


def parse_head(value: object) -> tuple[int, str] | None:
    found = _HEAD.match(str(value or ""))
    return (int(found.group(1)), found.group(2)) if found else None


def heads_in_audit_log(lines: list[str]) -> list[tuple[int, str]]:
    """The chain heads the API server's audit log recorded (audit annotations of admissions)."""
    found: set[tuple[int, str]] = set()
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        for key, value in (event.get("annotations") or {}).items():
            if key.endswith("/usage-chain-head"):
                head = parse_head(value)
                if head is not None:
                    found.add(head)
    return sorted(found)
