"""Pod creates through the real API server: no webhook, a CEL policy, ComputeGate.

    COMPUTEGATE_ASSETS=... .venv/bin/python -m bench.apiserver [--quick] [--rounds N]

A control plane of its own (etcd and kube-apiserver from ``COMPUTEGATE_ASSETS``), the CRDs,
the chart's RBAC, three ComputeGate replicas running as the chart's ServiceAccount behind one
loopback forwarder (``computegate.devcluster._spread``, as the tests run them), and a load
client (vegeta) that creates pods as a tenant user with a client certificate (HTTP/2, as
kubectl). In each round, in turn:

- **none**: no admission webhook and no policy;
- **cel**: a ValidatingAdmissionPolicy doing a comparable tenant-and-GPU check in the API
  server (a per-namespace ConfigMap as its parameter: tenant, whether a license is needed, the
  products and the GPUs the license covers);
- **computegate**: both webhook configurations as the chart registers them, ledger on;
- **computegate-ledger-off**: the same build with ``--ledger off`` (real GPU creates only).

Measured: GPU and CPU pod creates, dry runs (``?dryRun=All``) and real ones, one at a time
(c = 1) and 20 concurrent for real GPU creates; p50 and p99; per real GPU create with the
ledger, its swaps and conflicts from the replicas' /metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.common import Attack, Spread, Target, attack, free_port, http_ok, ratio, wait_for

NAMESPACE = "bench-ml"
TENANT = "bench"
LICENSE = "bench-lic"
USER = "bench-user"
H100 = "NVIDIA-H100-80GB-HBM3"
REPLICAS = 3
CONFIGS = ("none", "cel", "computegate", "computegate-ledger-off")
OPERATOR_NAMESPACE = "computegate-system"

CEL_POLICY = """
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: bench-gpu-tenant}
spec:
  failurePolicy: Fail
  paramKind: {apiVersion: v1, kind: ConfigMap}
  matchConstraints:
    resourceRules:
      - {apiGroups: [""], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [pods]}
  matchConditions:
    - name: asks-for-gpus
      expression: >-
        object.spec.containers.exists(c, has(c.resources) &&
        ((has(c.resources.limits) && 'nvidia.com/gpu' in c.resources.limits) ||
         (has(c.resources.requests) && 'nvidia.com/gpu' in c.resources.requests)))
  variables:
    - name: gpus
      expression: >-
        object.spec.containers.map(c, has(c.resources.limits) && 'nvidia.com/gpu' in c.resources.limits
        ? int(string(c.resources.limits['nvidia.com/gpu'])) : 0).sum()
    - name: product
      expression: >-
        has(object.spec.nodeSelector) && 'nvidia.com/gpu.product' in object.spec.nodeSelector
        ? object.spec.nodeSelector['nvidia.com/gpu.product'] : ''
  validations:
    - expression: "'tenant' in params.data && params.data.tenant != ''"
      message: "[NoTenant] the namespace belongs to no tenant"
    - expression: >-
        params.data.needsLicense != 'true' ||
        (variables.product in params.data.products.split(',') &&
         variables.gpus <= int(params.data.headroomGPUs))
      message: "[LicenseRequired] no license of the tenant covers this request"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: bench-gpu-tenant}
spec:
  policyName: bench-gpu-tenant
  validationActions: [Deny]
  paramRef: {name: computegate-tenant, parameterNotFoundAction: Deny}
