"""The usage record's chain head in the API server's audit log (docs/compliance.md): the
session's operator (the chart's ServiceAccount, a record every ``USAGE_PERIOD`` seconds) writes
the head on its Lease, every admission answer carries it as an audit annotation, the audit log
keeps it, and ``computegate verify --audit-log`` uses it to catch a record deleted from the
cluster. Retention deletes by the records' day label, in one request."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from computegate.engine.usage import GENESIS, heads_in_audit_log, parse_head
from tests.e2e.webhook_support import (
    H100_TPP,
    OPERATOR_NAMESPACE,
    USAGE_PERIOD,
    Cluster,
    Operator,
    licensed_tenant,
    pod,
    wait_until,
)

pytestmark = pytest.mark.e2e


def _verify(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [
        sys.executable,
        "-m",
        "computegate",
        "verify",
        f"--kubeconfig={cluster.plane.kubeconfig_path}",
        *args,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def _head(cluster: Cluster) -> tuple[int, str] | None:
    lease: dict[str, Any] = cluster.get("lease", "computegate-ledger", "-n", OPERATOR_NAMESPACE)
    return parse_head((lease["metadata"].get("annotations") or {}).get("computegate.io/usage-chain-head"))


def test_the_chain_head_reaches_the_audit_log_and_verify_catches_a_deleted_record(
    cluster: Cluster, operator: Operator, audit_log: Path
) -> None:
    _, namespace, _ = licensed_tenant(cluster, max_tpp=4 * H100_TPP)
    assert cluster.create(pod("first", namespace)).code == "Licensed"
    wait_until(
        lambda: _head(cluster) is not None,
        timeout=USAGE_PERIOD * 2 + 15,
        what="a usage record's head on the Lease",
    )
    head = _head(cluster)
    assert head is not None

    def logged() -> bool:
        # Each admission answer carries the head the replica knows now; it may have grown since.
        assert cluster.create(pod(f"p-{len(audit_log.read_text())}", namespace)).code == "Licensed"
        return any(seen[0] >= head[0] for seen in heads_in_audit_log(audit_log.read_text().splitlines()))

    wait_until(logged, timeout=20, what="the chain head in the API server's audit log")
    intact = _verify(cluster, f"--audit-log={audit_log}")
    assert intact.returncode == 0, intact.stderr

    # An admin deletes the newest record the audit log saw as the head: the records left in
    # the cluster may chain up fine, but the audit log names one that is gone.
    target = max(heads_in_audit_log(audit_log.read_text().splitlines()))
    records = {int(r["spec"]["sequence"]): r for r in cluster.get("usagerecords")["items"]}
    assert records[target[0]]["spec"]["hash"] == target[1]
    assert cluster.kubectl("delete", "usagerecord", records[target[0]]["metadata"]["name"]).returncode == 0
    caught = _verify(cluster, f"--audit-log={audit_log}")
    assert caught.returncode == 1 and "missing" in caught.stderr, caught.stderr


def test_retention_deletes_the_records_of_the_days_it_no_longer_keeps_by_their_day_label(
    cluster: Cluster, operator: Operator
) -> None:
    day = (datetime.now(UTC) - timedelta(days=40)).strftime("%Y-%m-%d")
    stale = f"retention-probe.{day}"
    body = {
        "apiVersion": "computegate.io/v1alpha1",
        "kind": "UsageRecord",
        "metadata": {
            "name": stale,
            "labels": {"computegate.io/tenant": "retention-probe", "computegate.io/day": day},
        },
        "spec": {
            "tenant": "retention-probe",
            "periodStart": f"{day}T00:00:00Z",
            "periodEnd": f"{day}T23:59:59Z",
            "sequence": 0,
            "previousHash": GENESIS,
            "hash": "0" * 64,
        },
    }
    cluster.apply(yaml.safe_dump(body))

    def names() -> set[str]:
        return {r["metadata"]["name"] for r in cluster.get("usagerecords")["items"]}

    wait_until(lambda: bool(names() - {stale}), timeout=USAGE_PERIOD * 2 + 15, what="a record of today")
    written = names() - {stale}
    for record in cluster.get("usagerecords")["items"]:  # every record says its day
        assert record["metadata"]["labels"]["computegate.io/day"] == record["spec"]["periodStart"][:10]
    # The next period's records are followed by the retention's one delete-by-label.
    wait_until(
        lambda: stale not in names(), timeout=USAGE_PERIOD * 2 + 15, what="the 40-day-old record to go"
    )
    assert written <= names()  # the days kept are untouched
