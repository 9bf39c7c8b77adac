"""The license ledger holds a cap under concurrency, across replicas, through a pod's life.

Three webhook replicas, each its own process with its own view, run as the chart's
ServiceAccount behind one loopback endpoint that spreads the API server's connections over
them (``computegate.devcluster._spread``, what ``dev up --webhook-replicas`` runs). Tenants'
pods are created by many clients at the same moment, through the real API server.
A control plane of its own: these tests register the webhooks at the forwarder.
"""

from __future__ import annotations

import json
import os
import signal
import time
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

from computegate.devcluster import ControlPlane, ControlPlaneError, find_binaries, install_crds
from computegate.devcluster._spread import Spreader
from computegate.webhook.certs import ensure_serving_files
from tests.e2e.webhook_support import (
    ENFORCE,
    H100,
    H100_TPP,
    NODE_CAPACITY,
    NODES,
    OPERATOR_NAMESPACE,
    OPERATOR_SERVICE_ACCOUNT,
    RESERVATION_TTL,
    TENANT_ROLE,
    Cluster,
    Operator,
    bind_tenant_user,
    chart_rbac,
    license,
    register,
    tenant,
    unique,
    wait_until,
)
from tests.identities import token_kubeconfig

pytestmark = pytest.mark.e2e

REPLICAS = 3
CONCURRENT = 50
GROUP, VERSION = "computegate.io", "v1alpha1"


class Replicated:
    def __init__(
        self, cluster: Cluster, replicas: list[Operator], mutating: Spreader, validating: Spreader
    ) -> None:
        self.cluster = cluster
        self.replicas = replicas
        self.mutating = mutating
        self.validating = validating  # its own endpoint, so a test can hold back only its answers
        self.admin = cluster.plane.api_client()

    def licensed(self, chips: int) -> tuple[str, str, str]:
        """A Saudi tenant (needs a license) whose H100 license fits exactly ``chips`` pods."""
        name = unique("burst")
        namespace, lic = f"{name}-ns", f"{name}-lic"
        self.cluster.apply(tenant(name, "SA", namespaces=[namespace]))
        self.cluster.apply(license(lic, name, max_tpp=chips * H100_TPP))
        for replica in self.replicas:  # every replica's view has the license before the burst
            wait_until(
                lambda replica=replica: replica.metric("computegate_license_headroom_tpp", license=lic) > 0,
                timeout=30,
                what=f"replica {replica.port} to see {lic}",
            )
        return name, namespace, lic

    def ledger(self, lic: str) -> dict[str, Any]:
        obj = client.CustomObjectsApi(self.admin).get_cluster_custom_object(
            GROUP, VERSION, "exportlicenses", lic
        )
        status: dict[str, Any] = obj.get("status") or {}
        return status

    def live_pods(self, namespace: str) -> list[str]:
        pods = client.CoreV1Api(self.admin).list_namespaced_pod(namespace).items
        return sorted(p.metadata.name for p in pods)

    def delete_pods(self, namespace: str) -> None:
        core = client.CoreV1Api(self.admin)
        core.delete_collection_namespaced_pod(namespace)
        wait_until(lambda: not self.live_pods(namespace), timeout=30, what="the pods to go")


def _pod(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "nodeSelector": {"nvidia.com/gpu.product": H100},
            "containers": [
                {
                    "name": "main",
                    "image": "registry.example/train:1",
                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                }
            ],
        },
    }


def burst(plane: ControlPlane, kubeconfig: Path, namespace: str, count: int = CONCURRENT) -> dict[str, str]:
    """``count`` pod creates at the same moment, each from its own client: name -> outcome."""

    def create(index: int) -> tuple[str, str]:
        name = f"p{index}-{uuid.uuid4().hex[:4]}"
        api = plane.api_client(kubeconfig)
        try:
            client.CoreV1Api(api).create_namespaced_pod(namespace, _pod(name, namespace))
            return name, "Admitted"
        except ApiException as error:
            message = json.loads(error.body or "{}").get("message", "")
            code = message.split("[", 1)[1].split("]", 1)[0] if "[" in message else f"HTTP {error.status}"
            return name, code
        finally:
            api.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return dict(pool.map(create, range(count)))


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicated]:
    try:
        plane = ControlPlane.start(
            tmp_path_factory.mktemp("ledger-plane"), binaries=find_binaries(require_helm=True)
        )
    except ControlPlaneError as error:
        pytest.fail(f"the control plane did not start: {error}", pytrace=False)
    try:
        install_crds(plane.kubeconfig_path)
        cluster = Cluster(plane)
        cluster.apply(NODES)
        for name, capacity in NODE_CAPACITY.items():
            status = json.dumps({"status": {"capacity": capacity, "allocatable": capacity}})
            cluster.kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", status)
        cluster.apply(ENFORCE)
        cluster.apply(TENANT_ROLE)
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}}
        cluster.apply(yaml.safe_dump_all([namespace, *chart_rbac(plane)]))
        admin = plane.api_client()
        work = tmp_path_factory.mktemp("replicas")
        kubeconfig = token_kubeconfig(
            plane,
            admin,
            namespace=OPERATOR_NAMESPACE,
            service_account=OPERATOR_SERVICE_ACCOUNT,
            path=work / "sa",
        )
        admin.close()
        certs = work / "certs"
        ensure_serving_files(certs, hosts=["127.0.0.1", "localhost"])
        replicas = [
            Operator(plane, work / f"r{i}", kubeconfig=kubeconfig, cert_dir=certs, registered_port=-1)
            for i in range(REPLICAS)
        ]
        mutating, validating = (Spreader([("127.0.0.1", r.port) for r in replicas]) for _ in range(2))
        mutating.start_in_thread()
        validating.start_in_thread()
        for replica in replicas:
            replica.registered_port = validating.port
        register(plane, mutating.port, certs, validating_port=validating.port)
        for replica in replicas:
            replica.start()
        yield Replicated(cluster, replicas, mutating, validating)
        for replica in replicas:
            replica.stop()
    finally:
        plane.stop()