"""


def _pod(kind: str, dry: bool) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "registry.example/train:1"}
    spec: dict[str, Any] = {"containers": [container]}
    if kind == "gpu":
        container["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
        spec["nodeSelector"] = {"nvidia.com/gpu.product": H100}
    else:
        container["resources"] = {"requests": {"cpu": "1", "memory": "1Gi"}}
    prefix = f"{kind}-{'dry' if dry else 'real'}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{prefix}-{uuid.uuid4().hex[:10]}", "namespace": NAMESPACE},
        "spec": spec,
    }


@dataclass
class Cluster:
    """The control plane, its replicas, the forwarder and the tenant user's credentials."""

    work: Path
    plane: Any
    sa_kubeconfig: Path
    certs: Path
    user_cert: Path
    user_key: Path
    replica_ports: list[tuple[int, int]] = field(default_factory=list)  # (webhook, health)
    replicas: list[Any] = field(default_factory=list)
    spreader: Any = None
    spreader_port: int = 0

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        result = self.plane.kubectl(*args, stdin=stdin, check=False)
        if result.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args)}: {result.stderr}")
        return str(result.stdout)

    def apply(self, manifest: str) -> None:
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=manifest)

    # ----- the replicas -----

    def start_replicas(self, *, ledger: bool) -> None:
        from computegate.devcluster import ManagedProcess

        self.stop_replicas()
        for index, (port, health) in enumerate(self.replica_ports):
            argv = [
                sys.executable,
                "-m",
                "computegate",
                "webhook",
                f"--kubeconfig={self.sa_kubeconfig}",
                f"--port={port}",
                f"--health-port={health}",
                f"--cert-dir={self.certs}",
                f"--namespace={OPERATOR_NAMESPACE}",
                "--reconcile-interval=2",
                f"--ledger={'on' if ledger else 'off'}",
            ]
            log = self.work / f"replica-{index}.log"
            self.replicas.append(ManagedProcess.spawn(f"replica-{index}", argv, log_path=log, detach=False))
        for _, health in self.replica_ports:
            wait_for(lambda h=health: http_ok(f"http://127.0.0.1:{h}/readyz"), timeout=120, what="a replica")

    def stop_replicas(self) -> None:
        for process in self.replicas:
            process.stop()
        self.replicas = []

    def metric(self, name: str) -> float:
        import urllib.request

        total = 0.0
        for _, health in self.replica_ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{health}/metrics", timeout=5) as response:
                for line in response.read().decode().splitlines():
                    if line.startswith(name + " ") or line.startswith(name + "{"):
                        total += float(line.rsplit(" ", 1)[1])
        return total

    # ----- what admits pods -----

    def configure(self, config: str) -> None:
        """Register exactly what ``config`` names, then wait until the API server applies it."""
        from computegate.webhook.operator import configurations
        from computegate.webhook.options import Options

        hooks = (
            "validatingwebhookconfiguration/computegate-validating",
            "mutatingwebhookconfiguration/computegate-mutating",
        )
        if config.startswith("computegate"):
            self.kubectl(
                "delete", "validatingadmissionpolicybinding", "bench-gpu-tenant", "--ignore-not-found"
            )
            for body in configurations(Options(port=self.spreader_port, cert_dir=self.certs)):
                self.apply(json.dumps(body))
            expect = "computegate"
        else:
            self.kubectl("delete", *hooks, "--ignore-not-found")
            if config == "cel":
                self.apply(CEL_POLICY)
                expect = "ValidatingAdmissionPolicy"
            else:
                self.kubectl(
                    "delete", "validatingadmissionpolicybinding", "bench-gpu-tenant", "--ignore-not-found"
                )
                expect = ""
        wait_for(lambda: self.probe() == expect, timeout=60, what=f"the API server to apply {config}")

    def probe(self) -> str:
        """Who denies a dry-run GPU pod in a namespace of no tenant (empty: nobody)."""
        pod = _pod("gpu", dry=True)
        pod["metadata"]["namespace"] = "bench-nobody"
        result = self.plane.kubectl(
            "create", "--dry-run=server", "-f", "-", "-o", "name", stdin=json.dumps(pod), check=False
        )
        if result.returncode == 0:
            return ""
        if "ValidatingAdmissionPolicy" in result.stderr:
            return "ValidatingAdmissionPolicy"
        if "computegate" in result.stderr:
            return "computegate"
        return result.stderr.strip()

    def delete_pods(self) -> None:
        """One DELETE of the collection (no kubelet: pods go at once), then wait until none is left."""
        from computegate.kubeclient import request

        path = f"/api/v1/namespaces/{NAMESPACE}/pods"
        with self.plane.api_client() as api:
            request(api, "DELETE", path, body={"gracePeriodSeconds": 0}, timeout=120)
            wait_for(
                lambda: not request(api, "GET", path, query={"limit": "1"}, timeout=120)[1].get("items"),
                timeout=120,
                what="the pods to go",
            )

    # ----- load -----

    def creates(self, kind: str, *, dry: bool, count: int, workers: int) -> Attack:
        url = f"{self.plane.url}/api/v1/namespaces/{NAMESPACE}/pods" + ("?dryRun=All" if dry else "")
        targets = [
            Target("POST", url, json.dumps(_pod(kind, dry)).encode(), {"Content-Type": "application/json"})
            for _ in range(count)
        ]
        result = attack(
            targets,
            workers=workers,
            cert=self.user_cert,
            key=self.user_key,
            ca=self.plane.ca_path,
            http2=True,
        )
        if result.success < 1.0:
            raise SystemExit(f"{kind} creates (dry={dry}): {result.status_codes} {result.errors[:3]}")
        return result


