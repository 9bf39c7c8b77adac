"""What an operator of ComputeGate sees: metrics, one JSON log line per decision, Events.

Metrics live in a registry of their own (not the process-global one), so several operators
in one test process never collide.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from computegate.webhook.review import Outcome

DECISION_LOGGER = "computegate.decisions"
EVENT_SOURCE = "computegate"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.decisions = Counter(
            "computegate_admission_decisions",
            "Admission decisions by webhook, reason code and result (admitted, denied, audit).",
            ["webhook", "code", "result"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "computegate_admission_duration_seconds",
            "Time to answer one admission request, by webhook.",
            ["webhook"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.consumed_tpp = Gauge(
            "computegate_license_consumed_tpp",
            "Controlled TPP counted against an ExportLicense (live pods plus reservations).",
            ["license", "tenant"],
            registry=self.registry,
        )
        self.consumed_accelerators = Gauge(
            "computegate_license_consumed_accelerators",
            "Controlled accelerators counted against an ExportLicense.",
            ["license", "tenant"],
            registry=self.registry,
        )
        self.headroom_tpp = Gauge(
            "computegate_license_headroom_tpp",
            "maxTPP minus consumed TPP of an ExportLicense.",
            ["license", "tenant"],
            registry=self.registry,
        )
        self.ledger_swaps = Counter(
            "computegate_ledger_swaps",
            "Compare-and-swaps of a license ledger that settled a batch of admissions.",
            registry=self.registry,
        )
        self.ledger_conflicts = Counter(
            "computegate_ledger_conflicts",
            "Compare-and-swaps of a license ledger lost to another writer (then read and tried again).",
            registry=self.registry,
        )
        self.ledger_expired = Counter(
            "computegate_ledger_expired_reservations",
            "Reservations dropped because their pod never appeared within the TTL.",
            registry=self.registry,
        )
        self.synced = Gauge(
            "computegate_state_synced", "1 once every watch has listed its objects.", registry=self.registry
        )

    def record(self, outcome: Outcome, seconds: float) -> None:
        result = (
            "audit"
            if outcome.verdict is not None and outcome.verdict.audit
            else ("admitted" if outcome.allowed else "denied")
        )
        self.decisions.labels(outcome.request.webhook, outcome.code, result).inc()
        self.latency.labels(outcome.request.webhook).observe(seconds)

    def forget_license(self, name: str, tenant: str) -> None:
        for gauge in (self.consumed_tpp, self.consumed_accelerators, self.headroom_tpp):
            with contextlib.suppress(KeyError):
                gauge.remove(name, tenant)


def configure_decision_log(stream: Any = None) -> logging.Logger:
    """Decision lines go to stdout as bare JSON, apart from Kopf's own log format."""
    logger = logging.getLogger(DECISION_LOGGER)
    if not logger.handlers:
        handler = logging.StreamHandler(stream or sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def decision_record(outcome: Outcome, seconds: float) -> dict[str, Any]:
    verdict = outcome.verdict
    request = outcome.request
    return {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "decisionId": outcome.decision_id,
        "webhook": request.webhook,
        "operation": request.operation,
        "subresource": request.subresource,
        "dryRun": request.dry_run,
        "kind": outcome.kind,
        "namespace": outcome.namespace or None,
        "name": outcome.name or None,
        "user": request.user,
        "allowed": outcome.allowed,
        "code": outcome.code,
        "audit": bool(verdict and verdict.audit),
        "tenant": verdict.tenant if verdict else None,
        "jurisdiction": verdict.jurisdiction if verdict else None,
        "license": verdict.license if verdict else None,
        "accelerators": verdict.accelerators if verdict else None,
        "tpp": verdict.tpp if verdict else None,
        "controlledTpp": verdict.controlled_tpp if verdict else None,
        "message": outcome.message,
        "latencyMs": round(seconds * 1000, 3),
    }


def log_decision(logger: logging.Logger, outcome: Outcome, seconds: float) -> None:
    logger.info(json.dumps(decision_record(outcome, seconds), separators=(",", ":")))


def event_for(outcome: Outcome) -> dict[str, Any] | None:
    """The Event of a denial or would-be denial (none for admissions and dry runs)."""
    if not outcome.would_deny or outcome.request.dry_run or not outcome.namespace:
        return None
    body = outcome.request.body
    meta = body.get("metadata") or {}
    now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    audit = outcome.allowed
    involved = {
        "apiVersion": str(body.get("apiVersion") or "v1"),
        "kind": outcome.kind,
        "namespace": outcome.namespace,
        "name": outcome.name,
    }
    if meta.get("uid"):
        involved["uid"] = str(meta["uid"])
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "generateName": f"{(outcome.name or 'workload')[:200]}.",
            "namespace": outcome.namespace,
            "labels": {"computegate.io/decision-id": outcome.decision_id[:63]},
        },
        "involvedObject": involved,
        "type": "Warning",
        "reason": outcome.code[:128],
        "message": (
            f"Admitted only because the CompliancePolicy is in Audit mode: {outcome.message}"
            if audit
            else outcome.message
        )[:1024],
        "source": {"component": EVENT_SOURCE},
        "reportingComponent": EVENT_SOURCE,
        "reportingInstance": EVENT_SOURCE,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "eventTime": None,
        "count": 1,
        "action": "Admission",
    }
