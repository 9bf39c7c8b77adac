"""Fixtures and helpers of the webhook's end-to-end tests (imported by ``test_webhook_*.py``).

One webhook operator per test session, a real process (``python -m computegate webhook``)
against the session's control plane, so every request goes API server → webhook configuration
(matchConditions, namespaceSelector) → HTTPS → Kopf → our handlers. The operator runs as the
chart's ServiceAccount with the chart's own RBAC (rendered by ``helm template``) and a token
from TokenRequest, as in a real install; the admin registers the webhook configurations, as
``helm install`` does. Tests make their own tenants and namespaces (unique names) and pin pods
to the nodes below.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from computegate.devcluster import ControlPlane, ManagedProcess
from computegate.devcluster._process import tail
from computegate.devcluster._servers import free_ports
from computegate.webhook.certs import ensure_serving_files
from computegate.webhook.operator import configurations
from computegate.webhook.options import Options
from tests.identities import token_kubeconfig

CHART = Path(__file__).resolve().parents[2] / "charts" / "computegate"
# The chart's ServiceAccount, as `helm install computegate -n computegate-system` names it: the
# webhook operator of these tests runs as it, and the API server's audit log records its calls.
OPERATOR_NAMESPACE = "computegate-system"
OPERATOR_SERVICE_ACCOUNT = "computegate"
# Short, so that tests see a reservation without a pod go; the API server of these tests
# answers every request long before it (the default, 120 s, is above its 60 s request timeout).
RESERVATION_TTL = 10
# A usage record every USAGE_PERIOD seconds (a day by default), so a test sees the chain grow.
USAGE_PERIOD = 15

H100 = "NVIDIA-H100-80GB-HBM3"
T4 = "Tesla-T4"
H100_TPP = 15832
NODES = f"""
apiVersion: v1
kind: Node
metadata: {{name: e2e-gpu-h100, labels: {{nvidia.com/gpu.product: {H100}}}}}
---
apiVersion: v1
kind: Node
metadata: {{name: e2e-gpu-t4, labels: {{nvidia.com/gpu.product: {T4}}}}}
"""
NODE_CAPACITY = {"e2e-gpu-h100": {"nvidia.com/gpu": "8"}, "e2e-gpu-t4": {"nvidia.com/gpu": "4"}}
ENFORCE = """
apiVersion: computegate.io/v1alpha1
kind: CompliancePolicy
metadata: {name: default}
spec: {enforcement: Enforce}
"""
TENANT_ROLE = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: e2e-tenant}
rules:
  - apiGroups: ["", apps, batch]
    resources: [pods, deployments, deployments/scale, jobs, cronjobs, namespaces]
    verbs: [get, list, create, update, patch]
"""


@dataclass
class Result:
    """What a kubectl user saw."""

    ok: bool
    code: str | None  # the reason code: from the denial message or the stamped annotation
    stdout: str
    stderr: str
    obj: dict[str, Any] | None

    @property
    def annotations(self) -> dict[str, str]:
        return dict(((self.obj or {}).get("metadata") or {}).get("annotations") or {})


_DENIED_CODE = re.compile(r"denied the request: \[(\w+)\]")


