"""``computegate dev up`` / ``dev down``: a detached local control plane for trials and the demo.

``dev up`` starts (or finds) the control plane of a data directory, then runs the steps of
``DEV_UP_STEPS`` in order, each a function of one ``DevSession``. The seam for later work is
that list: a step that starts the webhook server and registers its configuration is appended
there (it uses ``session.start_process`` so ``dev down`` stops it too, and
``session.control_plane.mint_serving_cert`` for its TLS). Every step must be idempotent, since
``dev up`` on a running cluster runs them all again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from computegate.devcluster._binaries import find_binaries
from computegate.devcluster._controlplane import ControlPlane, ControlPlaneError
from computegate.devcluster._process import ManagedProcess
from computegate.devcluster._seed import install_crds, seed
from computegate.devcluster._state import SeedError, check_state, read_state
from computegate.kubeclient import KubeApiError

__all__ = [
    "DEV_UP_STEPS",
    "DevSession",
    "DevStep",
    "default_dev_dir",
    "dev_down",
    "dev_up",
    "install_crds_step",
    "run_dev_command",
    "seed_step",
]


def default_dev_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$COMPUTEGATE_CACHE/dev``, else ``$XDG_CACHE_HOME/computegate/dev``, else
    ``~/.cache/computegate/dev``."""
    env = os.environ if env is None else env
    if env.get("COMPUTEGATE_CACHE"):
        return Path(env["COMPUTEGATE_CACHE"]) / "dev"
    base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "computegate" / "dev"


def _stderr(message: str) -> None:
    print(f"computegate dev: {message}", file=sys.stderr, flush=True)


@dataclass
class DevSession:
    """What a ``dev up`` step works with."""

    control_plane: ControlPlane
    state_dir: Path | None
    reused: bool  # the control plane was already running before this ``dev up``
    log: Callable[[str], None] = _stderr
    bare: bool = False  # etcd and kube-apiserver only: no controllers, scheduler or kwok
    webhook_replicas: int = 1  # webhook processes behind one loopback endpoint
    _api: Any = field(default=None, repr=False)

    @property
    def api(self) -> Any:
        """An admin ``kubernetes.client.ApiClient``, made on first use; ``close()`` closes it."""
        if self._api is None:
            self._api = self.control_plane.api_client()
        return self._api

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None

    def start_process(
        self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None
    ) -> ManagedProcess:
        """Start a detached process (log: ``logs/<name>.log``) that ``dev down`` stops, or
        return the one of that name that already runs (so the step stays idempotent).

        ``env`` adds to (or overrides) this process's environment.
        """
        for process in self.control_plane.running_processes():
            if process.name == name:
                return process
        plane = self.control_plane
        process = ManagedProcess.spawn(
            name,
            argv,
            log_path=plane.logs_dir / f"{name}.log",
            detach=True,
            env={**os.environ, **(env or {})},
        )
        plane.add_process(process)
        return process


DevStep = Callable[[DevSession], None]


def install_crds_step(session: DevSession) -> None:
    names = install_crds(session.api)
    session.log(f"CRDs established: {', '.join(names)}")


def seed_step(session: DevSession) -> None:
    if session.state_dir is None:
        return
    applied = seed(session.api, session.state_dir, install_computegate_crds=False, live=not session.bare)
    for item in applied:
        session.log(f"seeded {item}")
    session.log(f"seeded {len(applied)} objects from {session.state_dir}")


