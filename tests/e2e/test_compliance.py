"""Continuous compliance on the full dev cluster (docs/compliance.md): running pods judged again
when what decided them changes, reported (Events, license and Tenant status, openreports.io
Reports) and, with ``onViolation: Evict``, evicted through the Eviction API; what survives a
change of leader (the eviction grace period) and what every replica adds to the usage record
(its denials).

One ``computegate dev up --webhook-replicas 2`` for the module (controllers, scheduler, kwok,
two webhook operators behind one endpoint, one of them elected), with the chart's openreports.io
Report CRD installed. Each test makes its own tenant and license; the eviction tests change the
cluster's policy and put it back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from computegate.devcluster import ControlPlane, ManagedProcess, find_binaries
from tests.e2e.webhook_support import CHART, H100_TPP, Cluster, license, pod, tenant, unique, wait_until

pytestmark = pytest.mark.e2e

STATE = Path(__file__).parent / "data" / "cluster" / "state"
SOON = 10.0  # "within seconds", with room for a loaded machine
USAGE_PERIOD = 10  # seconds per usage record here (a day by default)
REPLICAS = 2


def _computegate(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "computegate", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)


def _report_crd(plane: ControlPlane) -> str:
    assert plane.binaries.helm is not None
    return subprocess.run(
        [
            *(str(plane.binaries.helm), "template", "computegate", str(CHART)),
            *("--set", "compliance.installReportCRD=true", "--show-only", "templates/openreports-crd.yaml"),
            *("--kube-version", "1.30.0"),  # a source-built helm defaults to v1.20, below kubeVersion
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    find_binaries(require_cluster=True)
    data_dir = tmp_path_factory.mktemp("compliance-dev")
    os.environ["COMPUTEGATE_DEV_WEBHOOK_ARGS"] = f"--usage-period={USAGE_PERIOD} --reconcile-interval=2"
    try:
        up = _computegate(
            "dev", "up", "--state", str(STATE), f"--data-dir={data_dir}", f"--webhook-replicas={REPLICAS}"
        )
    finally:
        del os.environ["COMPUTEGATE_DEV_WEBHOOK_ARGS"]
    try:
        assert up.returncode == 0, up.stderr
        plane = ControlPlane.attach(data_dir)
        assert plane is not None
        cluster = Cluster(plane)
        cluster.apply(_report_crd(plane))
        yield cluster
    finally:
        down = _computegate("dev", "down", "--data-dir", str(data_dir))
        assert down.returncode == 0, down.stderr


# -- helpers ---------------------------------------------------------------------------------
def licensed(cluster: Cluster, gpus: int, **license_fields: Any) -> tuple[str, str, str]:
    """A Saudi tenant (needs a license) with an H100 license: (tenant, namespace, license)."""
    name = unique("c")
    namespace = f"{name}-ml"
    cluster.apply(tenant(name, "SA", namespaces=[namespace]))
    cluster.apply(license(f"{name}-lic", name, max_tpp=gpus * H100_TPP, **license_fields))
    wait_until(
        lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", namespace).returncode == 0,
        what=f"the default ServiceAccount of {namespace}",
    )
    return name, namespace, f"{name}-lic"


def start(cluster: Cluster, namespace: str, *names: str, labels: dict[str, str] | None = None) -> None:
    for name in names:
        body = yaml.safe_load(pod(name, namespace))
        if labels:
            body["metadata"]["labels"] = labels
        result = cluster.create(yaml.safe_dump(body))
        assert result.code == "Licensed", result.stderr

    def all_running() -> bool:
        items = cluster.get("pods", "-n", namespace)["items"]
        phases = {p["metadata"]["name"]: p["status"].get("phase") for p in items}
        return all(phases.get(name) == "Running" for name in names)

    wait_until(all_running, timeout=60, what=f"pods {names} running in {namespace}")


def warnings(cluster: Cluster, namespace: str, reason: str) -> dict[str, dict[str, Any]]:
    """The Warning Events of ``reason`` by the pod they are about."""
    items = cluster.get("events", "-n", namespace, f"--field-selector=reason={reason}")["items"]
    return {event["involvedObject"]["name"]: event for event in items if event.get("type") == "Warning"}


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for found in (obj.get("status") or {}).get("conditions") or []:
        if found.get("type") == kind:
            return dict(found)
    return {}


def reports(cluster: Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    items = cluster.get("reports.openreports.io", "-n", namespace)["items"]
    return {report["scope"]["name"]: report for report in items}


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


# -- reported --------------------------------------------------------------------------------
def test_revoking_a_license_reports_its_running_pods_within_seconds(cluster: Cluster) -> None:
    name, namespace, lic = licensed(cluster, 2)
    start(cluster, namespace, "train-a", "train-b")
    wait_until(lambda: (cluster.get("tenant", name).get("status") or {}).get("namespaces") == [namespace])
    assert warnings(cluster, namespace, "LicenseRevoked") == {}
    # Compliant pods have a Report too, as Kyverno writes one per resource its policies match.
    # The Report CRD came after the operators started: with nothing failing, they look for it
    # again every 30 s.
    wait_until(
        lambda: (
            {pod: r["summary"]["pass"] for pod, r in reports(cluster, namespace).items()}
            == {"train-a": 1, "train-b": 1}
        ),
        timeout=30 + SOON,
        what="a passing openreports.io Report per compliant pod",
    )
    passing = reports(cluster, namespace)["train-a"]["results"][0]
    assert passing["result"] == "pass" and passing["properties"] == {"code": "Licensed", "license": lic}

    patch = {"spec": {"revoked": True, "revokedReason": "end-user check failed"}}
    assert (
        cluster.kubectl("patch", "exportlicense", lic, "--type=merge", "-p", json.dumps(patch)).returncode
        == 0
    )
    revoked_at = time.monotonic()

    wait_until(
        lambda: set(warnings(cluster, namespace, "LicenseRevoked")) == {"train-a", "train-b"},
        timeout=SOON,
        what="a LicenseRevoked Warning Event on each running pod",
    )
    wait_until(
        lambda: condition(cluster.get("exportlicense", lic), "Violations").get("status") == "True",
        timeout=SOON,
        what="the license's Violations condition",
    )
    status = cluster.get("exportlicense", lic)["status"]
    assert status["violations"] == 2 and condition({"status": status}, "Violations")["reason"] == (
        "LicenseRevoked"
    )
    wait_until(
        lambda: (cluster.get("tenant", name).get("status") or {}).get("violations") == 2,
        timeout=SOON,
        what="the Tenant's status to count two violations",
    )
    tenant_status = cluster.get("tenant", name)["status"]
    assert tenant_status["violationsByCode"] == {"LicenseRevoked": 2}
    assert tenant_status["licenses"] == [lic]
    assert condition({"status": tenant_status}, "Compliant")["status"] == "False"
    wait_until(
        lambda: (
            {pod: r["summary"]["fail"] for pod, r in reports(cluster, namespace).items()}
            == {"train-a": 1, "train-b": 1}
        ),
        timeout=SOON,
        what="an openreports.io Report per pod, failing",
    )
    report = reports(cluster, namespace)["train-a"]
    assert report["summary"]["fail"] == 1 and report["results"][0]["rule"] == "LicenseRevoked"
    assert report["metadata"]["ownerReferences"][0]["kind"] == "Pod"
    assert time.monotonic() - revoked_at < 2 * SOON  # all of it (kubectl takes its time too)

    # Deduplicated: further passes (the reconciler runs after every change) post no second Event.
    cluster.apply(tenant(name, "SA", namespaces=[namespace]))
    time.sleep(3)
    events = cluster.get("events", "-n", namespace, "--field-selector=reason=LicenseRevoked")["items"]
    assert len(events) == 2


def test_a_valid_until_falling_during_the_test_is_reported_at_that_instant(cluster: Cluster) -> None:
    until = (datetime.now(UTC) + timedelta(seconds=15)).replace(microsecond=0)
    stamp = until.isoformat().replace("+00:00", "Z")
    _, namespace, lic = licensed(cluster, 1, valid_until=stamp)
    start(cluster, namespace, "short-lived")
    assert datetime.now(UTC) < until, "the pod took too long to start for this test"
    assert condition(cluster.get("exportlicense", lic), "Violations").get("status") != "True"

    wait_until(
        lambda: "short-lived" in warnings(cluster, namespace, "LicenseExpired"),
        timeout=(until - datetime.now(UTC)).total_seconds() + 5,
        what="the expiry to be reported",
    )
    noticed = datetime.now(UTC)
    assert noticed - until < timedelta(seconds=5), f"reported {noticed - until} after validUntil"
    violations = condition(cluster.get("exportlicense", lic), "Violations")
    assert violations["status"] == "True" and violations["reason"] == "LicenseExpired"
    assert parse(violations["lastTransitionTime"]) == until
    assert parse(condition(cluster.get("exportlicense", lic), "Valid")["lastTransitionTime"]) == until


# -- gradual rollout -------------------------------------------------------------------------
OVERRIDES = """
apiVersion: computegate.io/v1alpha1
kind: CompliancePolicy
metadata: {name: default}
spec:
  enforcement: Audit
  overrides: [{tenants: [%s], enforcement: %s}]
