"""The chart's RBAC lets the operator do its whole job and nothing more.

Every call here authenticates with a token minted (TokenRequest) for the chart's own
ServiceAccount, against the RBAC objects the Helm release installed: first the operator's API
calls one by one, then the real operator (`computegate webhook --tls-self-managed`) run locally
with those credentials until it is ready, then what it must not be able to do.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from computegate.devcluster import ControlPlane
from computegate.vocabulary import STATE_KINDS
from computegate.webhook import selftls, tlsplan
from computegate.webhook.configuration import MUTATING_CONFIGURATION, VALIDATING_CONFIGURATION
from tests.chart.conftest import NAMESPACE, RELEASE, Release
from tests.identities import token_kubeconfig

pytestmark = pytest.mark.e2e

GROUP, VERSION = "computegate.io", "v1alpha1"
TENANT_NAMESPACE = "rbac-tenant"
LICENSE = "rbac-license"
SECRET = "computegate-tls"  # the chart's default TLS Secret name for release `computegate`


@pytest.fixture(scope="module")
def operator_kubeconfig(
    chart_plane: ControlPlane, admin: Any, release: Release, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return token_kubeconfig(
        chart_plane,
        admin,
        namespace=release.namespace,
        service_account=RELEASE,
        path=tmp_path_factory.mktemp("rbac") / "operator.kubeconfig",
    )


@pytest.fixture(scope="module")
def operator(operator_kubeconfig: Path) -> Iterator[Any]:
    """An ApiClient that is the chart's operator ServiceAccount."""
    new_client: Callable[..., Any] = config.new_client_from_config
    api = new_client(config_file=str(operator_kubeconfig))
    yield api
    api.close()


@pytest.fixture(scope="module")
def license_objects(admin: Any) -> str:
    """A tenant namespace, a tenant and its license, made by the admin."""
    core = client.CoreV1Api(admin)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=TENANT_NAMESPACE)))
    except ApiException as error:
        if error.status != 409:
            raise
    custom = client.CustomObjectsApi(admin)
    custom.create_cluster_custom_object(
        GROUP,
        VERSION,
        "tenants",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Tenant",
            "metadata": {"name": "rbac-tenant"},
            "spec": {"jurisdiction": "AE", "kyc": {"status": "Verified"}, "namespaces": [TENANT_NAMESPACE]},
        },
    )
    custom.create_cluster_custom_object(
        GROUP,
        VERSION,
        "exportlicenses",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ExportLicense",
            "metadata": {"name": LICENSE},
            "spec": {
                "tenant": "rbac-tenant",
                "licenseNumber": "D0000001",
                "authority": "US-BIS",
                "validFrom": "2026-01-01T00:00:00Z",
                "validUntil": "2030-01-01T00:00:00Z",
                "maxTPP": 100000,
            },
        },
    )
    return LICENSE


def _forbidden(call: Callable[[], Any]) -> None:
    with pytest.raises(ApiException) as refused:
        call()
    assert refused.value.status == 403, refused.value.body