DEV_UP_STEPS: list[DevStep] = [install_crds_step, seed_step]
"""What ``dev up`` does once the control plane is ready, in order. Append to extend. (The
package inserts the full cluster's step, which starts the controllers, the scheduler and kwok,
before seeding, and appends the webhook's.)"""


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """One ``dev up``/``dev down`` at a time per data directory."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def dev_up(
    *,
    state_dir: Path | None = None,
    data_dir: Path | None = None,
    steps: Sequence[DevStep] | None = None,
    log: Callable[[str], None] = _stderr,
    bare: bool = False,
    webhook_replicas: int = 1,
) -> DevSession:
    """Bring the dev cluster of ``data_dir`` up (or reuse the running one) and run ``steps``
    (default ``DEV_UP_STEPS``). The control plane stays up after this returns.

    ``bare=True``: etcd and kube-apiserver only (the ServiceAccount admission plugin off, no
    controllers, scheduler or simulated nodes). A running cluster of the other mode is stopped
    and started afresh. ``webhook_replicas``: that many webhook operators behind one loopback
    endpoint (``_spread``), as a Service spreads a cluster's replicas."""
    data_dir = (data_dir or default_dev_dir()).expanduser().resolve()
    state_dir = state_dir.expanduser().resolve() if state_dir is not None else None
    if state_dir is not None:
        # unusable YAML, or a pod bound to a node the folder lacks, fails here, before anything starts
        check_state(read_state(state_dir), live=not bare)
    binaries = find_binaries(require_cluster=not bare)
    mode = "bare (etcd and kube-apiserver)" if bare else "full (controllers, scheduler, kwok)"
    with _locked(data_dir):
        existing = ControlPlane.attach(data_dir)
        if (
            existing is not None
            and existing.is_healthy()
            and existing.service_account_admission == (not bare)
        ):
            pids = ", ".join(f"{p.name} {p.pid}" for p in existing.running_processes())
            log(f"control plane already running at {existing.url} ({pids})")
            plane, reused = existing, True
        else:
            if existing is not None and existing.running_processes():
                if existing.is_healthy():
                    log(f"the running cluster is not {mode}: stopping it to start afresh")
                else:
                    log("stopping the remains of an unhealthy control plane")
                existing.stop()
            log(f"starting etcd and kube-apiserver in {data_dir}")
            plane = ControlPlane.start(
                data_dir, binaries=binaries, detach=True, service_account_admission=not bare
            )
            reused = False
            pids = ", ".join(f"{p.name} {p.pid}" for p in plane.processes)
            log(f"control plane ready at {plane.url} ({pids}); logs in {plane.logs_dir}")
        session = DevSession(
            control_plane=plane,
            state_dir=state_dir,
            reused=reused,
            log=log,
            bare=bare,
            webhook_replicas=webhook_replicas,
        )
        for step in DEV_UP_STEPS if steps is None else steps:
            step(session)
        return session


def dev_down(*, data_dir: Path | None = None, log: Callable[[str], None] = _stderr) -> list[ManagedProcess]:
    """Stop every process the data directory's state file lists; returns those that ran."""
    data_dir = (data_dir or default_dev_dir()).expanduser().resolve()
    with _locked(data_dir):
        plane = ControlPlane.attach(data_dir)
        if plane is None:
            log(f"nothing to stop in {data_dir}")
            return []
        running = plane.running_processes()
        plane.stop()
        plane.state_path.unlink(missing_ok=True)
        for process in reversed(running):  # the order stop() used
            log(f"stopped {process.name} (pid {process.pid})")
        if not running:
            log("no process was running")
        return running


def run_dev_command(
    action: str,
    *,
    state_dir: Path | None = None,
    data_dir: Path | None = None,
    stdout: TextIO | None = None,
    bare: bool = False,
    webhook_replicas: int = 1,
) -> int:
    """The ``computegate dev`` command: 0 on success, 1 with a one-line error on stderr."""
    from computegate.devcluster._binaries import BinariesNotFound

    out = stdout or sys.stdout
    try:
        if action == "up":
            session = dev_up(
                state_dir=state_dir, data_dir=data_dir, bare=bare, webhook_replicas=webhook_replicas
            )
            session.close()
            print(f"export KUBECONFIG={session.control_plane.kubeconfig_path}", file=out, flush=True)
        elif action == "down":
            dev_down(data_dir=data_dir)
        else:
            raise ValueError(f"unknown dev action {action!r}")
    except (BinariesNotFound, ControlPlaneError, SeedError, KubeApiError, OSError) as error:
        _stderr(f"error: {error}")
        if action == "up" and isinstance(error, SeedError | KubeApiError):
            _stderr("the control plane is still running: fix the state and run `dev up` again, or `dev down`")
        return 1
    return 0
