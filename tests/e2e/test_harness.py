"""The dev-cluster harness against the real kube-apiserver: CRDs, validation, RBAC, seeding, dev up/down."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from computegate.devcluster import (
    KUBERNETES_VERSION,
    ControlPlane,
    SeedError,
    default_assets_dir,
    find_binaries,
    seed,
)
from computegate.models.resources import GROUP, VERSION

pytestmark = pytest.mark.e2e

ClientFactory = Callable[[str, Sequence[str]], Any]  # the kube_client_for fixture

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "cluster"

LICENSE_SPEC: dict[str, Any] = {
    "tenant": "northwind",
    "licenseNumber": "D1234567",
    "authority": "US-BIS",
    "validFrom": "2026-01-01T00:00:00Z",
    "validUntil": "2027-01-01T00:00:00Z",
    "maxTPP": 160000,
}
TENANT_SPEC: dict[str, Any] = {"jurisdiction": "SG", "kyc": {"status": "Verified"}}


def _create(api: Any, plural: str, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}, "spec": spec}
    created: dict[str, Any] = client.CustomObjectsApi(api).create_cluster_custom_object(
        GROUP, VERSION, plural, body
    )
    return created


def _rejection(api: Any, plural: str, kind: str, name: str, spec: dict[str, Any]) -> str:
    """The API server's message for an object it must refuse (fails the test if it accepts it)."""
    with pytest.raises(ApiException) as refused:
        _create(api, plural, kind, name, spec)
    assert refused.value.status == 422, refused.value.body
    message: str = json.loads(refused.value.body)["message"]
    return message


def test_the_api_server_reports_the_release_it_was_built_from(control_plane: ControlPlane) -> None:
    with control_plane.api_client() as api:
        version = client.VersionApi(api).get_code().git_version
    binary = subprocess.run(
        [str(control_plane.binaries.kube_apiserver), "--version"], capture_output=True, text=True, check=True
    )
    assert binary.stdout.split() == ["Kubernetes", version]
    assert re.fullmatch(r"v1\.\d+\.\d+", version), version  # stamped, not v0.0.0-master
    if control_plane.binaries.kube_apiserver.parent == default_assets_dir():
        assert version == KUBERNETES_VERSION
    assert control_plane.url.startswith("https://127.0.0.1:")


def test_computegate_crds_install_and_become_established(
    computegate_crds: list[str], kube_admin: Any
) -> None:
    assert sorted(computegate_crds) == [
        f"acceleratorprofiles.{GROUP}",
        f"compliancepolicies.{GROUP}",
        f"exportlicenses.{GROUP}",
        f"tenants.{GROUP}",
        f"usagerecords.{GROUP}",
    ]
    extensions = client.ApiextensionsV1Api(kube_admin)
    for name in computegate_crds:
        crd = extensions.read_custom_resource_definition(name)
        conditions = {condition.type: condition.status for condition in crd.status.conditions}
        assert conditions["Established"] == "True", name
        assert conditions["NamesAccepted"] == "True", name


def test_kubectl_explain_describes_the_fields_of_our_resources(
    computegate_crds: list[str], control_plane: ControlPlane
) -> None:
    from computegate.models.resources import ExportLicenseSpec, TenantSpec

    field = ExportLicenseSpec.model_fields["max_tpp"]
    deadline = time.monotonic() + 30  # the API server publishes a new CRD's OpenAPI a moment later
    while (
        explained := control_plane.kubectl("explain", "exportlicenses.spec.maxTPP", check=False)
    ).returncode:
        assert time.monotonic() < deadline, explained.stderr
        time.sleep(0.5)
    assert str(field.description) in " ".join(explained.stdout.split())
    tenant = control_plane.kubectl("explain", "tenants.spec.parentJurisdiction", check=False)
    assert str(TenantSpec.model_fields["parent_jurisdiction"].description) in " ".join(tenant.stdout.split())


def test_a_valid_tenant_and_export_license_are_accepted(computegate_crds: list[str], kube_admin: Any) -> None:
    tenant = _create(kube_admin, "tenants", "Tenant", "accepted-tenant", TENANT_SPEC)
    license_ = _create(kube_admin, "exportlicenses", "ExportLicense", "accepted-license", LICENSE_SPEC)
    assert tenant["spec"]["jurisdiction"] == "SG"
    assert license_["spec"]["revoked"] is False  # the schema's default, filled in by the API server