def _lists_and_watches(list_call: Callable[..., Any]) -> int:
    listed = list_call()
    items = listed["items"] if isinstance(listed, dict) else listed.items
    events = list(watch.Watch().stream(list_call, timeout_seconds=1))
    assert all(event["type"] in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK") for event in events)
    return len(items)


def test_operator_service_account_lists_and_watches_everything_it_decides_from(
    operator: Any, license_objects: str
) -> None:
    custom = client.CustomObjectsApi(operator)
    core = client.CoreV1Api(operator)

    def cluster(group: str, version: str, plural: str) -> Callable[..., Any]:
        return lambda **kwargs: custom.list_cluster_custom_object(group, version, plural, **kwargs)

    core_lists = {
        "namespaces": core.list_namespace,
        "nodes": core.list_node,
        "pods": core.list_pod_for_all_namespaces,
    }
    # Every kind the operator's watches read (vocabulary.STATE_KINDS), DRA's in the served version.
    calls: dict[str, Callable[..., Any]] = {
        kind.plural: (
            cluster(kind.group, kind.version or "v1", kind.plural) if kind.group else core_lists[kind.plural]
        )
        for kind in STATE_KINDS
    }
    counts = {name: _lists_and_watches(call) for name, call in calls.items()}
    assert counts["exportlicenses"] >= 1 and counts["compliancepolicies"] == 1
    assert counts["namespaces"] >= 2


def test_operator_service_account_swaps_license_status_but_not_the_license(
    operator: Any, license_objects: str
) -> None:
    custom = client.CustomObjectsApi(operator)
    current = custom.get_cluster_custom_object(GROUP, VERSION, "exportlicenses", license_objects)
    ledger = {"committedTPP": "0", "committedAccelerators": "0", "reservations": {}}
    swapped = custom.replace_cluster_custom_object_status(
        GROUP, VERSION, "exportlicenses", license_objects, {**current, "status": {"ledger": ledger}}
    )
    assert swapped["status"]["ledger"] == ledger
    with pytest.raises(ApiException) as stale:  # the same resourceVersion again: the swap is lost
        custom.replace_cluster_custom_object_status(
            GROUP, VERSION, "exportlicenses", license_objects, {**current, "status": {}}
        )
    assert stale.value.status == 409
    _forbidden(
        lambda: custom.patch_cluster_custom_object(
            GROUP, VERSION, "exportlicenses", license_objects, {"spec": {"maxTPP": 10**9}}
        )
    )
    _forbidden(lambda: custom.delete_cluster_custom_object(GROUP, VERSION, "exportlicenses", license_objects))


def test_operator_service_account_records_events_in_tenant_namespaces(
    operator: Any, license_objects: str
) -> None:
    now = datetime.now(UTC)
    event = client.CoreV1Api(operator).create_namespaced_event(
        TENANT_NAMESPACE,
        client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name="computegate-"),
            involved_object=client.V1ObjectReference(kind="Pod", name="gpu", namespace=TENANT_NAMESPACE),
            reason="NoLicense",
            message="[NoLicense] test",
            type="Warning",
            first_timestamp=now,
            last_timestamp=now,
            source=client.V1EventSource(component="computegate"),
        ),
    )
    assert event.metadata.name.startswith("computegate-")


def test_operator_service_account_keeps_the_usage_records_working_state_and_nothing_else(
    operator: Any, admin: Any
) -> None:
    core, core_admin = client.CoreV1Api(operator), client.CoreV1Api(admin)
    tally = {
        "metadata": {"name": "computegate-denials-rbac", "labels": {"probe": "rbac"}},
        "data": {"k": "1"},
    }
    core.create_namespaced_config_map(NAMESPACE, tally)
    core.replace_namespaced_config_map("computegate-denials-rbac", NAMESPACE, {**tally, "data": {"k": "2"}})
    listed = core.list_namespaced_config_map(NAMESPACE, label_selector="probe=rbac", limit=1)
    assert [c.metadata.name for c in listed.items] == ["computegate-denials-rbac"]
    try:  # the writer's checkpoint (a real operator of this release may have made it already)
        core.create_namespaced_config_map(NAMESPACE, {"metadata": {"name": "computegate-usage-checkpoint"}})
    except ApiException as error:
        assert error.status == 409, error.body
    assert core.read_namespaced_config_map("computegate-usage-checkpoint", NAMESPACE).metadata.name
    _forbidden(lambda: core.read_namespaced_config_map("computegate-denials-rbac", NAMESPACE))
    _forbidden(lambda: core.list_namespaced_config_map("kube-system"))
    _forbidden(lambda: core.create_namespaced_config_map("kube-system", {"metadata": {"name": "x"}}))
    _forbidden(lambda: core.read_namespaced_config_map("kube-root-ca.crt", "kube-system"))
    for name in ("computegate-denials-rbac", "computegate-usage-checkpoint"):
        core.delete_namespaced_config_map(name, NAMESPACE)
    assert core_admin.list_namespaced_config_map(NAMESPACE, label_selector="probe=rbac").items == []
    custom = client.CustomObjectsApi(operator)
    custom.delete_collection_cluster_custom_object(
        GROUP, VERSION, "usagerecords", label_selector="computegate.io/day in (1999-01-01)"
    )
    assert custom.list_cluster_custom_object(GROUP, VERSION, "usagerecords", limit=1)["items"] == []
    _forbidden(lambda: custom.get_cluster_custom_object(GROUP, VERSION, "usagerecords", "any.1999-01-01"))


