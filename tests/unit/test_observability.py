"""What an admin's log pipeline and Prometheus see: one log format for every line, decision
records as log records, the metrics' process, build and license series. (Through the API
server, with Events: tests/e2e/test_webhook_observability.py.)"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import generate_latest

from computegate import __version__
from computegate.webhook.ledger import Reconciler
from computegate.webhook.observe import (
    DECISION_LOGGER,
    Metrics,
    configure_decision_log,
    configure_logging,
    log_decision,
)
from computegate.webhook.outcome import Request
from computegate.webhook.review import Reviewer
from tests.unit.conftest import NOW, StateFactory, license_, node, pod, tenant

H100 = "NVIDIA-H100-80GB-HBM3"


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Leave the process's logging as pytest set it up."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def _lines(stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if line]


def _outcome(make_state: StateFactory, *, namespace: str, gpus: int = 8) -> Any:
    state = make_state(node("n1", H100), tenant("initech", "CN", namespaces=["cn-team"]),
                       tenant("globex", "DE", namespaces=["de-team"]))  # fmt: skip
    reviewer = Reviewer(state, clock=lambda: NOW, new_id=lambda: "id-1")
    body = pod("finetune", namespace, gpus=gpus)
    return reviewer.validate_workload(
        Request(webhook="validate-workloads", plural="pods", operation="CREATE", body=body, user="bob")
    )


def test_every_logger_kopfs_and_aiohttps_included_writes_one_json_object_per_line(
    root_logging: None,
) -> None:
    stream = io.StringIO()
    configure_logging(level="info", log_format="json", stream=stream)
    logging.getLogger("kopf.reactor.running").info("Starting the operator")
    logging.getLogger("aiohttp.access").info("%s %s", "POST", "/validate-workloads")
    logging.getLogger("kopf.objects").warning(
        "Handler failed", extra={"k8s_ref": {"kind": "Pod", "namespace": "team", "name": "p", "uid": "u"}}
    )
    logging.getLogger("computegate.webhook.ledger").debug("not at info")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("computegate.webhook.runtime").exception("Could not post an Event")
    records = [json.loads(line) for line in _lines(stream)]
    assert [(r["level"], r["logger"]) for r in records] == [
        ("info", "kopf.reactor.running"),
        ("info", "aiohttp.access"),
        ("warning", "kopf.objects"),
        ("error", "computegate.webhook.runtime"),
    ]
    assert records[1]["message"] == "POST /validate-workloads"
    assert records[2]["object"] == {"kind": "Pod", "namespace": "team", "name": "p"}
    assert "RuntimeError: boom" in records[3]["exception"]
    for record in records:
        assert list(record)[:4] == ["time", "level", "logger", "message"]
        assert datetime.fromisoformat(record["time"]).tzinfo is not None


def test_a_decision_is_a_json_log_record_with_level_logger_and_its_fields(
    root_logging: None, make_state: StateFactory
) -> None:
    stream = io.StringIO()
    configure_logging(level="info", log_format="json", stream=stream)
    logger = configure_decision_log()
    denied = _outcome(make_state, namespace="cn-team")
    admitted = _outcome(make_state, namespace="de-team", gpus=0)
    log_decision(logger, denied, 0.0021)
    log_decision(logger, admitted, 0.001)
    first, second = (json.loads(line) for line in _lines(stream))
    assert first["logger"] == second["logger"] == DECISION_LOGGER
    assert (first["level"], second["level"]) == ("warning", "info")
    assert first["code"] == "NoLicense" and first["allowed"] is False and first["audit"] is False
    for field in ("time", "decisionId", "webhook", "operation", "kind", "namespace", "name", "user",
                  "tenant", "jurisdiction", "license", "accelerators", "tpp", "controlledTpp",
                  "message", "latencyMs"):  # fmt: skip
        assert field in first, field
    assert first["message"] == denied.message
    # Whole counts are integral, as `computegate evaluate` prints them.
    assert first["accelerators"] == 8 and isinstance(first["accelerators"], int)
    assert isinstance(first["tpp"], int)


def test_text_format_on_request_keeps_the_decision_as_compact_json_in_the_message(
    root_logging: None, make_state: StateFactory
) -> None:
    stream = io.StringIO()
    configure_logging(level="warning", log_format="text", stream=stream)
    logging.getLogger("kopf.objects").info("routine, below the level")
    log_decision(configure_decision_log(), _outcome(make_state, namespace="cn-team"), 0.001)
    (line,) = _lines(stream)
    prefix, _, message = line.partition(f" WARNING {DECISION_LOGGER}: ")
    assert prefix and json.loads(message)["code"] == "NoLicense"


def test_metrics_export_process_build_and_per_license_cap_use_and_expiry(make_state: StateFactory) -> None:
    lic = license_("lic", "globex", max_tpp=40_000, valid_until="2027-01-01T00:00:00Z")
    state = make_state(node("n1", H100), tenant("globex", "CN", namespaces=["team"]), lic)
    metrics = Metrics()
    reconciler = Reconciler(kube=None, state=state, metrics=metrics, election=None)  # type: ignore[arg-type]
    reconciler.refresh_gauges()
    text = generate_latest(metrics.registry).decode()
    until = datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    assert 'computegate_build_info{python_version="' in text and f'version="{__version__}"' in text
    assert "process_cpu_seconds_total" in text and "process_resident_memory_bytes" in text
    assert "python_gc_collections_total" in text and "python_info" in text
    assert 'computegate_license_max_tpp{license="lic",tenant="globex"} 40000.0' in text
    (sample,) = [
        line for line in text.splitlines() if line.startswith("computegate_license_valid_until_seconds{")
    ]
    assert 'license="lic",tenant="globex"' in sample and float(sample.split()[-1]) == until
    assert 'computegate_license_consumed_tpp{license="lic",tenant="globex"} 0.0' in text
    state.remove("ExportLicense", "lic", None)
    reconciler.refresh_gauges()
    assert 'license="lic"' not in generate_latest(metrics.registry).decode()


def test_two_metrics_registries_in_one_process_do_not_collide() -> None:
    assert generate_latest(Metrics().registry) and generate_latest(Metrics().registry)
