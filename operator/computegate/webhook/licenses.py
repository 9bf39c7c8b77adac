"""ExportLicense ``.status``: what the pods that exist consume, and what is left (DESIGN.md step 5).

``license_status`` is pure (state in, status out); the operator writes it through the status
subresource only when it changes, so the write's own watch event settles without another one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from computegate.engine import ClusterState
from computegate.models.resources import ExportLicense


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 6)


def _validity(lic: ExportLicense, at: datetime) -> tuple[str, str, str]:
    spec = lic.spec
    if spec.revoked:
        return "False", "Revoked", spec.revoked_reason or "the license is revoked"
    if at >= spec.valid_until:
        return "False", "Expired", f"expired at {spec.valid_until.isoformat()}"
    if at < spec.valid_from:
        return "False", "NotYetValid", f"valid from {spec.valid_from.isoformat()}"
    return "True", "Active", f"valid until {spec.valid_until.isoformat()}"


def license_status(state: ClusterState, lic: ExportLicense, at: datetime) -> dict[str, Any]:
    """The status the operator keeps, without timestamps (compared to decide whether to write)."""
    name = lic.metadata.name
    used = state.consumption(name)
    reserved = state.reservations.get(name)
    status: dict[str, Any] = {
        "consumedTPP": _number(used.tpp),
        "consumedAccelerators": _number(used.accelerators),
        "reservedTPP": _number(reserved.tpp) if reserved else 0,
        "headroomTPP": _number(lic.spec.max_tpp - used.tpp),
    }
    if lic.spec.max_accelerators is not None:
        status["headroomAccelerators"] = _number(lic.spec.max_accelerators - used.accelerators)
    valid, reason, message = _validity(lic, at)
    full = used.tpp >= lic.spec.max_tpp or (
        lic.spec.max_accelerators is not None and used.accelerators >= lic.spec.max_accelerators
    )
    status["conditions"] = [
        {"type": "Valid", "status": valid, "reason": reason, "message": message},
        {
            "type": "Exhausted",
            "status": "True" if full else "False",
            "reason": "CapReached" if full else "HeadroomLeft",
            "message": f"{_number(used.tpp)} of {_number(lic.spec.max_tpp)} TPP used",
        },
    ]
    return status


def with_transition_times(
    status: dict[str, Any], previous: dict[str, Any] | None, now: datetime
) -> dict[str, Any]:
    """Keep a condition's lastTransitionTime unless its status changed."""
    before = {c.get("type"): c for c in (previous or {}).get("conditions") or [] if isinstance(c, dict)}
    stamp = now.isoformat(timespec="seconds").replace("+00:00", "Z")
    conditions = []
    for condition in status["conditions"]:
        old = before.get(condition["type"])
        kept = old.get("lastTransitionTime") if old and old.get("status") == condition["status"] else None
        conditions.append({**condition, "lastTransitionTime": kept or stamp})
    return {**status, "conditions": conditions}


def comparable(status: dict[str, Any] | None) -> dict[str, Any]:
    if not status:
        return {}
    conditions = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"}
        for c in status.get("conditions") or []
        if isinstance(c, dict)
    ]
    return {**status, "conditions": conditions}