def test_an_export_license_that_ends_before_it_starts_is_rejected_with_the_rule_message(
    computegate_crds: list[str], kube_admin: Any
) -> None:
    spec = {**LICENSE_SPEC, "validUntil": "2025-06-01T00:00:00Z"}
    message = _rejection(kube_admin, "exportlicenses", "ExportLicense", "backwards", spec)
    assert 'ExportLicense.computegate.io "backwards" is invalid' in message
    assert "validUntil must be after validFrom" in message


def test_the_license_window_rule_compares_instants_not_text(
    computegate_crds: list[str], kube_admin: Any
) -> None:
    # 01:00 at +02:00 is 23:00Z the day before: textually later than validUntil, in time earlier.
    spec = {**LICENSE_SPEC, "validFrom": "2026-01-01T01:00:00+02:00", "validUntil": "2026-01-01T00:00:00Z"}
    created = _create(kube_admin, "exportlicenses", "ExportLicense", "offset-window", spec)
    assert created["spec"]["validFrom"] == "2026-01-01T01:00:00+02:00"


def test_an_export_license_with_a_bare_date_is_rejected_as_not_a_date_time(
    computegate_crds: list[str], kube_admin: Any
) -> None:
    spec = {**LICENSE_SPEC, "validFrom": "2026-01-01"}
    message = _rejection(kube_admin, "exportlicenses", "ExportLicense", "bare-date", spec)
    assert "spec.validFrom" in message
    assert "must be of type date-time" in message


def test_a_tenant_with_a_lowercase_country_code_is_rejected_by_the_schema(
    computegate_crds: list[str], kube_admin: Any
) -> None:
    spec = {**TENANT_SPEC, "jurisdiction": "sg"}
    message = _rejection(kube_admin, "tenants", "Tenant", "lowercase", spec)
    assert 'spec.jurisdiction: Invalid value: "sg"' in message
    assert "^[A-Z]{2}$" in message


def test_a_compliance_policy_not_named_default_is_rejected(
    computegate_crds: list[str], kube_admin: Any
) -> None:
    message = _rejection(
        kube_admin, "compliancepolicies", "CompliancePolicy", "strict", {"enforcement": "Enforce"}
    )
    assert "the CompliancePolicy must be named default" in message


def test_namespaces_nodes_and_pods_can_be_created_and_pods_stay_pending(
    kube_admin: Any, namespace: str
) -> None:
    core = client.CoreV1Api(kube_admin)
    node = core.create_node(
        client.V1Node(metadata=client.V1ObjectMeta(name=f"gpu-{namespace}", labels={"gpu": "a100"}))
    )
    status = {"status": {"capacity": {"nvidia.com/gpu": "8"}, "allocatable": {"nvidia.com/gpu": "8"}}}
    core.patch_node_status(node.metadata.name, status)
    assert core.read_node(node.metadata.name).status.capacity["nvidia.com/gpu"] == "8"
    container = client.V1Container(
        name="main",
        image="registry.example/app:1",
        resources=client.V1ResourceRequirements(limits={"cpu": "1"}),
    )
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="app"), spec=client.V1PodSpec(containers=[container])
    )
    core.create_namespaced_pod(namespace, pod)
    assert core.read_namespaced_pod("app", namespace).status.phase == "Pending"  # no scheduler, no kubelet


def test_dynamic_resource_allocation_objects_are_served(kube_admin: Any, namespace: str) -> None:
    resource = client.ResourceV1Api(kube_admin)
    resource.create_device_class(
        client.V1DeviceClass(metadata=client.V1ObjectMeta(name=f"gpu.{namespace}.example.com"), spec={})
    )
    claim = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "gpus"},
        "spec": {
            "devices": {
                "requests": [
                    {
                        "name": "gpu",
                        "exactly": {"deviceClassName": f"gpu.{namespace}.example.com", "count": 2},
                    }
                ]
            }
        },
    }
    created = resource.create_namespaced_resource_claim(namespace, claim)
    assert created.spec.devices.requests[0].exactly.count == 2


def test_an_identity_without_grants_is_refused_by_rbac(
    computegate_crds: list[str], kube_client_for: ClientFactory, namespace: str
) -> None:
    tenant = kube_client_for("tenant-nogrant", ["tenants"])
    with pytest.raises(ApiException) as refused:
        client.CustomObjectsApi(tenant).list_cluster_custom_object(GROUP, VERSION, "tenants")
    assert refused.value.status == 403
    assert 'User "tenant-nogrant" cannot list resource "tenants"' in json.loads(refused.value.body)["message"]
    with pytest.raises(ApiException) as refused_pod:
        client.CoreV1Api(tenant).list_namespaced_pod(namespace)
    assert refused_pod.value.status == 403


