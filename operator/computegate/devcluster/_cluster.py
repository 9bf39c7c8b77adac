"""The full dev cluster: kube-controller-manager, kube-scheduler and kwok beside the API server.

``dev up`` (without ``--bare``) runs ``cluster_step`` right after the CRDs are installed, so
that the ``default`` ServiceAccounts exist before seeding creates pods. Each process has its
own identity, as in a real cluster, so the webhook's admin exemptions hide nothing:

- kube-controller-manager as ``system:kube-controller-manager`` (not ``system:masters``), each
  controller with its own service account (``--use-service-account-credentials``);
- kube-scheduler as ``system:kube-scheduler`` (the bootstrap roles grant both);
- kwok as ``computegate-dev:kwok``, bound to ``cluster-admin``: it writes node and pod status,
  renews node Leases and deletes terminating pods, for every node of the cluster.

All three listen on 127.0.0.1 only (free ports) and are stopped by ``dev down``. No container
ever runs: kwok plays the kubelet's part with the stages of ``computegate/data/kwok-stages.yaml``.
"""

from __future__ import annotations

import http.client
import ssl
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from computegate.devcluster._controlplane import ControlPlane, ControlPlaneError
from computegate.devcluster._dev import DevSession
from computegate.devcluster._process import ManagedProcess, tail
from computegate.devcluster._servers import HOST, free_ports
from computegate.kubeclient import KubeApiError, apply, request

__all__ = [
    "CONTROLLER_MANAGER",
    "CONTROLLER_MANAGER_USER",
    "KWOK",
    "KWOK_USER",
    "POD_COMPLETE_DELAY_ANNOTATION",
    "SCHEDULER",
    "SCHEDULER_USER",
    "cluster_step",
    "kwok_stages_path",
    "start_cluster",
]

CONTROLLER_MANAGER = "kube-controller-manager"
SCHEDULER = "kube-scheduler"
KWOK = "kwok"
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
SCHEDULER_USER = "system:kube-scheduler"
KWOK_USER = "computegate-dev:kwok"
# A Job's pod succeeds this long after it runs (a Go duration, e.g. "20s"); 10s without it.
POD_COMPLETE_DELAY_ANNOTATION = "pod-complete.stage.kwok.x-k8s.io/delay"
POD_CIDR = "10.244.0.0/16"  # the pods' simulated addresses, apart from the service range
NODE_LEASE_SECONDS = 40  # a kubelet's default; kwok renews at a quarter of it
FIELD_MANAGER = "computegate-dev"


def kwok_stages_path() -> Path:
    """The stage configuration the package ships for kwok (package data)."""
    return Path(str(resources.files("computegate") / "data" / "kwok-stages.yaml"))


def _identity(plane: ControlPlane, user: str) -> Path:
    """A kubeconfig for ``user`` (minted once per cluster, reused by a later ``dev up``)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in user)
    path = plane.data_dir / "users" / f"{safe}.kubeconfig"
    return path if path.exists() else plane.mint_user(user)


def _binary(plane: ControlPlane, name: str) -> str:
    path = {
        CONTROLLER_MANAGER: plane.binaries.kube_controller_manager,
        SCHEDULER: plane.binaries.kube_scheduler,
        KWOK: plane.binaries.kwok,
    }[name]
    if path is None:
        raise ControlPlaneError(
            f"{name} is missing: run `make binaries`, or `computegate dev up --bare` for etcd and "
            "kube-apiserver alone"
        )
    return str(path)


def _https_ok(port: int, path: str = "/healthz") -> bool:
    """The component's own health endpoint (a self-signed certificate: not verified)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection(HOST, port, context=context, timeout=2)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status == 200 and response.read().strip() == b"ok"
    except OSError:
        return False
    finally:
        connection.close()


def _http_ok(port: int, path: str = "/healthz") -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _port(process: ManagedProcess, flag: str) -> int:
    for arg in process.argv:
        if arg.startswith(f"{flag}="):
            return int(arg.split("=", 1)[1].rsplit(":", 1)[-1])
    raise ControlPlaneError(f"{process.name} was started without {flag}")