"""


def test_switching_a_tenant_from_audit_to_enforce_turns_its_running_would_be_denials_into_violations(
    cluster: Cluster,
) -> None:
    name = unique("rollout")
    namespace = f"{name}-ml"
    cluster.apply(tenant(name, "SA", namespaces=[namespace]))  # needs a license, holds none
    cluster.apply(OVERRIDES % (name, "Audit"))
    try:
        wait_until(
            lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", namespace).returncode == 0,
            what=f"the default ServiceAccount of {namespace}",
        )
        admitted = cluster.eventually(pod("would-be", namespace), "NoLicense")  # admitted, Audit
        assert admitted.ok
        assert cluster.create(pod("would-be", namespace)).code == "NoLicense"
        wait_until(
            lambda: (cluster.get("tenant", name).get("status") or {}).get("auditFindings") == 1,
            timeout=SOON,
            what="the Tenant's status to show one would-be violation",
        )
        assert cluster.get("tenant", name)["status"]["violations"] == 0

        def violation_events() -> list[str]:
            items = cluster.get("events", "-n", namespace, "--field-selector=reason=NoLicense")["items"]
            return [str(e["message"]) for e in items if "so it is a violation" in str(e["message"])]

        assert violation_events() == []

        cluster.apply(OVERRIDES % (name, "Enforce"))
        wait_until(
            lambda: (cluster.get("tenant", name).get("status") or {}).get("violations") == 1,
            timeout=SOON,
            what="the would-be denial to become a violation",
        )
        assert cluster.get("tenant", name)["status"]["violationsByCode"] == {"NoLicense": 1}
        wait_until(lambda: len(violation_events()) == 1, timeout=SOON, what="a violation Event on the pod")
    finally:
        cluster.apply(POLICY % "Report")


# -- acted upon ------------------------------------------------------------------------------
POLICY = """
apiVersion: computegate.io/v1alpha1
kind: CompliancePolicy
metadata: {name: default}
spec: {enforcement: Enforce, onViolation: %s, evictionGracePeriod: 2s}
"""


def test_evict_evicts_a_violating_pod_and_a_pdb_blocks_it_and_is_reported(cluster: Cluster) -> None:
    _, namespace, lic = licensed(cluster, 2)
    start(cluster, namespace, "guarded", labels={"app": "guarded"})
    start(cluster, namespace, "free")
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "guarded", "namespace": namespace},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}},
    }
    cluster.apply(yaml.safe_dump(pdb))
    wait_until(
        lambda: (
            (cluster.get("pdb", "guarded", "-n", namespace).get("status") or {}).get("currentHealthy") == 1
        ),
        timeout=30,
        what="the disruption controller to observe the PodDisruptionBudget",
    )
    cluster.apply(POLICY % "Evict")
    try:
        patch = {"spec": {"revoked": True}}
        assert (
            cluster.kubectl("patch", "exportlicense", lic, "--type=merge", "-p", json.dumps(patch)).returncode
            == 0
        )
        wait_until(
            lambda: "free" in warnings(cluster, namespace, "Evicted"),
            timeout=30,
            what="the unguarded pod to be evicted",
        )
        wait_until(
            lambda: all(
                p["metadata"]["name"] != "free" or p["metadata"].get("deletionTimestamp")
                for p in cluster.get("pods", "-n", namespace)["items"]
            ),
            timeout=30,
            what="the evicted pod to go",
        )
        wait_until(
            lambda: "guarded" in warnings(cluster, namespace, "EvictionBlocked"),
            timeout=30,
            what="EvictionBlocked on the pod a PodDisruptionBudget protects",
        )
        guarded = cluster.get("pod", "guarded", "-n", namespace)
        assert not guarded["metadata"].get("deletionTimestamp")
    finally:
        cluster.apply(POLICY % "Report")


# -- the usage record ------------------------------------------------------------------------
def records_of(cluster: Cluster, tenant_name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get("usagerecords", "-l", f"computegate.io/tenant={tenant_name}")[
        "items"
    ]
    return items


def test_usage_figures_equal_the_pods_run_interval_times_its_tpp_and_verify_catches_an_edit(
    cluster: Cluster, tmp_path: Path
) -> None:
    name, namespace, lic = licensed(cluster, 1)
    start(cluster, namespace, "meter")
    started = parse(cluster.get("pod", "meter", "-n", namespace)["status"]["startTime"])
    time.sleep(4)
    assert cluster.kubectl("delete", "pod", "meter", "-n", namespace, "--wait=true").returncode == 0
    ended = datetime.now(UTC)
    # The period (USAGE_PERIOD seconds here, a day by default) that held the end must close first.
    wait_until(
        lambda: any(parse(r["spec"]["periodEnd"]) >= ended for r in records_of(cluster, name)),
        timeout=USAGE_PERIOD + 10,
        what="the usage records of the periods the pod ran in",
    )
    records = records_of(cluster, name)
    tpp_hours = sum(float(r["spec"]["licenses"].get(lic, {}).get("tppHours", 0)) for r in records)
    accelerator_hours = sum(
        float(r["spec"]["licenses"].get(lic, {}).get("acceleratorHours", 0)) for r in records
    )
    expected_seconds = (ended - started).total_seconds()
    # startTime has whole seconds; the end is when the operator saw the pod go (under a second).
    assert abs(tpp_hours * 3600 / H100_TPP - expected_seconds) < 2.5, (tpp_hours, expected_seconds)
    assert abs(accelerator_hours * 3600 - expected_seconds) < 2.5
    assert sum(r["spec"]["admissions"].get("Licensed", 0) for r in records) == 1

    verify = _computegate("verify", f"--kubeconfig={cluster.plane.kubeconfig_path}")
    assert verify.returncode == 0, verify.stderr
    # A record cannot be changed through the API ...
    first = records[0]["metadata"]["name"]
    edit = {"spec": {"licenses": {lic: {"tppHours": "0.000001"}}}}
    refused = cluster.kubectl("patch", "usagerecord", first, "--type=merge", "-p", json.dumps(edit))
    assert refused.returncode != 0 and "cannot be changed" in refused.stderr
    # ... and an edit of an exported copy (or of etcd behind the API's back) is caught.
    exported = _computegate(
        "usage", "export", "--to", str(tmp_path), f"--kubeconfig={cluster.plane.kubeconfig_path}"
    )
    assert exported.returncode == 0, exported.stderr
    assert _computegate("verify", "--folder", str(tmp_path)).returncode == 0
    path = tmp_path / f"{first}.yaml"
    body = yaml.safe_load(path.read_text())
    body["spec"]["licenses"] = {lic: {"tppHours": "0.000001", "acceleratorHours": "0.000001"}}
    path.write_text(yaml.safe_dump(body))
    caught = _computegate("verify", "--folder", str(tmp_path))
    assert caught.returncode == 1 and "edited" in caught.stderr


def test_a_live_record_carries_the_lowest_cap_and_the_violations_and_the_report_shows_them(
    cluster: Cluster,
) -> None:
    name, namespace, lic = licensed(cluster, 2)
    start(cluster, namespace, "capped")
    before = datetime.now(UTC)
    lowered = H100_TPP // 2  # below the running pod's one H100: a violation
    patch = {"spec": {"maxTPP": lowered}}
    assert (
        cluster.kubectl("patch", "exportlicense", lic, "--type=merge", "-p", json.dumps(patch)).returncode
        == 0
    )

    def violating() -> list[dict[str, Any]]:
        return [r for r in records_of(cluster, name) if r["spec"].get("violations")]

    wait_until(
        lambda: bool(violating()), timeout=2 * USAGE_PERIOD + 15, what="a usage record with a violation"
    )
    spec = violating()[0]["spec"]
    assert spec["violations"] == {"LicenseCapExceeded": 1}  # one pod, no other tenant's
    assert spec["licenses"][lic]["maxTPP"] == f"{lowered:.6f}"  # the lowest cap of that period
    assert all(
        float(r["spec"]["licenses"][lic]["maxTPP"]) in (lowered, 2 * H100_TPP)
        for r in records_of(cluster, name)
        if lic in r["spec"]["licenses"]
    )

    span = (
        f"--from={(before - timedelta(minutes=5)).isoformat()}",
        f"--to={(datetime.now(UTC) + timedelta(minutes=1)).isoformat()}",
    )
    live = (f"--kubeconfig={cluster.plane.kubeconfig_path}", f"--tenant={name}", *span)
    as_json = _computegate("report", "usage", *live, "--format=json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["chainProblems"] == []
    assert report["violations"]["LicenseCapExceeded"] >= 1
    assert min(p["maxTPP"] for p in report["licenses"][lic]["periods"]) == lowered
    as_html = _computegate("report", "usage", *live, "--format=html")
    assert as_html.returncode == 0, as_html.stderr
    assert f"<td>{lowered:,.0f}</td>" in as_html.stdout  # the cap column
    assert "<tr><td>LicenseCapExceeded</td>" in as_html.stdout  # the violations table
    # Leave no violation behind: the eviction tests after this one have a budget to keep.
    assert cluster.kubectl("delete", "pod", "capped", "-n", namespace, "--wait=true").returncode == 0


# -- several replicas: what a change of leader keeps, what every replica adds ------------------
def replicas(cluster: Cluster) -> list[ManagedProcess]:
    found = [p for p in cluster.plane.running_processes() if p.name.startswith("computegate-webhook")]
    assert len(found) == REPLICAS, [p.name for p in found]
    return found


def leader_pid(cluster: Cluster) -> int:
    """The pid in the Lease holder's identity (``<host>_<pid>_<random>``)."""
    lease = cluster.get("lease", "computegate-ledger", "-n", "computegate-system")
    return int(str(lease["spec"]["holderIdentity"]).rsplit("_", 2)[1])


