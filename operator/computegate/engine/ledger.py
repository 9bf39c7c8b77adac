"""The license ledger's arithmetic (DESIGN.md step 7), pure: a ledger in, a ledger out.

An ExportLicense's ``status.ledger`` holds what the license has committed (controlled TPP and
accelerators, exact rationals so that MIG shares add up to whole chips) and the in-flight
reservations by pod uid. Admission only raises ``committed`` (``reserve``); the one elected
reconciler lowers it by recomputing from the pods it sees plus the reservations whose pods it
has not seen yet (``reconcile``). Writes are compare-and-swaps on ``resourceVersion``, done by
the adapter (``computegate.webhook.ledger``); nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

__all__ = [
    "LEDGER_KEY",
    "MAX_RESERVATIONS",
    "Ledger",
    "Reservation",
    "ReserveRequest",
    "exact",
    "expired",
    "reconcile",
    "reserve",
]

LEDGER_KEY = "ledger"
# An etcd object is at most 1.5 MiB; an entry is about 200 bytes, so this leaves room to spare.
# At the bound, admissions under the license wait (retryable denial) until the reconciler has
# turned reservations into counted pods, which it does within seconds.
MAX_RESERVATIONS = 2000


def exact(value: float | int | str | Fraction) -> Fraction:
    """A figure as an exact rational: MIG shares (g/7 of a chip's TPP) come back whole."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, str):
        return Fraction(value)
    return Fraction(value).limit_denominator(10_000)


def _text(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def _timestamp(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Reservation:
    pod: str  # namespace/name, for people reading the status
    tpp: Fraction
    accelerators: Fraction
    at: datetime


@dataclass(frozen=True)
class Ledger:
    committed_tpp: Fraction = Fraction(0)
    committed_accelerators: Fraction = Fraction(0)
    reservations: Mapping[str, Reservation] = field(default_factory=dict)

    @classmethod
    def from_status(cls, status: Mapping[str, Any] | None) -> Ledger | None:
        """The ledger of a license's status; None when no ledger was ever written (or unreadable)."""
        raw = (status or {}).get(LEDGER_KEY)
        if not isinstance(raw, Mapping):
            return None
        try:
            reservations = {
                str(uid): Reservation(
                    pod=str(entry.get("pod", "")),
                    tpp=exact(str(entry["tpp"])),
                    accelerators=exact(str(entry["accelerators"])),
                    at=datetime.fromisoformat(str(entry["at"]).replace("Z", "+00:00")),
                )
                for uid, entry in (raw.get("reservations") or {}).items()
            }
            return cls(
                exact(str(raw.get("committedTPP", "0"))),
                exact(str(raw.get("committedAccelerators", "0"))),
                reservations,
            )
        except (KeyError, ValueError, TypeError, ZeroDivisionError, AttributeError):
            return None

    def to_status(self) -> dict[str, Any]:
        return {
            "committedTPP": _text(self.committed_tpp),
            "committedAccelerators": _text(self.committed_accelerators),
            "reservations": {
                uid: {
                    "pod": entry.pod,
                    "tpp": _text(entry.tpp),
                    "accelerators": _text(entry.accelerators),
                    "at": _timestamp(entry.at),
                }
                for uid, entry in sorted(self.reservations.items())
            },
        }

    @property
    def reserved_tpp(self) -> Fraction:
        return sum((entry.tpp for entry in self.reservations.values()), Fraction(0))


@dataclass(frozen=True)
class ReserveRequest:
    uid: str
    pod: str
    tpp: Fraction
    accelerators: Fraction


def reserve(
    ledger: Ledger,
    requests: Iterable[ReserveRequest],
    *,
    max_tpp: Fraction,
    max_accelerators: Fraction | None,
    at: datetime,
) -> tuple[Ledger, list[bool | None]]:
    """Admit what fits, in order: the new ledger and, per request, True (reserved or already
    reserved under that uid), False (over the cap) or None (the ledger is full: retry later)."""
    committed_tpp, committed_accelerators = ledger.committed_tpp, ledger.committed_accelerators
    reservations = dict(ledger.reservations)
    results: list[bool | None] = []
    for request in requests:
        if request.uid in reservations:
            results.append(True)  # a retried call: charged once
            continue
        if len(reservations) >= MAX_RESERVATIONS:
            results.append(None)
            continue
        tpp = committed_tpp + request.tpp
        accelerators = committed_accelerators + request.accelerators
        if tpp > max_tpp or (max_accelerators is not None and accelerators > max_accelerators):
            results.append(False)
            continue
        committed_tpp, committed_accelerators = tpp, accelerators
        reservations[request.uid] = Reservation(request.pod, request.tpp, request.accelerators, at)
        results.append(True)
    return Ledger(committed_tpp, committed_accelerators, reservations), results


def reconcile(
    ledger: Ledger,
    *,
    live_tpp: Fraction,
    live_accelerators: Fraction,
    seen_uids: Set[str],
    still_pending: Set[str],
    at: datetime,
    ttl: timedelta,
) -> Ledger:
    """What the license has committed, recomputed: the live pods (as the reconciler sees them)
    plus the reservations whose pods it has not seen. A reservation goes when its pod is seen
    (it is then counted as a live pod) or when its TTL has passed and the pod is not known to
    exist (``still_pending`` holds the uids of expired reservations whose pod the API server
    still has)."""
    kept = {
        uid: entry
        for uid, entry in ledger.reservations.items()
        if uid not in seen_uids and (at - entry.at < ttl or uid in still_pending)
    }
    return Ledger(
        live_tpp + sum((entry.tpp for entry in kept.values()), Fraction(0)),
        live_accelerators + sum((entry.accelerators for entry in kept.values()), Fraction(0)),
        kept,
    )


def expired(ledger: Ledger, *, seen_uids: Set[str], at: datetime, ttl: timedelta) -> list[tuple[str, str]]:
    """(uid, namespace/name) of the reservations past their TTL whose pods the reconciler has not seen."""
    return [
        (uid, entry.pod)
        for uid, entry in sorted(ledger.reservations.items())
        if uid not in seen_uids and at - entry.at >= ttl
    ]
