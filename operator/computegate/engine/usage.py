"""The usage record (DESIGN.md "After admission"), pure: pods' run intervals and admissions in,
per tenant and period (a day by default) the controlled TPP-hours and accelerator-hours per
license, the lowest cap each license had in the period, the pods admitted and the pods found in
violation out (continuing an earlier leader's checkpoint of the period), each record chained by
hash to the one before; and the check of such a chain.

A record's ``hash`` is SHA-256 over its canonical JSON (sorted keys, no spaces) without the
``hash`` field, and that JSON holds ``previousHash``: editing, dropping or reordering a record
breaks the chain at that point (``verify_chain``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "GENESIS",
    "Admission",
    "Cap",
    "Checkpoint",
    "Interval",
    "Problem",
    "TenantCount",
    "chain_record",
    "count_period",
    "heads_in_audit_log",
    "parse_head",
    "record_content",
    "record_hash",
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


@dataclass(frozen=True)
class Admission:
    """A pod a decision stamped, counted once, in the period it was created in."""

    uid: str
    tenant: str
    code: str
    created: datetime


@dataclass(frozen=True)
class Cap:
    """A license's caps (``maxAccelerators`` None: no cap on the count)."""

    max_tpp: float
    max_accelerators: float | None = None

    def lowest(self, other: Cap | None) -> Cap:
        """The stricter of the two, cap by cap: a period's record states the lowest cap a
        license had in it, the bound that held at some moment of the period."""
        if other is None:
            return self
        counts = [c for c in (self.max_accelerators, other.max_accelerators) if c is not None]
        return Cap(min(self.max_tpp, other.max_tpp), min(counts) if counts else None)


@dataclass
class TenantCount:
    """One tenant's figures within a period: per license, TPP-seconds and accelerator-seconds and
    the lowest cap seen; the pods created, by their stamped code; the pods found in violation
    (enforced), by code."""

    seconds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(lambda: [0.0, 0.0]))
    admissions: Counter[str] = field(default_factory=Counter)
    caps: dict[str, Cap] = field(default_factory=dict)  # license → the lowest cap seen
    violations: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # code → pod uids

    def hours(self) -> dict[str, dict[str, float]]:
        """Per license, ``tppHours`` and ``acceleratorHours`` as the record states them."""
        return {
            name: {"tppHours": round(tpp / 3600, 6), "acceleratorHours": round(count / 3600, 6)}
            for name, (tpp, count) in sorted(self.seconds.items())
            if tpp > 0 or count > 0
        }

    def sight(self, license_name: str, max_tpp: float, max_accelerators: float | None = None) -> None:
        held = self.caps.get(license_name)
        # Every pass sights every license, and most see the same cap again: no Cap made then.
        if held is None or held.max_tpp != max_tpp or held.max_accelerators != max_accelerators:
            self.caps[license_name] = Cap(max_tpp, max_accelerators).lowest(held)

    def merge_sightings(self, other: TenantCount) -> None:
        """Take in another count's caps and violations (idempotent: seen twice is seen once)."""
        for name, cap in other.caps.items():
            self.sight(name, cap.max_tpp, cap.max_accelerators)
        for code, uids in other.violations.items():
            self.violations[code] |= uids

    @property
    def active(self) -> bool:
        """Used controlled compute, was admitted or had a violation: worth a record."""
        return bool(self.seconds or self.admissions or any(self.violations.values()))