def test_operator_service_account_reads_the_controller_a_scale_request_names(
    operator_kubeconfig: Path, admin: Any, license_objects: str
) -> None:
    import asyncio

    from computegate.webhook.kube import Kube

    apps = client.AppsV1Api(admin)
    template = {
        "metadata": {"labels": {"app": "scaled"}},
        "spec": {"containers": [{"name": "main", "image": "registry.example/serve:1"}]},
    }
    for kind, create in (
        ("deployments", apps.create_namespaced_deployment),
        ("replicasets", apps.create_namespaced_replica_set),
        ("statefulsets", apps.create_namespaced_stateful_set),
    ):
        spec: dict[str, Any] = {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "scaled"}},
            "template": template,
        }
        if kind == "statefulsets":
            spec["serviceName"] = "scaled"
        create(TENANT_NAMESPACE, {"metadata": {"name": f"scaled-{kind}"}, "spec": spec})
    kube = Kube.connect(operator_kubeconfig)
    try:
        for kind in ("deployments", "replicasets", "statefulsets"):
            read = asyncio.run(kube.read_controller(kind, TENANT_NAMESPACE, f"scaled-{kind}"))
            assert read is not None and read["metadata"]["name"] == f"scaled-{kind}"
    finally:
        kube.close()


def test_operator_service_account_runs_the_self_managed_tls_code_itself(
    operator: Any, admin: Any, release: Release, tmp_path: Path
) -> None:
    core_admin = client.CoreV1Api(admin)
    try:
        core_admin.delete_namespaced_secret(SECRET, NAMESPACE)  # so the create path runs as the SA too
    except ApiException as error:
        if error.status != 404:
            raise
    names = [VALIDATING_CONFIGURATION, MUTATING_CONFIGURATION]
    common: dict[str, Any] = {
        "namespace": NAMESPACE,
        "secret_name": SECRET,
        "service_name": RELEASE,
        "cert_dir": tmp_path / "certs",
        "webhook_configurations": names,
    }
    first = selftls.sync_once(operator, **common)  # create the Secret, inject the CA
    renewed = selftls.sync_once(operator, now=datetime.now(UTC) + timedelta(days=75), **common)  # update it
    assert renewed.ca_cert == first.ca_cert and renewed.tls_cert != first.tls_cert
    stored = core_admin.read_namespaced_secret(SECRET, NAMESPACE)
    assert tlsplan.TlsMaterial.from_secret_data(stored.data) == renewed
    admission = client.AdmissionregistrationV1Api(admin)
    for configuration in (
        admission.read_validating_webhook_configuration(VALIDATING_CONFIGURATION),
        admission.read_mutating_webhook_configuration(MUTATING_CONFIGURATION),
    ):
        assert configuration.webhooks
        assert all(hook.client_config.ca_bundle for hook in configuration.webhooks)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _served_certificate(port: int, ca_file: Path) -> bytes:
    """Handshake as the API server would (the Service's DNS name, our CA bundle); the peer's DER."""
    context = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=f"{RELEASE}.{NAMESPACE}.svc") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_the_real_operator_becomes_ready_with_only_the_chart_service_account(
    operator_kubeconfig: Path, admin: Any, license_objects: str, tmp_path: Path
) -> None:
    health, webhook = _free_port(), _free_port()
    log = tmp_path / "operator.log"
    argv = [
        sys.executable,
        "-m",
        "computegate",
        "webhook",
        f"--kubeconfig={operator_kubeconfig}",
        "--addr=127.0.0.1",
        f"--port={webhook}",
        "--health-addr=127.0.0.1",
        f"--health-port={health}",
        f"--cert-dir={tmp_path / 'certs'}",
        "--tls-self-managed",
        f"--namespace={NAMESPACE}",
        f"--secret-name={SECRET}",
        f"--service-name={RELEASE}",
        f"--exempt-namespace={NAMESPACE}",
        "--exempt-namespace=kube-system",
    ]
    env = {**os.environ, "KUBECONFIG": str(operator_kubeconfig)}
    with log.open("wb") as output:
        process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, env=env)
        try:
            ready = False
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{health}/readyz", timeout=2) as response:
                        ready = response.status == 200
                except OSError:
                    ready = False
                if ready:
                    break
                time.sleep(0.5)
            time.sleep(2)  # let every watch start, so a refused one shows in the log
            served = _served_certificate(webhook, tmp_path / "certs" / "ca.crt") if ready else None
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    text = log.read_text(errors="replace")
    assert ready, f"the operator never became ready as the chart's ServiceAccount:\n{text[-4000:]}"
    for refusal in ("403", "Forbidden", "forbidden", "Not enough permissions"):
        assert refusal not in text, f"the operator was refused something ({refusal}):\n{text[-4000:]}"
    # The API server's view: the served certificate is trusted by the injected bundle, for the
    # Service's DNS name, and it is the one in the Secret.
    stored = client.CoreV1Api(admin).read_namespaced_secret(SECRET, NAMESPACE)
    material = tlsplan.TlsMaterial.from_secret_data(stored.data)
    assert material is not None and served is not None
    assert ssl.DER_cert_to_PEM_cert(served).encode() == material.tls_cert
    bundle = client.AdmissionregistrationV1Api(admin).read_validating_webhook_configuration(
        VALIDATING_CONFIGURATION
    )
    assert {hook.client_config.ca_bundle for hook in bundle.webhooks} == {
        base64.b64encode(material.bundle()).decode("ascii")
    }


