"""ExportLicense ``.status`` as people read it, from the license's ledger (DESIGN.md step 7).

``license_status`` is pure (a license and its ledger in, the display fields out); only the
elected reconciler writes them (``computegate.webhook.ledger``), through the status
subresource, and only when they change.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from computegate.engine.compliance import Finding
from computegate.engine.ledger import Ledger
from computegate.models.resources import ExportLicense


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 6)


def _stamp(at: datetime) -> str:
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def _validity(lic: ExportLicense, at: datetime) -> tuple[str, str, str, str | None]:
    """(status, reason, message, when it became so if the license itself says when)."""
    spec = lic.spec
    if spec.revoked:
        return "False", "Revoked", spec.revoked_reason or "the license is revoked", None
    if at >= spec.valid_until:
        return "False", "Expired", f"expired at {_stamp(spec.valid_until)}", _stamp(spec.valid_until)
    if at < spec.valid_from:
        return "False", "NotYetValid", f"valid from {_stamp(spec.valid_from)}", None
    return "True", "Active", f"valid until {_stamp(spec.valid_until)}", _stamp(spec.valid_from)


def license_status(
    lic: ExportLicense, ledger: Ledger, at: datetime, findings: Sequence[Finding] = ()
) -> dict[str, Any]:
    """The display fields: used, reserved, headroom, a state at a glance, and conditions.

    ``findings``: the running pods under the license that the engine would refuse now
    (``computegate.engine.compliance``); the enforced ones are its violations."""
    spec = lic.spec
    used_tpp = float(ledger.committed_tpp)
    used_count = float(ledger.committed_accelerators)
    status: dict[str, Any] = {
        "consumedTPP": _number(used_tpp),
        "consumedAccelerators": _number(used_count),
        "reservedTPP": _number(float(ledger.reserved_tpp)),
        "reservations": len(ledger.reservations),
        "headroomTPP": _number(spec.max_tpp - used_tpp),
    }
    if spec.max_accelerators is not None:
        status["headroomAccelerators"] = _number(spec.max_accelerators - used_count)
    valid, reason, message, since = _validity(lic, at)
    full = used_tpp >= spec.max_tpp or (
        spec.max_accelerators is not None and used_count >= spec.max_accelerators
    )
    status["state"] = reason if valid == "False" else ("Exhausted" if full else "Active")
    valid_condition: dict[str, Any] = {"type": "Valid", "status": valid, "reason": reason, "message": message}
    if since is not None:
        valid_condition["lastTransitionTime"] = since
    status["conditions"] = [
        valid_condition,
        {
            "type": "Exhausted",
            "status": "True" if full else "False",
            "reason": "CapReached" if full else "HeadroomLeft",
            "message": f"{_number(used_tpp)} of {_number(spec.max_tpp)} TPP used",
        },
        _violations_condition(findings),
    ]
    status["violations"] = sum(1 for finding in findings if finding.enforced)
    audited = sum(1 for finding in findings if not finding.enforced)
    if audited:
        status["auditFindings"] = audited
    return status


def _violations_condition(findings: Sequence[Finding]) -> dict[str, Any]:
    """True while running pods under the license would be refused now; since the instant the
    license itself gives when it can (its validUntil for an expiry)."""
    enforced = [finding for finding in findings if finding.enforced]
    if not enforced:
        message = "no running pod under it would be refused now"
        if findings:
            message += f" ({len(findings)} would be, under Audit enforcement)"
        return {"type": "Violations", "status": "False", "reason": "NoViolations", "message": message}
    codes = sorted({finding.code.value for finding in enforced})
    pods = ", ".join(f"{f.namespace}/{f.name}" for f in enforced[:5]) + (" ..." if len(enforced) > 5 else "")
    condition: dict[str, Any] = {
        "type": "Violations",
        "status": "True",
        "reason": codes[0] if len(codes) == 1 else "Several",
        "message": f"{len(enforced)} running pod(s) would be refused now ({', '.join(codes)}): {pods}",
    }
    since = [finding.since for finding in enforced if finding.since is not None]
    if since and len(since) == len(enforced):
        condition["lastTransitionTime"] = _stamp(min(since))
    return condition


def with_transition_times(
    status: dict[str, Any], previous: dict[str, Any] | None, now: datetime
) -> dict[str, Any]:
    """Keep a condition's lastTransitionTime unless its status changed; a time the license
    itself gives (its validUntil for Expired) wins over the moment we noticed."""
    before = {c.get("type"): c for c in (previous or {}).get("conditions") or [] if isinstance(c, dict)}
    conditions = []
    for condition in status["conditions"]:
        old = before.get(condition["type"])
        kept = old.get("lastTransitionTime") if old and old.get("status") == condition["status"] else None
        conditions.append(
            {**condition, "lastTransitionTime": condition.get("lastTransitionTime") or kept or _stamp(now)}
        )
    return {**status, "conditions": conditions}


def comparable(status: dict[str, Any] | None) -> dict[str, Any]:
    """A status without its timestamps, to decide whether a write would change anything."""
    if not status:
        return {}
    conditions = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"}
        for c in status.get("conditions") or []
        if isinstance(c, dict)
    ]
    return {**status, "conditions": conditions}