def test_a_tenant_using_kubectl_is_told_it_is_forbidden(
    control_plane: ControlPlane, computegate_crds: list[str], tenant_kubeconfig: Path
) -> None:
    listed = control_plane.kubectl("get", "exportlicenses", kubeconfig=tenant_kubeconfig, check=False)
    assert listed.returncode == 1
    assert 'User "tenant-northwind" cannot list resource "exportlicenses"' in listed.stderr
    assert "Forbidden" in listed.stderr


def test_an_identity_gets_exactly_what_rbac_grants_it(
    kube_admin: Any, kube_client_for: ClientFactory, namespace: str
) -> None:
    # A Role of our own: the built-in admin/edit/view ClusterRoles are aggregated by the
    # controller-manager, which does not run here, so they grant nothing.
    rbac = client.RbacAuthorizationV1Api(kube_admin)
    rule = client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["create", "get", "list"])
    rbac.create_namespaced_role(
        namespace, client.V1Role(metadata=client.V1ObjectMeta(name="configmaps"), rules=[rule])
    )
    binding = client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name="tenants-configmaps"),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="configmaps"),
        subjects=[
            client.RbacV1Subject(kind="Group", name="tenants-granted", api_group="rbac.authorization.k8s.io")
        ],
    )
    rbac.create_namespaced_role_binding(namespace, binding)
    tenant = client.CoreV1Api(kube_client_for("tenant-granted", ["tenants-granted"]))
    config_map = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings"), data={"a": "1"})
    deadline = time.monotonic() + 10
    while True:  # the RBAC authorizer sees a new binding through its informer, within moments
        try:
            created = tenant.create_namespaced_config_map(namespace, config_map)
            break
        except ApiException as refused:
            if refused.status != 403 or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert created.data == {"a": "1"}
    with pytest.raises(ApiException) as refused:
        tenant.list_namespaced_config_map("kube-system")
    assert refused.value.status == 403


class _DenyingWebhook(BaseHTTPRequestHandler):
    """Denies every request it reviews, with a message naming the object."""

    calls: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls.append(review)
        request = review["request"]
        answer = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {
                "uid": request["uid"],
                "allowed": False,
                "status": {"code": 403, "message": f"loopback webhook says no to {request['name']}"},
            },
        }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def loopback_webhook(control_plane: ControlPlane) -> Iterator[tuple[int, str]]:
    """A TLS webhook on 127.0.0.1 with a certificate minted by the harness: (port, caBundle)."""
    cert = control_plane.mint_serving_cert("e2e-webhook")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.cert_path, cert.key_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DenyingWebhook)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], cert.ca_bundle
    server.shutdown()
    server.server_close()


def test_a_webhook_on_loopback_with_a_minted_certificate_is_called_by_the_api_server(
    kube_admin: Any, namespace: str, loopback_webhook: tuple[int, str]
) -> None:
    port, ca_bundle = loopback_webhook
    assert base64.b64decode(ca_bundle).startswith(b"-----BEGIN CERTIFICATE-----")
    admission = client.AdmissionregistrationV1Api(kube_admin)
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": f"e2e-{namespace}"},
        "webhooks": [
            {
                "name": "deny.e2e.computegate.io",
                "clientConfig": {"url": f"https://127.0.0.1:{port}/validate", "caBundle": ca_bundle},
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["configmaps"],
                    }
                ],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 5,
            }
        ],
    }
    admission.create_validating_webhook_configuration(config)
    core = client.CoreV1Api(kube_admin)
    try:
        deadline = time.monotonic() + 15
        while True:  # the API server picks up a new configuration within a second or so
            config_map = client.V1ConfigMap(metadata=client.V1ObjectMeta(generate_name="probe-"))
            try:
                core.create_namespaced_config_map(namespace, config_map)
            except ApiException as refused:
                assert refused.status == 403, refused.body
                assert "loopback webhook says no to" in json.loads(refused.body)["message"]
                break
            assert time.monotonic() < deadline, "the API server never called the webhook"
            time.sleep(0.2)
    finally:
        admission.delete_validating_webhook_configuration(f"e2e-{namespace}")
    assert _DenyingWebhook.calls[-1]["request"]["namespace"] == namespace