def test_operator_service_account_cannot_reach_beyond_its_job(operator: Any, admin: Any) -> None:
    core_admin = client.CoreV1Api(admin)
    admission_admin = client.AdmissionregistrationV1Api(admin)
    for namespace, name in (("kube-system", "elsewhere"), (NAMESPACE, "not-the-tls-secret")):
        core_admin.create_namespaced_secret(
            namespace, client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data={"k": "v"})
        )
    other = client.V1ValidatingWebhookConfiguration(
        metadata=client.V1ObjectMeta(name="someone-elses-webhook"),
        webhooks=[
            client.V1ValidatingWebhook(
                name="other.example.com",
                admission_review_versions=["v1"],
                side_effects="None",
                failure_policy="Ignore",
                client_config=client.AdmissionregistrationV1WebhookClientConfig(url="https://127.0.0.1:1/x"),
                rules=[
                    client.V1RuleWithOperations(
                        api_groups=["example.com"],
                        api_versions=["v1"],
                        resources=["things"],
                        operations=["CREATE"],
                    )
                ],
            )
        ],
    )
    admission_admin.create_validating_webhook_configuration(other)
    try:
        core = client.CoreV1Api(operator)
        admission = client.AdmissionregistrationV1Api(operator)
        custom = client.CustomObjectsApi(operator)
        _forbidden(lambda: core.read_namespaced_secret("elsewhere", "kube-system"))
        _forbidden(lambda: core.read_namespaced_secret("not-the-tls-secret", NAMESPACE))
        _forbidden(lambda: core.list_namespaced_secret(NAMESPACE))
        _forbidden(lambda: core.list_secret_for_all_namespaces())
        _forbidden(
            lambda: admission.patch_validating_webhook_configuration(
                "someone-elses-webhook", {"metadata": {"labels": {"x": "y"}}}
            )
        )
        _forbidden(lambda: admission.delete_validating_webhook_configuration(VALIDATING_CONFIGURATION))
        _forbidden(lambda: admission.delete_mutating_webhook_configuration(MUTATING_CONFIGURATION))
        _forbidden(lambda: admission.list_validating_webhook_configuration())
        # Kopf watches nothing (its resource scanning is off): no CRD to notice.
        _forbidden(lambda: client.ApiextensionsV1Api(operator).list_custom_resource_definition())
        _forbidden(
            lambda: custom.patch_cluster_custom_object(
                GROUP, VERSION, "compliancepolicies", "default", {"spec": {"enforcement": "Audit"}}
            )
        )
        _forbidden(
            lambda: core.create_namespaced_pod(
                TENANT_NAMESPACE,
                client.V1Pod(
                    metadata=client.V1ObjectMeta(name="sneaky"),
                    spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="x")]),
                ),
            )
        )
        _forbidden(lambda: core.patch_namespace(TENANT_NAMESPACE, {"metadata": {"labels": {"a": "b"}}}))
        leases = client.CoordinationV1Api(operator)
        _forbidden(lambda: leases.read_namespaced_lease("kube-scheduler", "kube-system"))
        _forbidden(lambda: leases.list_namespaced_lease(NAMESPACE))
    finally:
        admission_admin.delete_validating_webhook_configuration("someone-elses-webhook")
        core_admin.delete_namespaced_secret("elsewhere", "kube-system")
        core_admin.delete_namespaced_secret("not-the-tls-secret", NAMESPACE)
