"""End-to-end fixtures: one real etcd + kube-apiserver per test session.

Every test in this folder must carry ``pytest.mark.e2e`` (collection fails otherwise), and a
missing binary makes the tests fail, never skip: CI must not pass without the real API server.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from computegate.devcluster import (
    BinariesNotFound,
    ControlPlane,
    ControlPlaneError,
    find_binaries,
    install_crds,
)
from tests.e2e.webhook_support import (  # the webhook's session fixtures, for every e2e test
    OPERATOR_NAMESPACE,
    cluster_fixture,  # noqa: F401
    operator_fixture,  # noqa: F401
    operator_kubeconfig_fixture,  # noqa: F401
)

E2E_DIR = Path(__file__).parent
AUDIT_POLICY = f"""
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    userGroups: ["system:serviceaccounts:{OPERATOR_NAMESPACE}"]
  # Pod creations, with the admission answers' audit annotations (the usage record's chain
  # head, docs/compliance.md; tests/e2e/test_usage_audit.py).
  - level: Metadata
    verbs: ["create"]
    resources: [{{group: "", resources: ["pods"]}}]
  - level: None
"""
_PLANE = pytest.StashKey[ControlPlane]()
AUDIT_LOG = pytest.StashKey[Path]()

ClientFactory = Callable[[str, Sequence[str]], Any]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = [
        item.nodeid
        for item in items
        if E2E_DIR in item.path.parents and item.get_closest_marker("e2e") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            f"tests under {E2E_DIR} must be marked pytest.mark.e2e: {', '.join(unmarked)}"
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    plane = item.config.stash.get(_PLANE, None)
    if report.failed and plane is not None and "control_plane" in getattr(item, "fixturenames", ()):
        report.sections.append(("control plane logs", plane.failure_report(lines=40)))
    return report


@pytest.fixture(scope="session")
def control_plane(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver on loopback, started once per session, stopped at its end."""
    try:
        binaries = find_binaries()
    except BinariesNotFound as error:
        pytest.fail(f"end-to-end tests need the real control-plane binaries: {error}", pytrace=False)
    audit = tmp_path_factory.mktemp("audit")
    (audit / "policy.yaml").write_text(AUDIT_POLICY)
    audit_args = [
        f"--audit-policy-file={audit / 'policy.yaml'}",
        f"--audit-log-path={audit / 'audit.log'}",
        "--audit-log-format=json",
        "--audit-log-mode=blocking",
    ]
    try:
        plane = ControlPlane.start(
            tmp_path_factory.mktemp("control-plane"), binaries=binaries, extra_apiserver_args=audit_args
        )
    except ControlPlaneError as error:
        pytest.fail(f"the control plane did not start: {error}", pytrace=False)
    request.config.stash[_PLANE] = plane
    request.config.stash[AUDIT_LOG] = audit / "audit.log"
    yield plane
    plane.stop()
    del request.config.stash[_PLANE]


@pytest.fixture(scope="session")
def audit_log(request: pytest.FixtureRequest, control_plane: ControlPlane) -> Path:
    """The API server's audit log: one JSON line per request of the operator's ServiceAccount."""
    return request.config.stash[AUDIT_LOG]


@pytest.fixture(scope="session")
def computegate_crds(control_plane: ControlPlane) -> list[str]:
    """ComputeGate's CRDs, installed and Established."""
    return install_crds(control_plane.kubeconfig_path)


@pytest.fixture(scope="session")
def kube_admin(control_plane: ControlPlane) -> Iterator[Any]:
    """A ``kubernetes.client.ApiClient`` for the admin (group system:masters)."""
    api = control_plane.api_client()
    yield api
    api.close()


@pytest.fixture(scope="session")
def kube_client_for(control_plane: ControlPlane) -> Iterator[ClientFactory]:
    """A factory: ``kube_client_for(user, groups)`` -> an ``ApiClient`` with that identity."""
    made: list[Any] = []

    def factory(user: str, groups: Sequence[str] = ()) -> Any:
        api = control_plane.api_client(control_plane.mint_user(user, groups))
        made.append(api)
        return api

    yield factory
    for api in made:
        api.close()


@pytest.fixture(scope="session")
def tenant_kubeconfig(control_plane: ControlPlane) -> Path:
    """A kubeconfig for the user ``tenant-northwind`` in the group ``tenants``, with no grants."""
    return control_plane.mint_user("tenant-northwind", ["tenants"])


@pytest.fixture
def namespace(kube_admin: Any) -> str:
    """A fresh namespace per test (namespaces cannot be deleted for good without a
    controller-manager, so tests never reuse or delete one)."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(kube_admin).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name