def denials_answered(process: ManagedProcess, code: str) -> float:
    argv = list(process.argv)
    port = argv[argv.index("--health-port") + 1]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    wanted = ('webhook="validate-workloads"', f'code="{code}"', 'result="denied"')
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("computegate_admission_decisions_total{") and all(w in line for w in wanted)
    )


GRACE = 45
GRACE_POLICY = f"""
apiVersion: computegate.io/v1alpha1
kind: CompliancePolicy
metadata: {{name: default}}
spec: {{enforcement: Enforce, onViolation: Evict, evictionGracePeriod: {GRACE}s}}
"""


def test_a_new_leader_continues_the_eviction_grace_period_the_last_one_started(cluster: Cluster) -> None:
    name, namespace, lic = licensed(cluster, 1)
    start(cluster, namespace, "graced")
    cluster.apply(GRACE_POLICY)
    try:
        patch = {"spec": {"revoked": True}}
        assert (
            cluster.kubectl("patch", "exportlicense", lic, "--type=merge", "-p", json.dumps(patch)).returncode
            == 0
        )

        def first_seen() -> datetime | None:
            pods = (cluster.get("tenant", name).get("status") or {}).get("violatingPods") or []
            return next((parse(p["since"]) for p in pods if p["name"] == "graced"), None)

        wait_until(
            lambda: first_seen() is not None, timeout=SOON, what="the violation in the Tenant's status"
        )
        since = first_seen()
        assert since is not None
        # The leader stops answering (paused, as a node that hangs): the other replica takes the
        # Lease when it expires, and must count the grace period from ``since``, not from then.
        old = leader_pid(cluster)
        os.kill(old, signal.SIGSTOP)
        try:
            wait_until(
                lambda: leader_pid(cluster) != old, timeout=40, what="the other replica to take the Lease"
            )
        finally:
            os.kill(old, signal.SIGCONT)
        took_over = datetime.now(UTC)
        assert took_over < since + timedelta(seconds=GRACE - 10), "the takeover came too late to tell"
        assert "graced" not in warnings(cluster, namespace, "Evicted")

        wait_until(
            lambda: "graced" in warnings(cluster, namespace, "Evicted"),
            timeout=GRACE + 30,
            what="the eviction at the end of the grace period",
        )
        evicted = datetime.now(UTC)
        assert evicted >= since + timedelta(seconds=GRACE - 1)
        # Counted again from the takeover it would come at ``took_over + GRACE`` at the earliest.
        assert evicted < took_over + timedelta(seconds=GRACE - 5), (since, took_over, evicted)
    finally:
        cluster.apply(POLICY % "Report")


