"""What an operator of ComputeGate sees: metrics, logs (one decision record per decision), Events.

Metrics live in a registry of their own (not the process-global one), so several operators
in one test process never collide.

One log format for every line of the process: ``configure_logging`` puts a single handler on
the root logger, so Kopf's lines, aiohttp's and ours are all JSON objects (``time``, ``level``,
``logger``, ``message``) or all text. A decision is a log record of the logger
``computegate.decisions`` whose JSON object carries the decision's fields beside ``level`` and
``logger`` (its ``message`` is the decision's message).
"""

from __future__ import annotations

import contextlib
import json
import logging
import platform
import sys
from datetime import UTC, datetime
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from computegate import __version__
from computegate.webhook.outcome import Outcome

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
        self.max_tpp = Gauge(
            "computegate_license_max_tpp",
            "An ExportLicense's cap on controlled TPP (spec.maxTPP).",
            ["license", "tenant"],
            registry=self.registry,
        )
        self.valid_until = Gauge(
            "computegate_license_valid_until_seconds",
            "When an ExportLicense stops being valid (spec.validUntil), in seconds since the Unix epoch.",
            ["license", "tenant"],
            registry=self.registry,
        )
        build = Gauge(
            "computegate_build_info",
            "Always 1; the labels name the running build.",
            ["version", "python_version"],
            registry=self.registry,
        )
        build.labels(__version__, platform.python_version()).set(1)
        # process_* (CPU, memory, open files, start time) and python_* (GC, platform), as the
        # global registry of prometheus_client offers them; registered here per instance.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.registry.register(GC_COLLECTOR)

    def record(self, outcome: Outcome, seconds: float) -> None:
        result = (
            "audit"
            if outcome.verdict is not None and outcome.verdict.audit
            else ("admitted" if outcome.allowed else "denied")
        )
        self.decisions.labels(outcome.request.webhook, outcome.code, result).inc()
        self.latency.labels(outcome.request.webhook).observe(seconds)

    def forget_license(self, name: str, tenant: str) -> None:
        for gauge in (
            self.consumed_tpp,
            self.consumed_accelerators,
            self.headroom_tpp,
            self.max_tpp,
            self.valid_until,
        ):
            with contextlib.suppress(KeyError):
                gauge.remove(name, tenant)


LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time``, ``level``, ``logger``, then ``message`` or, for a
    record that carries ``fields`` (a decision), those fields; Kopf's object reference as
    ``object``; a traceback as ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
            line["level"], line["logger"] = record.levelname.lower(), record.name
        else:
            line["message"] = record.getMessage()
        ref = getattr(record, "k8s_ref", None)  # kopf.objects' records name the object
        if isinstance(ref, dict):
            line["object"] = {key: ref[key] for key in ("kind", "namespace", "name") if ref.get(key)}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, separators=(",", ":"), default=str)


def formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return logging.Formatter(TEXT_FORMAT)
    raise ValueError(f"unknown log format {log_format!r} (json or text)")


def configure_logging(*, level: str = "info", log_format: str = "json", stream: Any = None) -> None:
    """Every logger of the process (Kopf's, aiohttp's, ours) writes through one handler."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(formatter(log_format))
    root.addHandler(handler)
    root.setLevel(LOG_LEVELS[level])


def configure_decision_log(stream: Any = None) -> logging.Logger:
    """The decision logger; it writes through the root handler (``configure_logging``), or, given
    a ``stream``, through its own JSON handler (tests)."""
    logger = logging.getLogger(DECISION_LOGGER)
    if stream is not None and not logger.handlers:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False
    return logger


def _whole(value: float | None) -> float | int | None:
    """8, not 8.0 (as `computegate evaluate` prints it); a MIG share stays fractional."""
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


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
        "accelerators": _whole(verdict.accelerators) if verdict else None,
        "tpp": _whole(verdict.tpp) if verdict else None,
        "controlledTpp": _whole(verdict.controlled_tpp) if verdict else None,
        "message": outcome.message,
        "latencyMs": round(seconds * 1000, 3),
    }


def log_decision(logger: logging.Logger, outcome: Outcome, seconds: float) -> None:
    """INFO for an admission, WARNING for a denial or an Audit would-be denial. In text format the
    line's message is the record as compact JSON; in JSON format the record is the line."""
    record = decision_record(outcome, seconds)
    level = logging.WARNING if outcome.would_deny else logging.INFO
    logger.log(level, "%s", _Compact(record), extra={"fields": record})


class _Compact:
    """Serialised only when a text formatter asks for the message."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record

    def __str__(self) -> str:
        return json.dumps(self.record, separators=(",", ":"))


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