def _seed(cluster: Cluster) -> None:
    from tests.e2e.webhook_support import ENFORCE, NODE_CAPACITY, NODES, TENANT_ROLE, license, tenant

    cluster.apply(NODES)
    for name, capacity in NODE_CAPACITY.items():
        status = json.dumps({"status": {"capacity": capacity, "allocatable": capacity}})
        cluster.kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", status)
    cluster.apply(ENFORCE)
    cluster.apply(TENANT_ROLE)
    cluster.apply(tenant(TENANT, "SA", namespaces=[NAMESPACE]))  # SA: a license is required
    cluster.apply(license(LICENSE, TENANT, max_tpp=1e12))  # never the bound of this benchmark
    cluster.apply(
        yaml.safe_dump_all(
            [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench-nobody"}},
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "computegate-tenant", "namespace": NAMESPACE},
                    "data": {
                        "tenant": TENANT,
                        "needsLicense": "true",
                        "products": H100,
                        "headroomGPUs": "100000",
                    },
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "metadata": {"name": "tenant", "namespace": NAMESPACE},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": "e2e-tenant",
                    },
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
                },
            ]
        )
    )


@contextmanager
def cluster_up(work: Path) -> Iterator[Cluster]:
    from tests.e2e.webhook_support import chart_rbac
    from tests.identities import token_kubeconfig

    from computegate.devcluster import (
        CertificateAuthority,
        ControlPlane,
        ManagedProcess,
        find_binaries,
        install_crds,
    )
    from computegate.webhook.certs import ensure_serving_files

    plane = ControlPlane.start(work / "plane", binaries=find_binaries(require_helm=True))
    cluster: Cluster | None = None
    try:
        install_crds(plane.kubeconfig_path)
        ca = CertificateAuthority.load(plane.pki_dir / "ca.crt", plane.pki_dir / "ca.key")
        user_cert, user_key = ca.issue(USER, organizations=["tenants"], client=True).write(
            work / "user.crt", work / "user.key"
        )
        certs = work / "certs"
        ensure_serving_files(certs, hosts=["127.0.0.1", "localhost"])
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}}
        admin = plane.api_client()
        cluster = Cluster(work, plane, work / "sa-kubeconfig", certs, user_cert, user_key)
        cluster.apply(yaml.safe_dump_all([namespace, *chart_rbac(plane)]))
        token_kubeconfig(
            plane,
            admin,
            namespace=OPERATOR_NAMESPACE,
            service_account="computegate",
            path=cluster.sa_kubeconfig,
        )
        admin.close()
        _seed(cluster)
        cluster.replica_ports = [(free_port(), free_port()) for _ in range(REPLICAS)]
        cluster.spreader_port = free_port()
        backends = [f"--backend=127.0.0.1:{port}" for port, _ in cluster.replica_ports]
        cluster.spreader = ManagedProcess.spawn(
            "spreader",
            [
                sys.executable,
                "-m",
                "computegate.devcluster._spread",
                f"--listen=127.0.0.1:{cluster.spreader_port}",
                *backends,
            ],
            log_path=work / "spreader.log",
            detach=False,
        )
        yield cluster
    finally:
        if cluster is not None:
            cluster.stop_replicas()
            if cluster.spreader is not None:
                cluster.spreader.stop()
        plane.stop()


@dataclass(frozen=True)
class Case:
    config: str
    kind: str  # gpu, cpu
    dry: bool
    concurrency: int

    @property
    def label(self) -> str:
        return f"{self.kind} {'dry run' if self.dry else 'create'} c={self.concurrency}"


def cases(config: str) -> list[Case]:
    if config == "computegate-ledger-off":
        return [Case(config, "gpu", False, 1), Case(config, "gpu", False, 20)]
    return [
        *(Case(config, kind, dry, 1) for kind in ("gpu", "cpu") for dry in (True, False)),
        Case(config, "gpu", False, 20),
    ]


