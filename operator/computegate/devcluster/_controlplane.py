"""etcd + kube-apiserver as local processes on loopback: the control plane of the dev cluster.

Layout of a data directory (every path is also on the ``ControlPlane`` object)::

    controlplane.json   the state file: url, ports, binaries and every owned process (pid, argv, log)
    kubeconfig          admin (CN=computegate-admin, O=system:masters), certificates embedded
    pki/                ca.crt ca.key apiserver.crt/key sa.key sa.pub admin.crt/key
    etcd/               etcd's data
    logs/               etcd.log kube-apiserver.log (and any process added later)
    users/NAME.kubeconfig    minted by ``mint_user``
    serving/NAME.crt/.key    minted by ``mint_serving_cert`` (e.g. for a webhook on 127.0.0.1)
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from computegate import kubeclient
from computegate.devcluster._binaries import Binaries, find_binaries
from computegate.devcluster._kubeconfig import write_kubeconfig
from computegate.devcluster._pki import CertificateAuthority
from computegate.devcluster._process import ManagedProcess, tail
from computegate.devcluster._servers import (
    ADMIN_USER,
    HOST,
    apiserver_argv,
    etcd_argv,
    etcd_healthy,
    free_ports,
    write_pki,
)

__all__ = ["ADMIN_USER", "ControlPlane", "ControlPlaneError", "ServingCert"]

STATE_FILE = "controlplane.json"
_START_ATTEMPTS = 3  # a free port picked here can be taken before the server binds it


class ControlPlaneError(RuntimeError):
    """The control plane could not start (or stop); the message names the log files."""


@dataclass(frozen=True)
class ServingCert:
    """A serving certificate issued by the dev cluster's CA.

    For an admission webhook on loopback: serve TLS with ``cert_path``/``key_path`` on
    127.0.0.1 and put ``ca_bundle`` (base64 of ``ca_pem``) in the webhook configuration's
    ``clientConfig.caBundle`` next to ``url: https://127.0.0.1:PORT/PATH``.
    """

    cert_path: Path
    key_path: Path
    ca_path: Path

    @property
    def ca_pem(self) -> bytes:
        return self.ca_path.read_bytes()

    @property
    def ca_bundle(self) -> str:
        return base64.b64encode(self.ca_pem).decode("ascii")


class ControlPlane:
    """A running etcd + kube-apiserver pair and its data directory.

    Start one with ``ControlPlane.start(data_dir)``, find a detached one again with
    ``ControlPlane.attach(data_dir)``, stop it with ``stop()`` (or use it as a context manager).
    """

    def __init__(
        self,
        *,
        data_dir: Path,
        url: str,
        binaries: Binaries,
        ports: dict[str, int],
        processes: Iterable[ManagedProcess],
        detached: bool,
        service_account_admission: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.url = url
        self.binaries = binaries
        self.ports = dict(ports)
        self.processes = list(processes)
        self.detached = detached
        self.service_account_admission = service_account_admission
        self._health_client: Any = None  # kubernetes.client.ApiClient, made on first use

    def __repr__(self) -> str:
        return f"ControlPlane(url={self.url!r}, data_dir={str(self.data_dir)!r})"

    # -- paths ---------------------------------------------------------------------------
    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def state_path(self) -> Path:
        return self.data_dir / STATE_FILE

    @property
    def kubeconfig_path(self) -> Path:
        """The admin kubeconfig (group system:masters)."""
        return self.data_dir / "kubeconfig"

    @property
    def ca_path(self) -> Path:
        """The CA that signed the API server's certificate, every client's, and minted serving certs."""
        return self.pki_dir / "ca.crt"

    @property
    def ca_pem(self) -> bytes:
        return self.ca_path.read_bytes()

    @property
    def log_paths(self) -> dict[str, Path]:
        return {process.name: process.log_path for process in self.processes}

    # -- lifecycle -----------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        data_dir: Path,
        *,
        binaries: Binaries | None = None,
        detach: bool = False,
        timeout: float = 90.0,
        extra_apiserver_args: Sequence[str] = (),
        service_account_admission: bool = False,
    ) -> ControlPlane:
        """Generate certificates, start etcd and kube-apiserver on free loopback ports, and
        return once ``/readyz`` answers ``ok``.

        ``service_account_admission=True`` keeps the ServiceAccount admission plugin on, as in a
        real cluster: only right when a kube-controller-manager will create each namespace's
        ``default`` ServiceAccount (the full dev cluster); otherwise it would refuse every pod.

        ``detach=True`` lets the processes outlive this Python process (``computegate dev up``);
        otherwise they die with it. Raises ``BinariesNotFound`` if a binary is missing and
        ``ControlPlaneError`` (naming the logs) if the servers do not come up.
        """
        data_dir = data_dir.expanduser().resolve()
        existing = cls.attach(data_dir)
        if existing is not None and existing.running_processes():
            raise ControlPlaneError(
                f"a control plane already runs from {data_dir} (pids "
                f"{', '.join(str(p.pid) for p in existing.running_processes())}); stop it first"
            )
        binaries = binaries or find_binaries()
        last_error: ControlPlaneError | None = None
        for _ in range(_START_ATTEMPTS):
            plane = cls._prepare(data_dir, binaries, detach=detach)
            plane.service_account_admission = service_account_admission
            try:
                plane._run(extra_apiserver_args)
                plane.wait_ready(timeout)
            except ControlPlaneError as error:
                plane.stop()
                if "address already in use" not in str(error):
                    raise
                last_error = error
                continue
            except BaseException:  # e.g. Ctrl-C while waiting: never leave half a cluster behind
                plane.stop()
                raise
            return plane
        assert last_error is not None
        raise last_error

    @classmethod
    def _prepare(cls, data_dir: Path, binaries: Binaries, *, detach: bool) -> ControlPlane:
        """A fresh data directory: free ports, certificates and kubeconfig; nothing runs yet."""
        for stale in ("etcd", "logs", "pki", "users", "serving"):
            shutil.rmtree(data_dir / stale, ignore_errors=True)
        data_dir.mkdir(parents=True, exist_ok=True)
        apiserver_port, etcd_port, etcd_peer_port = free_ports(3)
        plane = cls(
            data_dir=data_dir,
            url=f"https://{HOST}:{apiserver_port}",
            binaries=binaries,
            ports={"apiserver": apiserver_port, "etcd": etcd_port, "etcdPeer": etcd_peer_port},
            processes=[],
            detached=detach,
        )
        write_pki(plane.pki_dir, kubeconfig=plane.kubeconfig_path, url=plane.url)
        return plane

    def _run(self, extra_apiserver_args: Sequence[str]) -> None:
        """Start etcd, wait until it is healthy, then start kube-apiserver."""
        etcd_port = self.ports["etcd"]
        self._spawn(
            "etcd", etcd_argv(self.binaries, self.data_dir, port=etcd_port, peer_port=self.ports["etcdPeer"])
        )
        self._wait_for("etcd", lambda: etcd_healthy(etcd_port), timeout=30.0)
        argv = apiserver_argv(
            self.binaries,
            self.pki_dir,
            url=self.url,
            port=self.ports["apiserver"],
            etcd_port=etcd_port,
            service_account_admission=self.service_account_admission,
            extra_args=extra_apiserver_args,
        )
        self._spawn("kube-apiserver", argv)

    def _spawn(self, name: str, argv: Sequence[str]) -> ManagedProcess:
        process = ManagedProcess.spawn(
            name, argv, log_path=self.logs_dir / f"{name}.log", detach=self.detached
        )
        self.add_process(process)
        return process

    def add_process(self, process: ManagedProcess) -> None:
        """Own another process (e.g. a webhook server): ``stop()`` stops it first, and the state
        file records it so a later ``attach`` (``computegate dev down``) finds it."""
        self.processes.append(process)
        self.save_state()

    def save_state(self) -> None:
        state = {
            "url": self.url,
            "kubeconfig": str(self.kubeconfig_path),
            "ports": self.ports,
            "detached": self.detached,
            "binaries": self.binaries.to_json(),
            "serviceAccountAdmission": self.service_account_admission,
            "processes": [process.to_json() for process in self.processes],
        }
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.state_path)

    @classmethod
    def attach(cls, data_dir: Path) -> ControlPlane | None:
        """The control plane recorded in ``data_dir``'s state file, running or not (None if no file)."""
        path = data_dir.expanduser().resolve() / STATE_FILE
        try:
            state: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except ValueError as error:
            raise ControlPlaneError(f"{path}: unreadable state file ({error}); remove it") from error
        found = state["binaries"]
        return cls(
            data_dir=path.parent,
            url=str(state["url"]),
            binaries=Binaries.from_json(found),
            ports={str(k): int(v) for k, v in state["ports"].items()},
            processes=[ManagedProcess.from_json(item) for item in state["processes"]],
            detached=bool(state.get("detached", True)),
            service_account_admission=bool(state.get("serviceAccountAdmission", False)),
        )

    def running_processes(self) -> list[ManagedProcess]:
        return [process for process in self.processes if process.is_running()]

    def is_healthy(self) -> bool:
        """Both servers run and ``/readyz`` says ok."""
        if len(self.running_processes()) != len(self.processes):
            return False
        if self._health_client is None:
            # Polled while the server starts: a refused connection is an answer, not a failure.
            self._health_client = kubeclient.api_client(self.kubeconfig_path, retry=False)
        try:
            status, body = kubeclient.send(self._health_client, "GET", "/readyz", timeout=5.0)
        except OSError:
            return False
        return status == 200 and body.strip() == b"ok"

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait until ``/readyz`` is ok; raise ``ControlPlaneError`` with the logs otherwise."""
        self._wait_for("kube-apiserver", self.is_healthy, timeout=timeout)

    def _wait_for(self, what: str, check: Callable[[], bool], *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if check():
                return
            dead = [process for process in self.processes if not process.is_running()]
            if dead:
                codes = ", ".join(f"{p.name} exited with {p.exit_code()}" for p in dead)
                raise ControlPlaneError(f"{codes} while waiting for {what}\n{self.failure_report()}")
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{what} not ready after {timeout:.0f}s at {self.url}\n{self.failure_report()}"
                )
            time.sleep(0.2)

    def failure_report(self, lines: int = 25) -> str:
        """Every log's path and its last lines, for an error message or a failed test."""
        parts = [f"control plane data directory: {self.data_dir}"]
        for process in self.processes:
            parts.append(f"--- {process.name} (pid {process.pid}) log: {process.log_path}")
            parts.append(tail(process.log_path, lines) or "(empty)")
        return "\n".join(parts)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every owned process, newest first (SIGTERM, then SIGKILL after ``timeout``)."""
        if self._health_client is not None:
            self._health_client.close()
            self._health_client = None
        errors = []
        for process in reversed(self.processes):
            try:
                process.stop(timeout)
            except RuntimeError as error:
                errors.append(str(error))
        if errors:
            raise ControlPlaneError("; ".join(errors) + f"\n{self.failure_report()}")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- identities and clients ----------------------------------------------------------
    def _ca(self) -> CertificateAuthority:
        return CertificateAuthority.load(self.pki_dir / "ca.crt", self.pki_dir / "ca.key")

    def mint_user(self, name: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig for user ``name`` in ``groups`` (client certificate CN=name, O=groups).

        The identity has no permissions until RBAC grants them (``system:authenticated`` gets
        only discovery). Returns ``data_dir/users/<name>.kubeconfig``.
        """
        credentials = self._ca().issue(name, organizations=groups, client=True)
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
        return write_kubeconfig(
            self.data_dir / "users" / f"{safe}.kubeconfig",
            server=self.url,
            ca_pem=self.ca_pem,
            user=name,
            credentials=credentials,
        )

    def mint_serving_cert(self, name: str, hosts: Sequence[str] = (HOST, "localhost")) -> ServingCert:
        """A TLS serving certificate for ``hosts`` that the API server trusts once the webhook
        configuration carries this CA as its ``caBundle``."""
        pair = self._ca().issue(name, hosts=hosts, server=True)
        cert, key = pair.write(
            self.data_dir / "serving" / f"{name}.crt", self.data_dir / "serving" / f"{name}.key"
        )
        return ServingCert(cert_path=cert, key_path=key, ca_path=self.ca_path)

    def api_client(self, kubeconfig: Path | None = None) -> Any:
        """A ``kubernetes.client.ApiClient`` for the admin (or for the given kubeconfig); close it
        when done."""
        return kubeclient.api_client(kubeconfig or self.kubeconfig_path)

    def kubectl(
        self, *args: str, kubeconfig: Path | None = None, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this cluster (as admin unless ``kubeconfig`` is given)."""
        argv = [str(self.binaries.kubectl), f"--kubeconfig={kubeconfig or self.kubeconfig_path}", *args]
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=check, timeout=60)