def _deny_at_once(cluster: Cluster, namespace: str, count: int) -> list[str]:
    """``count`` pod creates at the same moment, each from its own client (so the API server
    opens several connections, and the forwarder spreads them): the code of each refusal."""

    def create(index: int) -> str:
        api = cluster.plane.api_client()
        body = yaml.safe_load(pod(f"d{index}-{uuid.uuid4().hex[:4]}", namespace))
        try:
            client.CoreV1Api(api).create_namespaced_pod(namespace, body)
            return "Admitted"
        except ApiException as error:
            message = json.loads(error.body or "{}").get("message", "")
            return message.split("[", 1)[1].split("]", 1)[0] if "[" in message else f"HTTP {error.status}"
        finally:
            api.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(create, range(count)))


def test_a_denial_answered_by_a_replica_that_does_not_lead_is_in_the_usage_record(cluster: Cluster) -> None:
    name = unique("denied")
    namespace = f"{name}-ml"
    cluster.apply(tenant(name, "SA", namespaces=[namespace]))  # needs a license, holds none
    wait_until(
        lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", namespace).returncode == 0,
        what=f"the default ServiceAccount of {namespace}",
    )
    leader = leader_pid(cluster)
    followers = [p for p in replicas(cluster) if p.pid != leader]
    before = sum(denials_answered(p, "NoLicense") for p in followers)
    codes: list[str] = []
    for _ in range(5):  # until the replica that does not lead has answered some
        codes += _deny_at_once(cluster, namespace, 12)
        if sum(denials_answered(p, "NoLicense") for p in followers) > before:
            break
    assert set(codes) == {"NoLicense"}, codes
    by_followers = sum(denials_answered(p, "NoLicense") for p in followers) - before
    assert by_followers > 0, "the replica that does not lead answered none of the denials"
    assert leader_pid(cluster) == leader  # the same leader wrote the records below

    def denials_recorded() -> int:
        return sum(int(r["spec"]["denials"].get("NoLicense", 0)) for r in records_of(cluster, name))

    wait_until(
        lambda: denials_recorded() >= len(codes),
        timeout=2 * USAGE_PERIOD + 15,
        what=f"{len(codes)} denials in the usage records",
    )
    assert denials_recorded() == len(codes)  # each once
    tallies = cluster.get(
        "configmaps", "-n", "computegate-system", "-l", "app.kubernetes.io/component=denial-tally"
    )
    assert len(tallies["items"]) >= 2  # the follower's tally, and the leader's