@dataclass
class Results:
    attacks: dict[Case, list[Attack]] = field(default_factory=dict)
    swaps_per_admission: list[float] = field(default_factory=list)
    conflicts_per_admission: list[float] = field(default_factory=list)
    swaps_per_admission_c20: list[float] = field(default_factory=list)
    conflicts_per_admission_c20: list[float] = field(default_factory=list)


def run(*, rounds: int, requests: int, work: Path) -> Results:
    results = Results()
    with cluster_up(work) as cluster:
        for round_ in range(rounds):
            for config in CONFIGS:
                if config.startswith("computegate"):
                    cluster.start_replicas(ledger=config == "computegate")
                cluster.configure(config)
                for case in cases(config):
                    cluster.delete_pods()
                    time.sleep(1.0)  # the replicas' watches and the reconciler settle
                    swaps, conflicts = (
                        (
                            cluster.metric("computegate_ledger_swaps_total"),
                            cluster.metric("computegate_ledger_conflicts_total"),
                        )
                        if config == "computegate"
                        else (0.0, 0.0)
                    )
                    count = requests * (2 if case.concurrency > 1 else 1)
                    result = cluster.creates(case.kind, dry=case.dry, count=count, workers=case.concurrency)
                    results.attacks.setdefault(case, []).append(result)
                    if config == "computegate" and case.kind == "gpu" and not case.dry:
                        swap_share = (cluster.metric("computegate_ledger_swaps_total") - swaps) / count
                        conflict_share = (
                            cluster.metric("computegate_ledger_conflicts_total") - conflicts
                        ) / count
                        if case.concurrency == 1:
                            results.swaps_per_admission.append(swap_share)
                            results.conflicts_per_admission.append(conflict_share)
                        else:
                            results.swaps_per_admission_c20.append(swap_share)
                            results.conflicts_per_admission_c20.append(conflict_share)
                    print(
                        f"  apiserver round {round_ + 1}/{rounds} {config:<22} {case.label:<18} "
                        f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  "
                        f"{result.throughput:6.0f}/s",
                        flush=True,
                    )
                if config == "computegate-ledger-off":
                    cluster.stop_replicas()
            cluster.delete_pods()
    return results


def table(results: Results) -> str:
    p50 = {case: Spread.of([a.p50_ms for a in attacks]) for case, attacks in results.attacks.items()}
    p99 = {case: Spread.of([a.p99_ms for a in attacks]) for case, attacks in results.attacks.items()}
    lines = [
        "| request | config | p50 ms | p99 ms | p50 / none | p50 / CEL | ComputeGate adds (p50 ms) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    shapes = sorted(
        {(c.kind, c.dry, c.concurrency) for c in results.attacks}, key=lambda s: (s[2], s[0], not s[1])
    )
    for kind, dry, concurrency in shapes:
        none = p50.get(Case("none", kind, dry, concurrency))
        cel = p50.get(Case("cel", kind, dry, concurrency))
        for config in CONFIGS:
            case = Case(config, kind, dry, concurrency)
            if case not in p50:
                continue
            here = p50[case].median
            added = f"{here - none.median:+.2f}" if none and config.startswith("computegate") else ""
            lines.append(
                f"| {case.label} | {config} | {p50[case].fmt(2)} | {p99[case].fmt(2)} | "
                f"{ratio(here, none.median) if none else float('nan'):.2f} | "
                f"{ratio(here, cel.median) if cel else float('nan'):.2f} | {added} |"
            )
    if results.swaps_per_admission:
        lines += [
            "",
            "| real GPU creates, ledger on | swaps per admission | conflicts per admission |",
            "|---|---:|---:|",
            f"| c=1 | {Spread.of(results.swaps_per_admission).fmt(2)} | "
            f"{Spread.of(results.conflicts_per_admission).fmt(2)} |",
            f"| c=20 | {Spread.of(results.swaps_per_admission_c20).fmt(2)} | "
            f"{Spread.of(results.conflicts_per_admission_c20).fmt(2)} |",
        ]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.apiserver", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 rounds of 40 requests per run")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--requests", type=int, default=200, help="creates per run (twice that at c=20)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    rounds, requests = (2, 40) if args.quick else (args.rounds, args.requests)
    with tempfile.TemporaryDirectory(prefix="computegate-bench-apiserver-") as tmp:
        print(table(run(rounds=rounds, requests=requests, work=Path(tmp))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