def _write_state(folder: Path, documents: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "state.yaml").write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return folder


def test_seeding_restores_objects_with_their_status_and_a_second_seed_changes_nothing(
    control_plane: ControlPlane, kube_admin: Any, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    documents: list[dict[str, Any]] = [
        {  # exists already: updated, not created
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "kube-system", "labels": {"seeded": "yes"}},
        },
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": f"seeded-{suffix}",
                "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                "resourceVersion": "12345",  # a backup's server-owned metadata is dropped
                "uid": "00000000-0000-0000-0000-000000000000",
            },
            "status": {
                "capacity": {"nvidia.com/gpu": "8", "cpu": "64"},
                "allocatable": {"nvidia.com/gpu": "8"},
            },
        },
        {  # its namespace is not in the state: created on the way
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "running", "namespace": f"seeded-{suffix}"},
            "spec": {"nodeName": f"seeded-{suffix}", "containers": [{"name": "main", "image": "app:1"}]},
            "status": {"phase": "Running"},
        },
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Tenant",
            "metadata": {"name": f"seeded-{suffix}"},
            "spec": {**TENANT_SPEC, "namespaces": [f"seeded-{suffix}"]},
        },
    ]
    state = _write_state(tmp_path / "state", documents)
    first = seed(control_plane.kubeconfig_path, state)
    assert [(item.kind, item.created, item.status_written) for item in first] == [
        ("Namespace", False, False),
        ("Node", True, True),
        ("Pod", True, True),
        ("Tenant", True, False),
    ]
    core = client.CoreV1Api(kube_admin)
    assert core.read_namespace("kube-system").metadata.labels["seeded"] == "yes"
    node = core.read_node(f"seeded-{suffix}")
    assert node.status.capacity == {"nvidia.com/gpu": "8", "cpu": "64"}
    assert node.metadata.uid != "00000000-0000-0000-0000-000000000000"
    pod = core.read_namespaced_pod("running", f"seeded-{suffix}")
    assert (pod.status.phase, pod.spec.node_name) == ("Running", f"seeded-{suffix}")

    versions = (node.metadata.resource_version, pod.metadata.resource_version)
    second = seed(control_plane.kubeconfig_path, state)
    assert not any(item.created for item in second)
    again = (
        core.read_node(f"seeded-{suffix}").metadata.resource_version,
        core.read_namespaced_pod("running", f"seeded-{suffix}").metadata.resource_version,
    )
    assert again == versions  # server-side apply of the same state is a no-op


def test_seeding_an_object_the_api_server_refuses_names_the_file_and_document(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    bad_license = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ExportLicense",
        "metadata": {"name": "seeded-backwards"},
        "spec": {**LICENSE_SPEC, "validUntil": "2020-01-01T00:00:00Z"},
    }
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "seed-refused"}}
    state = _write_state(tmp_path / "state", [namespace, bad_license])
    with pytest.raises(SeedError) as refused:
        seed(control_plane.kubeconfig_path, state)
    message = str(refused.value)
    assert message.startswith(f"{state / 'state.yaml'}: document 2: ExportLicense seeded-backwards refused")
    assert "validUntil must be after validFrom" in message
    assert "\n" not in message


def test_a_port_taken_before_the_api_server_binds_it_is_retried_with_new_ports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from computegate.devcluster import _controlplane

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    real_free_ports = _controlplane.free_ports
    picks: list[list[int]] = []

    def first_pick_is_taken(count: int) -> list[int]:
        ports = real_free_ports(count)
        picks.append([taken, *ports[1:]] if not picks else ports)
        return picks[-1]

    monkeypatch.setattr(_controlplane, "free_ports", first_pick_is_taken)
    try:
        with ControlPlane.start(tmp_path / "plane", binaries=find_binaries()) as plane:
            assert len(picks) == 2
            assert plane.ports["apiserver"] != taken
            assert plane.is_healthy()
    finally:
        squatter.close()


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _computegate(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "computegate", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=180, check=False)