# -- pods no decision stamped -----------------------------------------------------------------
WEBHOOK_CONFIGURATIONS = (
    ("validatingwebhookconfiguration", "computegate-validating"),
    ("mutatingwebhookconfiguration", "computegate-mutating"),
)
SERVER_FIELDS = ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields")


def test_a_pod_that_ran_while_the_webhooks_were_away_is_judged_after_all(cluster: Cluster) -> None:
    """An admin takes the webhooks out (an emergency, or ComputeGate not installed yet), and a
    restricted tenant with no license starts an H100 pod; ComputeGate reports it all the same."""
    name = unique("c")
    namespace = f"{name}-ml"
    cluster.apply(tenant(name, "CN", namespaces=[namespace]))
    wait_until(
        lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", namespace).returncode == 0,
        what=f"the default ServiceAccount of {namespace}",
    )
    saved = [cluster.get(kind, config) for kind, config in WEBHOOK_CONFIGURATIONS]
    try:
        for kind, config in WEBHOOK_CONFIGURATIONS:
            assert cluster.kubectl("delete", kind, config).returncode == 0
        created = cluster.create(pod("unjudged", namespace))
        assert created.ok and created.code is None, created.stderr  # nothing judged or stamped it
    finally:
        for body in saved:
            body["metadata"] = {k: v for k, v in body["metadata"].items() if k not in SERVER_FIELDS}
            cluster.apply(yaml.safe_dump(body))
    wait_until(
        lambda: "unjudged" in warnings(cluster, namespace, "NoLicense"),
        timeout=SOON,
        what="a NoLicense Warning Event on the pod no decision stamped",
    )
    event = warnings(cluster, namespace, "NoLicense")["unjudged"]
    assert "[NoLicense]" in event["message"] and name in event["message"]
    wait_until(
        lambda: (cluster.get("tenant", name).get("status") or {}).get("violationsByCode") == {"NoLicense": 1},
        timeout=SOON,
        what="the Tenant's status to count the violation",
    )
    refused = cluster.create(pod("judged", namespace))  # the webhooks are back
    assert not refused.ok and refused.code == "NoLicense", refused.stderr