class Cluster:
    """kubectl against the session's control plane, as the admin or as a minted user."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self._users: dict[str, Path] = {}

    def user(self, name: str, groups: tuple[str, ...] = ("tenants",)) -> Path:
        if name not in self._users:
            self._users[name] = self.plane.mint_user(name, groups)
        return self._users[name]

    def kubectl(
        self, *args: str, user: Path | None = None, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.plane.kubectl(*args, kubeconfig=user, stdin=stdin, check=False)

    def apply(self, manifest: str) -> None:
        result = self.kubectl("apply", "-f", "-", stdin=manifest)
        assert result.returncode == 0, result.stderr

    def create(self, manifest: str, *, user: Path | None = None, dry_run: bool = False) -> Result:
        args = ["create", "-f", "-", "-o", "json"] + (["--dry-run=server"] if dry_run else [])
        result = self.kubectl(*args, user=user, stdin=manifest)
        obj = json.loads(result.stdout) if result.returncode == 0 and result.stdout.strip() else None
        if obj is not None:
            code = ((obj.get("metadata") or {}).get("annotations") or {}).get("computegate.io/code")
        else:
            found = _DENIED_CODE.search(result.stderr)
            code = found.group(1) if found else None
        return Result(result.returncode == 0, code, result.stdout, result.stderr, obj)

    def get(self, *args: str) -> dict[str, Any]:
        result = self.kubectl("get", *args, "-o", "json")
        assert result.returncode == 0, result.stderr
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    def eventually(self, manifest: str, code: str, *, timeout: float = 15.0) -> Result:
        """Dry-run until the verdict is ``code`` (the operator's watches catch up in under a second)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.create(manifest, dry_run=True)
            if result.code == code or time.monotonic() > deadline:
                assert result.code == code, result.stderr or result.annotations
                return result
            time.sleep(0.2)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def tenant(
    name: str, jurisdiction: str, *, namespaces: list[str], kyc: str = "Verified", parent: str | None = None
) -> str:
    spec: dict[str, Any] = {"jurisdiction": jurisdiction, "kyc": {"status": kyc}, "namespaces": namespaces}
    if parent:
        spec["parentJurisdiction"] = parent
    docs: list[dict[str, Any]] = [
        {"apiVersion": "computegate.io/v1alpha1", "kind": "Tenant", "metadata": {"name": name}, "spec": spec}
    ]
    docs += [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in namespaces]
    return yaml.safe_dump_all(docs)


def licensed_tenant(cluster: Cluster, *, max_tpp: float) -> tuple[str, str, str]:
    """A Saudi tenant (needs a license) with one H100 license; returns tenant, namespace, license."""
    name = unique("globex")
    namespace = f"{name}-ml"
    cluster.apply(tenant(name, "SA", namespaces=[namespace]))
    cluster.apply(license(f"{name}-lic", name, max_tpp=max_tpp))
    cluster.eventually(pod("probe", namespace), "Licensed")
    return name, namespace, f"{name}-lic"


def license(
    name: str,
    tenant_name: str,
    *,
    max_tpp: float,
    accelerators: list[str] | None = None,
    valid_from: str = "2026-01-01T00:00:00Z",
    valid_until: str = "2030-01-01T00:00:00Z",
    revoked: bool = False,
) -> str:
    spec: dict[str, Any] = {
        "tenant": tenant_name,
        "licenseNumber": f"D-{name}",
        "authority": "US-BIS",
        "validFrom": valid_from,
        "validUntil": valid_until,
        "maxTPP": max_tpp,
        "revoked": revoked,
    }
    if accelerators:
        spec["accelerators"] = accelerators
    return yaml.safe_dump(
        {
            "apiVersion": "computegate.io/v1alpha1",
            "kind": "ExportLicense",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def pod_spec(
    gpus: int | str = 1, product: str = H100, image: str = "registry.example/train:1"
) -> dict[str, Any]:
    return {
        "nodeSelector": {"nvidia.com/gpu.product": product},
        "containers": [
            {"name": "main", "image": image, "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}
        ],
    }


def pod(
    name: str,
    namespace: str,
    gpus: int | str = 1,
    *,
    product: str = H100,
    annotations: dict[str, str] | None = None,
) -> str:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = annotations
    return yaml.safe_dump(
        {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec(gpus, product)}
    )


def deployment(
    name: str,
    namespace: str,
    replicas: int,
    gpus: int = 1,
    image: str = "registry.example/serve:1",
    template_annotations: dict[str, str] | None = None,
) -> str:
    template: dict[str, Any] = {"metadata": {"labels": {"app": name}}, "spec": pod_spec(gpus, image=image)}
    if template_annotations:
        template["metadata"]["annotations"] = template_annotations
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": template},
        }
    )


def chart_rbac(plane: ControlPlane) -> list[dict[str, Any]]:
    """The chart's ServiceAccount, roles and bindings for release ``computegate``, as rendered."""
    assert plane.binaries.helm is not None, "the e2e tests need helm to render the chart's RBAC"
    rendered = subprocess.run(
        [
            *(str(plane.binaries.helm), "template", OPERATOR_SERVICE_ACCOUNT, str(CHART)),
            *("--namespace", OPERATOR_NAMESPACE, "--show-only", "templates/rbac.yaml"),
            *("--kube-version", "1.30.0"),  # a source-built helm defaults to v1.20, below kubeVersion
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [document for document in yaml.safe_load_all(rendered) if document]


def register(plane: ControlPlane, port: int, cert_dir: Path, *, validating_port: int | None = None) -> None:
    """As the admin, what `helm install` does: both webhook configurations, with our CA, sending
    reviews to https://127.0.0.1:<port> (the validating ones to ``validating_port`` if given)."""
    options = Options(port=port, cert_dir=cert_dir)
    ensure_serving_files(cert_dir, hosts=["127.0.0.1", "localhost"])
    for body in configurations(options):
        if validating_port is not None and body["kind"] == "ValidatingWebhookConfiguration":
            for hook in body["webhooks"]:
                hook["clientConfig"]["url"] = hook["clientConfig"]["url"].replace(
                    f":{port}/", f":{validating_port}/"
                )
        result = plane.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", "-", check=False, stdin=json.dumps(body)
        )
        assert result.returncode == 0, result.stderr


class Operator:
    """The webhook operator process: started once per session, stoppable for the outage test."""

    def __init__(
        self,
        plane: ControlPlane,
        work: Path,
        *,
        kubeconfig: Path,
        cert_dir: Path | None = None,
        registered_port: int | None = None,
    ) -> None:
        """``registered_port``: where the configurations send reviews (a forwarder in front of
        several replicas, registered by the caller); default this operator's own port."""
        self.plane = plane
        self.work = work
        self.kubeconfig = kubeconfig  # the chart's ServiceAccount
        self.cert_dir = cert_dir or work / "certs"
        self.port, self.health_port = free_ports(2)
        self.registered_port = registered_port or self.port
        self.process: ManagedProcess | None = None
        if registered_port is None:
            register(plane, self.port, self.cert_dir)

    @property
    def log_path(self) -> Path:
        return self.work / "webhook.log"

    def start(self) -> None:
        argv = [
            sys.executable,
            "-m",
            "computegate",
            "webhook",
            f"--kubeconfig={self.kubeconfig}",
            "--port",
            str(self.port),
            "--health-port",
            str(self.health_port),
            "--cert-dir",
            str(self.cert_dir),
            "--admin-group",
            "computegate-admins",
            f"--namespace={OPERATOR_NAMESPACE}",
            f"--reservation-ttl={RESERVATION_TTL}",
            "--reconcile-interval=2",
            f"--usage-period={USAGE_PERIOD}",
        ]
        self.process = ManagedProcess.spawn("computegate-webhook", argv, log_path=self.log_path, detach=False)
        deadline = time.monotonic() + 60
        while not self.ready():
            if not self.process.is_running() or time.monotonic() > deadline:
                pytest.fail(
                    f"the webhook operator did not become ready:\n{tail(self.log_path, 40)}", pytrace=False
                )
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def health(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}{path}", timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return 0, ""

    def ready(self) -> bool:
        if self.health("/readyz")[0] != 200:
            return False
        hooks = self.plane.kubectl(
            "get", "validatingwebhookconfiguration", "computegate-validating", "-o", "json", check=False
        )
        return hooks.returncode == 0 and f":{self.registered_port}/" in hooks.stdout

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples that carry ``labels``, from this replica's /metrics."""
        status, text = self.health("/metrics")
        assert status == 200, text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{key}="{value}"' in line for key, value in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def decisions(self) -> list[dict[str, Any]]:
        lines = self.log_path.read_text().splitlines()
        records = [json.loads(line) for line in lines if line.startswith('{"time"')]
        return [record for record in records if record.get("logger") == "computegate.decisions"]


@pytest.fixture(scope="session", name="cluster")
def cluster_fixture(control_plane: ControlPlane, computegate_crds: list[str]) -> Cluster:
    cluster = Cluster(control_plane)
    cluster.apply(NODES)
    for name, capacity in NODE_CAPACITY.items():
        status = json.dumps({"status": {"capacity": capacity, "allocatable": capacity}})
        result = cluster.kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", status)
        assert result.returncode == 0, result.stderr
    cluster.apply(ENFORCE)
    cluster.apply(TENANT_ROLE)
    return cluster


@pytest.fixture(scope="session", name="operator_kubeconfig")
def operator_kubeconfig_fixture(
    cluster: Cluster, kube_admin: Any, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A kubeconfig of the chart's ServiceAccount, bound by the chart's own roles."""
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}}
    cluster.apply(yaml.safe_dump_all([namespace, *chart_rbac(cluster.plane)]))
    return token_kubeconfig(
        cluster.plane,
        kube_admin,
        namespace=OPERATOR_NAMESPACE,
        service_account=OPERATOR_SERVICE_ACCOUNT,
        path=tmp_path_factory.mktemp("operator-identity") / "kubeconfig",
    )


@pytest.fixture(scope="session", name="operator")
def operator_fixture(
    cluster: Cluster, operator_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    running = Operator(cluster.plane, tmp_path_factory.mktemp("webhook"), kubeconfig=operator_kubeconfig)
    running.start()
    yield running
    running.stop()


def bind_tenant_user(cluster: Cluster, user: str, namespace: str) -> Path:
    """A kubectl identity (client certificate) that may run workloads in ``namespace``."""
    cluster.apply(
        yaml.safe_dump(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "tenant", "namespace": namespace},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "e2e-tenant",
                },
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
            }
        )
    )
    return cluster.user(user)


Waiter = Callable[[Callable[[], bool]], None]


def wait_until(check: Callable[[], bool], timeout: float = 15.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)
