"""What an admin's tooling sees of the running operator, through the real API server: every log
line one JSON object with level and logger, the metrics, and an Event within a second of the
decision it records."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.webhook_support import (
    Cluster,
    Operator,
    pod,
    tenant,
    unique,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

EVENT_WITHIN_SECONDS = 1.0


def _events(api: Any, namespace: str, name: str) -> list[Any]:
    events = client.CoreV1Api(api).list_namespaced_event(namespace).items
    return [event for event in events if event.involved_object.name == name]


def test_an_event_is_posted_within_a_second_of_each_denial(cluster: Cluster) -> None:
    namespace = unique("events")
    cluster.apply(tenant(namespace, "IR", namespaces=[namespace]))
    cluster.eventually(pod("warmup", namespace), "Prohibited")  # the operator has seen the tenant
    api = cluster.plane.api_client()
    try:
        delays = []
        for attempt in range(3):
            name = f"p{attempt}"
            refused = cluster.create(pod(name, namespace))
            answered = time.monotonic()
            assert refused.code == "Prohibited", refused.stderr
            while not _events(api, namespace, name):
                assert time.monotonic() - answered < 10, "no Event at all"
                time.sleep(0.02)
            delays.append(time.monotonic() - answered)
        (event,) = _events(api, namespace, "p2")
        assert event.reason == "Prohibited" and event.type == "Warning"
        assert max(delays) < EVENT_WITHIN_SECONDS, f"Events arrived {delays} s after the denials"
    finally:
        api.close()


def test_every_line_the_operator_logs_is_a_json_object_with_level_and_logger(
    cluster: Cluster, operator: Operator
) -> None:
    namespace = unique("logs")
    cluster.apply(tenant(namespace, "IR", namespaces=[namespace]))
    cluster.eventually(pod("p", namespace), "Prohibited")
    lines = [line for line in operator.log_path.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # fails on any line that is not JSON
    assert all({"time", "level", "logger", "message"} <= set(record) for record in records)
    loggers = {record["logger"] for record in records}
    assert any(logger.startswith("kopf.") for logger in loggers), loggers
    assert "computegate.decisions" in loggers
    decision = next(
        r for r in records if r["logger"] == "computegate.decisions" and r.get("namespace") == namespace
    )
    assert decision["level"] == "warning" and decision["code"] == "Prohibited"
    assert decision["dryRun"] is True and isinstance(decision["accelerators"], int)


def test_metrics_carry_build_info_and_process_collectors(operator: Operator) -> None:
    status, text = operator.health("/metrics")
    assert status == 200
    assert "computegate_build_info{" in text
    assert "process_resident_memory_bytes" in text and "process_start_time_seconds" in text