def test_fifty_creates_at_once_admit_exactly_what_fits_every_round_across_three_replicas(
    replicated: Replicated,
) -> None:
    fits = 4
    tenant_name, namespace, lic = replicated.licensed(fits)
    user = bind_tenant_user(replicated.cluster, f"{tenant_name}-user", namespace)
    served_before = [
        r.metric("computegate_admission_decisions_total", webhook="validate-workloads")
        for r in replicated.replicas
    ]
    for _round in range(3):
        outcomes = burst(replicated.cluster.plane, user, namespace)
        admitted = sorted(name for name, code in outcomes.items() if code == "Admitted")
        assert len(admitted) == fits, sorted(outcomes.values())
        assert {code for code in outcomes.values() if code != "Admitted"} == {"LicenseCapExceeded"}
        assert replicated.live_pods(namespace) == admitted
        wait_until(
            lambda: replicated.ledger(lic).get("consumedTPP") == fits * H100_TPP,
            timeout=15,
            what="the reconciled ledger",
        )
        listed = replicated.cluster.kubectl("get", "exportlicense", lic)
        header, row = listed.stdout.splitlines()
        assert header.split()[3:11] == ["MAX", "TPP", "USED", "TPP", "RESERVED", "TPP", "HEADROOM", "TPP"]
        assert row.split()[-2] == "Exhausted"  # the STATE column, before AGE
        replicated.delete_pods(namespace)
        wait_until(
            lambda: replicated.ledger(lic).get("consumedTPP") == 0,
            timeout=15,
            what="the headroom to come back",
        )
    served = [
        r.metric("computegate_admission_decisions_total", webhook="validate-workloads") - before
        for r, before in zip(replicated.replicas, served_before, strict=True)
    ]
    assert all(count > 0 for count in served), served  # every replica judged some of them
    swaps = sum(r.metric("computegate_ledger_swaps_total") for r in replicated.replicas)
    assert swaps > 0  # the admissions were charged to the ledger, not merely counted locally


def test_a_replica_killed_during_a_burst_never_lets_the_cap_be_exceeded(replicated: Replicated) -> None:
    fits = 3
    tenant_name, namespace, lic = replicated.licensed(fits)
    user = bind_tenant_user(replicated.cluster, f"{tenant_name}-user", namespace)
    victim = replicated.replicas[1]
    assert victim.process is not None
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(burst, replicated.cluster.plane, user, namespace)
        time.sleep(0.3)
        os.kill(victim.process.pid, signal.SIGKILL)
        outcomes = pending.result()
    admitted = [name for name, code in outcomes.items() if code == "Admitted"]
    assert len(admitted) <= fits, outcomes
    assert len(replicated.live_pods(namespace)) <= fits
    # Whatever the killed replica reserved for pods that never came is dropped at the TTL.
    live = len(replicated.live_pods(namespace))
    wait_until(
        lambda: replicated.ledger(lic).get("headroomTPP") == (fits - live) * H100_TPP,
        timeout=RESERVATION_TTL + 20,
        what="headroom = cap - live pods",
    )
    victim.stop()
    victim.start()  # a cold view: it must not admit past the cap either
    more = burst(replicated.cluster.plane, user, namespace, count=10)
    assert sum(code == "Admitted" for code in more.values()) <= fits - live
    assert len(replicated.live_pods(namespace)) <= fits
    replicated.delete_pods(namespace)