def _wait(process: ManagedProcess, what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if not process.is_running():
            raise ControlPlaneError(
                f"{process.name} exited; log {process.log_path}:\n{tail(process.log_path, 30)}"
            )
        if time.monotonic() > deadline:
            log = f"log {process.log_path}:\n{tail(process.log_path, 30)}"
            raise ControlPlaneError(f"{what} not ready after {timeout:.0f}s; {log}")
        time.sleep(0.2)


def _start_controller_manager(session: DevSession) -> ManagedProcess:
    plane = session.control_plane
    kubeconfig = _identity(plane, CONTROLLER_MANAGER_USER)
    (port,) = free_ports(1)
    pki = plane.pki_dir
    argv = [
        _binary(plane, CONTROLLER_MANAGER),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={HOST}",
        f"--secure-port={port}",
        f"--cert-dir={plane.data_dir / 'controller-manager'}",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ]
    return session.start_process(CONTROLLER_MANAGER, argv)


def _start_scheduler(session: DevSession) -> ManagedProcess:
    plane = session.control_plane
    kubeconfig = _identity(plane, SCHEDULER_USER)
    (port,) = free_ports(1)
    argv = [
        _binary(plane, SCHEDULER),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={HOST}",
        f"--secure-port={port}",
        f"--cert-dir={plane.data_dir / 'scheduler'}",
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ]
    return session.start_process(SCHEDULER, argv)


def _grant_kwok(api: Any) -> None:
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "computegate-dev:kwok"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": KWOK_USER}],
    }
    apply(
        api,
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/computegate-dev:kwok",
        binding,
        field_manager=FIELD_MANAGER,
    )


def _start_kwok(session: DevSession) -> ManagedProcess:
    plane = session.control_plane
    kubeconfig = _identity(plane, KWOK_USER)
    _grant_kwok(session.api)
    (port,) = free_ports(1)
    # kwok always reads ~/.kwok/kwok.yaml first if it exists: a home of its own keeps a user's
    # kwok settings out of this cluster.
    home = plane.data_dir / "kwok-home"
    home.mkdir(parents=True, exist_ok=True)
    argv = [
        _binary(plane, KWOK),
        f"--kubeconfig={kubeconfig}",
        f"--config={kwok_stages_path()}",
        "--manage-all-nodes=true",
        f"--server-address={HOST}:{port}",
        f"--node-lease-duration-seconds={NODE_LEASE_SECONDS}",
        f"--cidr={POD_CIDR}",
    ]
    return session.start_process(KWOK, argv, env={"HOME": str(home)})


def _default_service_account_exists(api: Any) -> bool:
    try:
        request(api, "GET", "/api/v1/namespaces/default/serviceaccounts/default")
    except KubeApiError:
        return False
    return True


def _aggregated_roles_filled(api: Any) -> bool:
    try:
        roles = [
            request(api, "GET", f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}")[1]
            for name in ("admin", "edit", "view")
        ]
    except KubeApiError:
        return False
    return all(role.get("rules") for role in roles)


def start_cluster(session: DevSession, *, timeout: float = 90.0) -> list[ManagedProcess]:
    """Start (or find) kube-controller-manager, kube-scheduler and kwok; return once each is
    healthy, the ``default`` ServiceAccount exists and the aggregated roles are filled."""
    api = session.api
    manager = _start_controller_manager(session)
    scheduler = _start_scheduler(session)
    kwok = _start_kwok(session)
    _wait(manager, CONTROLLER_MANAGER, lambda: _https_ok(_port(manager, "--secure-port")), timeout)
    _wait(scheduler, SCHEDULER, lambda: _https_ok(_port(scheduler, "--secure-port")), timeout)
    _wait(kwok, KWOK, lambda: _http_ok(_port(kwok, "--server-address")), timeout)
    _wait(manager, "the default ServiceAccount", lambda: _default_service_account_exists(api), timeout)
    _wait(manager, "the aggregated admin/edit/view roles", lambda: _aggregated_roles_filled(api), timeout)
    return [manager, scheduler, kwok]


def cluster_step(session: DevSession) -> None:
    """The ``dev up`` step of the full cluster (nothing with ``--bare``)."""
    if session.bare:
        return
    started = time.monotonic()
    processes = start_cluster(session)
    pids = ", ".join(f"{p.name} {p.pid}" for p in processes)
    session.log(
        f"controllers, scheduler and simulated nodes ready in {time.monotonic() - started:.1f}s ({pids})"
    )