@dataclass(frozen=True)
class Checkpoint:
    """What a leader had counted of one period by ``until``, kept for the next leader: the runs
    that ended and the pods created before it. A new leader takes these from the checkpoint and
    counts the rest (runs that end later, runs still going, pods created later) itself, so a pod
    that ended before the new leader started watching is not lost (docs/compliance.md)."""

    start: datetime
    until: datetime
    tenants: Mapping[str, TenantCount]

    def to_dict(self) -> dict[str, Any]:
        return {
            "periodStart": self.start.isoformat(),
            "until": self.until.isoformat(),
            "tenants": {
                name: {
                    # To the millisecond: far finer than the record's hours to 6 decimals.
                    "seconds": {
                        lic: [round(f, 3) for f in figures] for lic, figures in sorted(count.seconds.items())
                    },
                    "admissions": dict(sorted(count.admissions.items())),
                    "caps": {
                        lic: [cap.max_tpp, cap.max_accelerators] for lic, cap in sorted(count.caps.items())
                    },
                    "violations": {code: sorted(uids) for code, uids in sorted(count.violations.items())},
                }
                for name, count in sorted(self.tenants.items())
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Checkpoint:
        """Raises ``ValueError`` (``KeyError``, ``TypeError``) on a checkpoint it cannot read."""
        tenants: dict[str, TenantCount] = {}
        for name, body in dict(data["tenants"]).items():
            count = TenantCount()
            for lic, (tpp, accelerators) in dict(body.get("seconds") or {}).items():
                count.seconds[str(lic)] = [float(tpp), float(accelerators)]
            count.admissions.update({str(k): int(v) for k, v in dict(body.get("admissions") or {}).items()})
            for lic, (max_tpp, max_accelerators) in dict(body.get("caps") or {}).items():
                count.caps[str(lic)] = Cap(
                    float(max_tpp), None if max_accelerators is None else float(max_accelerators)
                )
            for code, uids in dict(body.get("violations") or {}).items():
                count.violations[str(code)] = {str(uid) for uid in uids}
            tenants[str(name)] = count
        return cls(
            datetime.fromisoformat(str(data["periodStart"])),
            datetime.fromisoformat(str(data["until"])),
            tenants,
        )


def count_period(
    intervals: Iterable[Interval],
    admissions: Iterable[Admission],
    start: datetime,
    end: datetime,
    *,
    adopted: Checkpoint | None = None,
    until: datetime | None = None,
    sighted: Mapping[str, TenantCount] | None = None,
) -> dict[str, TenantCount]:
    """Per tenant, its figures within [start, end).

    ``adopted``: an earlier leader's checkpoint of this period; what it covers (runs that ended
    and pods created before its ``until``) is taken from it, not from ``intervals`` and
    ``admissions``; its caps and violations are merged with ``sighted`` (this period's caps and
    violations as this replica saw them). ``until``: count only what is final before that
    instant (runs that ended, pods created), as a checkpoint does."""
    out: dict[str, TenantCount] = defaultdict(TenantCount)
    covered = adopted.until if adopted is not None and adopted.start == start else None
    if adopted is not None and covered is not None:
        for name, earlier in adopted.tenants.items():
            count = out[name]
            for lic, (tpp, accelerators) in earlier.seconds.items():
                count.seconds[lic][0] += tpp
                count.seconds[lic][1] += accelerators
            count.admissions.update(earlier.admissions)
            count.merge_sightings(earlier)
    for name, seen in (sighted or {}).items():
        out[name].merge_sightings(seen)
    for interval in intervals:
        if covered is not None and interval.end is not None and interval.end < covered:
            continue
        if until is not None and (interval.end is None or interval.end >= until):
            continue
        seconds = interval.seconds_within(start, end)
        if seconds > 0:
            figures = out[interval.tenant].seconds[interval.license]
            figures[0] += interval.tpp * seconds
            figures[1] += interval.accelerators * seconds
    for admission in admissions:
        if not start <= admission.created < end:
            continue
        if covered is not None and admission.created < covered:
            continue
        if until is not None and admission.created >= until:
            continue
        out[admission.tenant].admissions[admission.code] += 1
    return dict(out)


def record_content(
    tenant: str, start: str, end: str, count: TenantCount, denials: Mapping[str, int]
) -> dict[str, Any]:
    """One tenant's record of a period before it is chained. Figures are decimal strings, so a
    JSON round trip through the API server cannot change what was hashed; a license's cap is
    the lowest it had in the period (when this replica or the checkpoint saw it)."""
    licenses: dict[str, dict[str, str]] = {}
    for name, figures in count.hours().items():
        entry = {key: f"{value:.6f}" for key, value in figures.items()}
        cap = count.caps.get(name)
        if cap is not None:
            entry["maxTPP"] = f"{cap.max_tpp:.6f}"
            if cap.max_accelerators is not None:
                entry["maxAccelerators"] = f"{cap.max_accelerators:.6f}"
        licenses[name] = entry
    return {
        "tenant": tenant,
        "periodStart": start,
        "periodEnd": end,
        "licenses": licenses,
        "admissions": dict(sorted(count.admissions.items())),
        "denials": dict(sorted(denials.items())),
        "violations": {code: len(uids) for code, uids in sorted(count.violations.items()) if uids},
    }


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