def test_dry_runs_and_audit_only_admissions_reserve_nothing_and_licensed_pods_under_audit_do(
    replicated: Replicated,
) -> None:
    cluster = replicated.cluster
    _tenant_name, namespace, lic = replicated.licensed(2)
    dry = cluster.create(yaml.safe_dump(_pod("dry", namespace)), dry_run=True)
    assert dry.ok and dry.code == "Licensed"
    unlicensed_tenant, unlicensed_ns = unique("audit"), unique("audit-ns")
    cluster.apply(tenant(unlicensed_tenant, "SA", namespaces=[unlicensed_ns]))
    cluster.kubectl(
        "patch", "compliancepolicy", "default", "--type=merge", "-p", '{"spec":{"enforcement":"Audit"}}'
    )
    try:
        cluster.eventually(yaml.safe_dump(_pod("probe", unlicensed_ns)), "NoLicense")
        audit_only = cluster.create(yaml.safe_dump(_pod("audit-only", unlicensed_ns)))
        assert audit_only.ok and audit_only.annotations.get("computegate.io/decision") == "Audit"
        licensed = cluster.create(yaml.safe_dump(_pod("licensed-under-audit", namespace)))
        assert licensed.ok and licensed.annotations.get("computegate.io/license") == lic
        reservations = replicated.ledger(lic).get("ledger", {}).get("reservations", {})
        pods = {entry["pod"] for entry in reservations.values()}
        assert f"{namespace}/dry" not in pods
        wait_until(
            lambda: replicated.ledger(lic).get("consumedTPP") == H100_TPP, timeout=15, what="one pod counted"
        )
    finally:
        cluster.kubectl(
            "patch", "compliancepolicy", "default", "--type=merge", "-p", '{"spec":{"enforcement":"Enforce"}}'
        )
    assert licensed.obj is not None
    replicated.delete_pods(namespace)
    replicated.delete_pods(unlicensed_ns)


def test_deleting_pods_frees_headroom_within_seconds(replicated: Replicated) -> None:
    _tenant_name, namespace, _lic = replicated.licensed(2)
    cluster = replicated.cluster
    for index in range(2):
        assert cluster.create(yaml.safe_dump(_pod(f"fill-{index}", namespace))).ok
    assert cluster.create(yaml.safe_dump(_pod("over", namespace))).code == "LicenseCapExceeded"
    started = time.monotonic()
    cluster.kubectl("delete", "pod", "fill-0", "-n", namespace)
    wait_until(
        lambda: cluster.create(yaml.safe_dump(_pod(unique("again"), namespace))).ok,
        timeout=15,
        what="room again",
    )
    assert time.monotonic() - started < 15
    replicated.delete_pods(namespace)


def test_a_pod_refused_after_its_reservation_gives_the_headroom_back_at_the_ttl(
    replicated: Replicated,
) -> None:
    """ResourceQuota runs after the validating webhooks: a reservation without a pod."""
    cluster = replicated.cluster
    _tenant, namespace, lic = replicated.licensed(2)
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-gpus", "namespace": namespace},
        "spec": {"hard": {"requests.nvidia.com/gpu": "0"}},
    }
    cluster.apply(yaml.safe_dump(quota))
    status = json.dumps(
        {"status": {"hard": {"requests.nvidia.com/gpu": "0"}, "used": {"requests.nvidia.com/gpu": "0"}}}
    )
    cluster.kubectl(
        "patch",
        "resourcequota",
        "no-gpus",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    )
    refused = cluster.create(yaml.safe_dump(_pod("quota", namespace)))
    assert not refused.ok and "exceeded quota" in refused.stderr
    _leaks_then_comes_back(replicated, lic, "quota")


def _leaks_then_comes_back(replicated: Replicated, lic: str, pod: str) -> None:
    """The reservation of a pod that was never created holds its headroom, then goes at the TTL."""
    wait_until(
        lambda: replicated.ledger(lic).get("consumedTPP") == H100_TPP,
        timeout=10,
        what="the reservation without a pod to show as consumed",
    )
    (entry,) = _reservations(replicated, lic)
    assert entry["pod"].split("/")[1] == pod
    reserved_at = datetime.fromisoformat(entry["at"].replace("Z", "+00:00"))
    wait_until(
        lambda: (
            replicated.ledger(lic).get("headroomTPP") == 2 * H100_TPP and not _reservations(replicated, lic)
        ),
        timeout=RESERVATION_TTL + 20,
        what="the reservation to go at the TTL",
    )
    assert datetime.now(UTC) - reserved_at >= timedelta(seconds=RESERVATION_TTL)  # not before the TTL


def _reservations(replicated: Replicated, lic: str) -> list[dict[str, Any]]:
    return list((replicated.ledger(lic).get("ledger") or {}).get("reservations", {}).values())


def test_an_answer_the_api_server_gave_up_on_gives_the_headroom_back_at_the_ttl(
    replicated: Replicated,
) -> None:
    cluster = replicated.cluster
    _tenant, namespace, lic = replicated.licensed(2)
    replicated.validating.delay = 6.0  # the webhooks' timeoutSeconds is 5
    try:
        late = cluster.create(yaml.safe_dump(_pod("late", namespace)))
    finally:
        replicated.validating.delay = 0.0
    assert not late.ok
    assert replicated.live_pods(namespace) == []
    _leaks_then_comes_back(replicated, lic, "late")
