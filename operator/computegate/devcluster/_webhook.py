"""The ``dev up`` step that starts ComputeGate's webhook operator and registers its webhooks.

(Added by the webhook work, issue 4: ``DEV_UP_STEPS`` ends with ``webhook_step``.) The operator
runs as its own process (``python -m computegate webhook --register``), bound to 127.0.0.1,
with certificates it generates in ``<data dir>/webhook``; ``dev down`` stops it with the
control plane. The step returns once the operator is ready (its watches have synced) and both
webhook configurations point at it.
"""

from __future__ import annotations

import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from computegate.devcluster._controlplane import ControlPlaneError
from computegate.devcluster._dev import DevSession
from computegate.devcluster._process import ManagedProcess, tail
from computegate.devcluster._rest import KubeApiError

__all__ = ["WEBHOOK_PROCESS", "health_port", "start_webhook", "wait_for_webhook", "webhook_step"]

WEBHOOK_PROCESS = "computegate-webhook"
_CONFIGURATIONS = (
    "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/computegate-validating",
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/computegate-mutating",
)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _flag(process: ManagedProcess, name: str) -> str:
    argv = list(process.argv)
    return argv[argv.index(name) + 1]


def health_port(process: ManagedProcess) -> int:
    return int(_flag(process, "--health-port"))


def start_webhook(session: DevSession, *, extra_args: tuple[str, ...] = ()) -> ManagedProcess:
    """Start the operator (or find the one already running) for this control plane."""
    plane = session.control_plane
    port, health = _free_ports(2)
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
        *extra_args,
    ]
    return session.start_process(WEBHOOK_PROCESS, argv)


def wait_for_webhook(session: DevSession, process: ManagedProcess, *, timeout: float = 60.0) -> None:
    """Until ``/readyz`` answers and both configurations name the operator's port."""
    url = f"http://127.0.0.1:{health_port(process)}/readyz"
    port = _flag(process, "--port")
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
        body = session.http.get(path)
    except KubeApiError:
        return False
    return all(
        f":{port}/" in str(hook.get("clientConfig", {}).get("url", "")) for hook in body.get("webhooks", [])
    )


def webhook_step(session: DevSession) -> None:
    process = start_webhook(session)
    wait_for_webhook(session, process)
    session.log(
        f"webhook operator ready (pid {process.pid}, log {process.log_path}); webhooks registered; "
        f"health, readiness and metrics on http://127.0.0.1:{health_port(process)}"
    )


def webhook_log(session: DevSession) -> Path:
    return session.control_plane.logs_dir / f"{WEBHOOK_PROCESS}.log"