def test_dev_up_runs_a_cluster_seeded_with_the_examples_and_dev_down_leaves_no_process(
    tmp_path: Path,
) -> None:
    kubectl = find_binaries().kubectl
    data_dir = tmp_path / "dev"
    env = dict(os.environ)
    pids: dict[str, int] = {}
    up = _computegate("dev", "up", "--state", str(EXAMPLES), "--data-dir", str(data_dir), env=env)
    try:
        assert up.returncode == 0, up.stderr
        last_line = up.stdout.strip().splitlines()[-1]
        assert last_line == f"export KUBECONFIG={data_dir / 'kubeconfig'}"
        kubeconfig = last_line.removeprefix("export KUBECONFIG=")
        state = json.loads((data_dir / "controlplane.json").read_text())
        pids = {process["name"]: process["pid"] for process in state["processes"]}
        assert {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} <= set(pids)
        assert all(_pid_alive(pid) for pid in pids.values())  # outlived the command

        listed = subprocess.run(
            [str(kubectl), "get", "tenants,exportlicenses", "-o", "name"],
            env={**env, "KUBECONFIG": kubeconfig},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        seeded = [
            document
            for path in sorted(EXAMPLES.glob("*.yaml"))
            for document in yaml.safe_load_all(path.read_text())
            if document
        ]
        assert listed.stdout.split() == [
            f"{kind.lower()}.{GROUP}/{name}"
            for kind in ("Tenant", "ExportLicense")
            for name in sorted(d["metadata"]["name"] for d in seeded if d["kind"] == kind)
        ]

        nodes = subprocess.run(
            [str(kubectl), "get", "nodes", "-o", "json"],
            env={**env, "KUBECONFIG": kubeconfig},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        for node in json.loads(nodes.stdout)["items"]:  # kwok made them Ready; seeding gave cpu and memory
            conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
            assert conditions["Ready"] == "True", node["metadata"]["name"]
            assert {"cpu", "memory", "pods", "nvidia.com/gpu"} <= set(node["status"]["allocatable"])

        again = _computegate("dev", "up", "--state", str(EXAMPLES), "--data-dir", str(data_dir), env=env)
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stderr
        assert again.stdout.strip().splitlines()[-1] == last_line
        state_again = json.loads((data_dir / "controlplane.json").read_text())
        assert {process["name"]: process["pid"] for process in state_again["processes"]} == pids
    finally:
        down = _computegate("dev", "down", "--data-dir", str(data_dir), env=env)
    assert down.returncode == 0, down.stderr
    assert pids, "dev up recorded no process"
    assert not [name for name, pid in pids.items() if _pid_alive(pid)]
    assert not (data_dir / "controlplane.json").exists()
    assert "nothing to stop" in _computegate("dev", "down", "--data-dir", str(data_dir), env=env).stderr


def test_dev_up_runs_webhook_replicas_behind_one_endpoint_and_dev_down_stops_them_all(tmp_path: Path) -> None:
    kubectl = find_binaries().kubectl
    data_dir = tmp_path / "dev"
    env = dict(os.environ)
    args = ("--state", str(EXAMPLES), "--data-dir", str(data_dir), "--bare", "--webhook-replicas", "2")
    up = _computegate("dev", "up", *args, env=env)
    pids: dict[str, int] = {}
    try:
        assert up.returncode == 0, up.stderr
        state = json.loads((data_dir / "controlplane.json").read_text())
        pids = {process["name"]: process["pid"] for process in state["processes"]}
        assert {"computegate-webhook-0", "computegate-webhook-1", "computegate-spread"} <= set(pids)
        kube = {**env, "KUBECONFIG": str(data_dir / "kubeconfig")}
        pod = yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "probe", "namespace": "initech"},
                "spec": {
                    "containers": [
                        {"name": "c", "image": "x", "resources": {"limits": {"nvidia.com/gpu": "1"}}}
                    ]
                },
            }
        )
        for _ in range(4):  # through the forwarder, to whichever replica it picks
            refused = subprocess.run(
                [str(kubectl), "create", "--dry-run=server", "-f", "-"],
                input=pod,
                env=kube,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert "[NoLicense]" in refused.stderr, refused.stderr
        lease = subprocess.run(
            [str(kubectl), "get", "lease", "computegate-ledger", "-n", "computegate-system", "-o", "json"],
            env=kube,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert lease.returncode == 0 and json.loads(lease.stdout)["spec"]["holderIdentity"], lease.stderr
    finally:
        down = _computegate("dev", "down", "--data-dir", str(data_dir), env=env)
    assert down.returncode == 0, down.stderr
    assert not [name for name, pid in pids.items() if _pid_alive(pid)]
