"""The ``dev up`` step that starts ComputeGate's webhook operator and registers its webhooks.

(Added by the webhook work, issue 4: ``DEV_UP_STEPS`` ends with ``webhook_step``.) The operator
runs as its own process (``python -m computegate webhook --register``), bound to 127.0.0.1,
with certificates it generates in ``<data dir>/webhook``; ``dev down`` stops it with the
control plane. The step returns once the operator is ready (its watches have synced) and both
webhook configurations point at it.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from computegate.devcluster._controlplane import ControlPlaneError
from computegate.devcluster._dev import DevSession
from computegate.devcluster._process import ManagedProcess, tail
from computegate.devcluster._servers import free_ports
from computegate.kubeclient import KubeApiError, apply, request

__all__ = ["WEBHOOK_PROCESS", "health_port", "start_webhook", "wait_for_webhook", "webhook_step"]

WEBHOOK_PROCESS = "computegate-webhook"
_CONFIGURATIONS = (
    "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/computegate-validating",
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/computegate-mutating",
)


def _flag(process: ManagedProcess, name: str) -> str:
    argv = list(process.argv)
    return argv[argv.index(name) + 1]


def health_port(process: ManagedProcess) -> int:
    return int(_flag(process, "--health-port"))


# The operator's own namespace: its Lease (the license ledger's reconciler) lives there.
OPERATOR_NAMESPACE = "computegate-system"
SPREAD_PROCESS = "computegate-spread"


def _ensure_namespace(session: DevSession) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}}
    apply(session.api, f"/api/v1/namespaces/{OPERATOR_NAMESPACE}", namespace, field_manager="computegate-dev")


def start_webhook(
    session: DevSession, *, extra_args: tuple[str, ...] = (), name: str = WEBHOOK_PROCESS
) -> ManagedProcess:
    """Start the operator (or find the one already running) for this control plane."""
    plane = session.control_plane
    port, health = free_ports(2)
    argv = [
        sys.executable,
        "-m",
        "computegate",
        "webhook",
        f"--kubeconfig={plane.kubeconfig_path}",
        "--register",
        "--addr",
        "127.0.0.1",
        "--port",
        str(port),
        "--health-port",
        str(health),
        "--cert-dir",
        str(plane.data_dir / "webhook"),
        f"--namespace={OPERATOR_NAMESPACE}",
        *extra_args,
        # More operator flags for trials and tests (docs/dev-cluster.md), e.g. --usage-period=10.
        *shlex.split(os.environ.get("COMPUTEGATE_DEV_WEBHOOK_ARGS", "")),
    ]
    return session.start_process(name, argv)


def wait_for_webhook(
    session: DevSession, process: ManagedProcess, *, timeout: float = 60.0, port: str | None = None
) -> None:
    """Until ``/readyz`` answers and both configurations name the port (the operator's own, or
    the forwarder's in front of replicas)."""
    url = f"http://127.0.0.1:{health_port(process)}/readyz"
    port = port or _flag(process, "--port")
    deadline = time.monotonic() + timeout
    while True:
        if not process.is_running():
            raise ControlPlaneError(f"the webhook operator exited:\n{tail(process.log_path, 30)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                ready = response.status == 200
        except (urllib.error.URLError, OSError):
            ready = False
        if ready and all(_points_at(session, path, port) for path in _CONFIGURATIONS):
            return
        if time.monotonic() > deadline:
            raise ControlPlaneError(
                f"the webhook operator was not ready after {timeout:.0f}s; log {process.log_path}:\n"
                f"{tail(process.log_path, 30)}"
            )
        time.sleep(0.2)


def _points_at(session: DevSession, path: str, port: str) -> bool:
    try:
        body = request(session.api, "GET", path)[1]
    except KubeApiError:
        return False
    return all(
        f":{port}/" in str(hook.get("clientConfig", {}).get("url", "")) for hook in body.get("webhooks", [])
    )


def webhook_step(session: DevSession) -> None:
    _ensure_namespace(session)
    if session.webhook_replicas == 1:
        process = start_webhook(session)
        wait_for_webhook(session, process)
        session.log(
            f"webhook operator ready (pid {process.pid}, log {process.log_path}); webhooks registered; "
            f"health, readiness and metrics on http://127.0.0.1:{health_port(process)}"
        )
        return
    _start_replicas(session)


def _start_replicas(session: DevSession) -> None:
    """N operators behind one forwarder; every replica registers the forwarder's address."""
    from computegate.webhook.certs import ensure_serving_files

    plane = session.control_plane
    # One certificate for every replica, made before any starts (they would each make their own).
    ensure_serving_files(plane.data_dir / "webhook", hosts=["127.0.0.1", "localhost"])
    running = {p.name: p for p in plane.running_processes()}
    if SPREAD_PROCESS in running:
        spread = running[SPREAD_PROCESS]
        listen = next(a for a in spread.argv if a.startswith("--listen=")).rsplit(":", 1)[1]
        replicas = [running[name] for name in sorted(running) if name.startswith(WEBHOOK_PROCESS)]
    else:
        (listen_port,) = free_ports(1)
        listen = str(listen_port)
        replicas = [
            start_webhook(session, extra_args=("--advertise-port", listen), name=f"{WEBHOOK_PROCESS}-{index}")
            for index in range(session.webhook_replicas)
        ]
        backends = [arg for r in replicas for arg in ("--backend", f"127.0.0.1:{_flag(r, '--port')}")]
        spread = session.start_process(
            SPREAD_PROCESS,
            [
                sys.executable,
                "-m",
                "computegate.devcluster._spread",
                f"--listen=127.0.0.1:{listen}",
                *backends,
            ],
        )
    for replica in replicas:
        wait_for_webhook(session, replica, port=listen)
    session.log(
        f"{len(replicas)} webhook operators ready behind https://127.0.0.1:{listen} (pid {spread.pid}); "
        "metrics: " + ", ".join(f"http://127.0.0.1:{health_port(r)}/metrics" for r in replicas)
    )


def webhook_log(session: DevSession) -> Path:
    return session.control_plane.logs_dir / f"{WEBHOOK_PROCESS}.log"
