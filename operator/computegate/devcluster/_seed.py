"""Install the CRDs and restore a folder of YAML objects (``_state``) into a cluster, as from a
backup.

Every object is server-side applied (create, or update if it exists, such as ``kube-system``)
by the field manager ``computegate-dev`` with ``force``, so seeding twice is a no-op and the
folder always wins. A ``status`` (a node's capacity, a pod's phase) is then applied through
the status subresource, which is the only place the API server accepts it. Requests go through
the ``kubernetes`` client (``computegate.kubeclient``) as plain dicts: the objects are of any
kind, CRDs included.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from computegate.devcluster._state import (
    CRD,
    SeedError,
    StateDocument,
    apply_rank,
    check_state,
    is_kind,
    live_node_status,
    read_state,
    restorable,
)
from computegate.kubeclient import JsonObject, KubeApiError, api_client, apply, request
from computegate.models.crds import crd_manifests

__all__ = ["AppliedObject", "install_crds", "seed"]

FIELD_MANAGER = "computegate-dev"
_SERVICE_ACCOUNT_WAIT = 60.0
_NODE_READY_WAIT = 60.0


@dataclass(frozen=True)
class AppliedObject:
    kind: str
    name: str
    namespace: str | None
    created: bool
    status_written: bool = False

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        verb = "created" if self.created else "updated"
        return f"{self.kind} {where}{self.name} {verb}" + (" (with status)" if self.status_written else "")


@dataclass
class _Resource:
    plural: str
    namespaced: bool
    subresources: set[str] = field(default_factory=set)


class _Mapper:
    """apiVersion + kind -> resource path, from the API server's discovery documents."""

    def __init__(self, api: Any) -> None:
        self._api = api
        self._cache: dict[str, dict[str, _Resource]] = {}

    def _discover(self, api_version: str) -> dict[str, _Resource]:
        path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        body = _get(self._api, path)
        kinds: dict[str, _Resource] = {}
        for item in body.get("resources", []):
            name = str(item["name"])
            if "/" in name:
                parent, sub = name.split("/", 1)
                for resource in kinds.values():
                    if resource.plural == parent:
                        resource.subresources.add(sub)
                continue
            kinds.setdefault(str(item["kind"]), _Resource(name, bool(item["namespaced"])))
        return kinds

    def resolve(self, api_version: str, kind: str, *, wait: float = 10.0) -> _Resource:
        """The resource for a kind; waits briefly for a freshly installed CRD to be served."""
        deadline = time.monotonic() + wait
        while True:
            cached = self._cache.get(api_version, {})
            if kind in cached:
                return cached[kind]
            try:
                self._cache[api_version] = self._discover(api_version)
            except KubeApiError as error:
                if error.status != 404:
                    raise
            if kind in self._cache.get(api_version, {}):
                return self._cache[api_version][kind]
            if time.monotonic() > deadline:
                raise LookupError(f"the API server serves no kind {kind} in {api_version}")
            time.sleep(0.2)

    def path(self, api_version: str, kind: str, name: str, namespace: str | None) -> str:
        resource = self.resolve(api_version, kind)
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        if resource.namespaced:
            return f"{base}/namespaces/{namespace or 'default'}/{resource.plural}/{name}"
        return f"{base}/{resource.plural}/{name}"


@contextlib.contextmanager
def _admin(api_or_kubeconfig: Any | str | os.PathLike[str]) -> Iterator[Any]:
    """The ``kubernetes.client.ApiClient`` given, or one made from a kubeconfig's path (and
    closed after the call)."""
    if not isinstance(api_or_kubeconfig, str | os.PathLike):
        yield api_or_kubeconfig
        return
    api = api_client(Path(api_or_kubeconfig))
    try:
        yield api
    finally:
        api.close()


def _get(api: Any, path: str) -> JsonObject:
    return request(api, "GET", path)[1]


def _wait_established(api: Any, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(names)
    while pending:
        name = pending[0]
        crd = _get(api, f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        # A CRD just created can answer `"conditions": null` before its controllers fill it in.
        conditions = {c.get("type"): c for c in (crd.get("status") or {}).get("conditions") or []}
        if conditions.get("Established", {}).get("status") == "True":
            pending.pop(0)
            continue
        refused = conditions.get("NamesAccepted", {})
        if refused.get("status") == "False":
            raise SeedError(f"CRD {name}: names not accepted: {refused.get('message')}")
        if time.monotonic() > deadline:
            raise SeedError(f"CRD {name} not Established after {timeout:.0f}s: {list(conditions.values())}")
        time.sleep(0.1)


def install_crds(api_or_kubeconfig: Any | str | os.PathLike[str], *, timeout: float = 60.0) -> list[str]:
    """Apply ComputeGate's CRDs and wait until each is Established; returns their names.

    ``api_or_kubeconfig``: a ``kubernetes.client.ApiClient``, or the path of a kubeconfig."""
    with _admin(api_or_kubeconfig) as api:
        return _install_crds(api, timeout)


def _install_crds(api: Any, timeout: float) -> list[str]:
    names = []
    for crd in crd_manifests():
        name = str(crd["metadata"]["name"])
        try:
            apply(
                api,
                f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}",
                crd,
                field_manager=FIELD_MANAGER,
            )
        except KubeApiError as error:
            raise SeedError(f"CRD {name} refused by the API server: {error.message}") from error
        names.append(name)
    _wait_established(api, names, timeout)
    return names


def seed(
    api_or_kubeconfig: Any | str | os.PathLike[str],
    state_dir: Path,
    *,
    install_computegate_crds: bool = True,
    live: bool = False,
) -> list[AppliedObject]:
    """Restore every object under ``state_dir`` into the cluster; idempotent.

    Order: ComputeGate's CRDs (unless ``install_computegate_crds=False``), Namespaces, any
    CRDs in the folder (waited for), then everything else in file order. A namespace an object
    names but the folder does not define is created. Raises ``SeedError`` with one line naming
    the file and document for unreadable YAML, a kind the server does not serve, an object the
    API server refuses, or a state ``check_state`` refuses.

    ``live=True`` (a cluster with controllers and simulated nodes): nodes get cpu, memory and
    pods capacity where the folder gives none; each pod waits for its namespace's ``default``
    ServiceAccount (which the ServiceAccount admission plugin requires); the seeded nodes are
    waited for until Ready.

    ``api_or_kubeconfig``: a ``kubernetes.client.ApiClient``, or the path of a kubeconfig.
    """
    with _admin(api_or_kubeconfig) as api:
        return _seed(api, state_dir, install_computegate_crds=install_computegate_crds, live=live)


def _seed(api: Any, state_dir: Path, *, install_computegate_crds: bool, live: bool) -> list[AppliedObject]:
    documents = sorted(read_state(state_dir), key=apply_rank)  # stable: file order within a rank
    bound = any(
        is_kind(d, "Pod") and isinstance(d.obj.get("spec"), dict) and d.obj["spec"].get("nodeName")
        for d in documents
    )
    existing = (
        frozenset(str(item["metadata"]["name"]) for item in _get(api, "/api/v1/nodes").get("items", []))
        if bound
        else frozenset()
    )
    check_state(documents, live=live, known_nodes=existing)
    if install_computegate_crds:
        _install_crds(api, timeout=60.0)
    mapper = _Mapper(api)
    applied: list[AppliedObject] = []
    declared = {d.name for d in documents if (d.api_version, d.kind) == ("v1", "Namespace")}
    crds_done = False
    for document in documents:
        if apply_rank(document) == 2 and not crds_done:
            crds = [d.name for d in documents if (d.api_version, d.kind) == CRD]
            if crds:
                _wait_established(api, crds, timeout=60.0)
            crds_done = True
        try:
            resource = mapper.resolve(document.api_version, document.kind)
        except LookupError as error:
            raise SeedError(f"{document.where}: {error}") from error
        if resource.namespaced and document.namespace and document.namespace not in declared:
            _ensure_namespace(api, mapper, document.namespace)
            declared.add(document.namespace)
        if live and is_kind(document, "Pod"):
            _wait_for_service_account(api, document)
        applied.append(_apply(api, mapper, document, resource, live=live))
    if live:
        _wait_nodes_ready(api, [d for d in documents if is_kind(d, "Node")])
    return applied


def _wait_for_service_account(api: Any, document: StateDocument) -> None:
    """The ServiceAccount admission plugin refuses a pod until the service-account controller
    has made its namespace's ``default`` account (moments after the namespace exists)."""
    namespace = document.namespace or "default"
    spec = document.obj.get("spec")
    account = (spec.get("serviceAccountName") if isinstance(spec, dict) else None) or "default"
    deadline = time.monotonic() + _SERVICE_ACCOUNT_WAIT
    while True:
        try:
            _get(api, f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}")
            return
        except KubeApiError as error:
            if error.status != 404:
                raise
        if time.monotonic() > deadline:
            raise SeedError(
                f"{document.where}: Pod {namespace}/{document.name}: ServiceAccount {namespace}/{account} "
                f"does not exist after {_SERVICE_ACCOUNT_WAIT:.0f}s (is kube-controller-manager running?)"
            )
        time.sleep(0.1)


def _ready(node: JsonObject) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _wait_nodes_ready(api: Any, nodes: list[StateDocument]) -> None:
    """Until kwok has initialised every seeded node (so the scheduler can use it at once)."""
    deadline = time.monotonic() + _NODE_READY_WAIT
    pending = [d for d in nodes]
    while pending:
        if _ready(_get(api, f"/api/v1/nodes/{pending[0].name}")):
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            raise SeedError(
                f"{pending[0].where}: Node {pending[0].name} not Ready after {_NODE_READY_WAIT:.0f}s "
                "(is kwok running? see logs/kwok.log)"
            )
        time.sleep(0.1)


def _ensure_namespace(api: Any, mapper: _Mapper, name: str) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    apply(api, mapper.path("v1", "Namespace", name, None), body, field_manager=FIELD_MANAGER)


def _apply(
    api: Any, mapper: _Mapper, document: StateDocument, resource: _Resource, *, live: bool
) -> AppliedObject:
    body, status = restorable(document.obj)
    if live and is_kind(document, "Node"):
        status = live_node_status(status)
    if status is not None and "status" not in resource.subresources:
        body["status"], status = status, None  # a kind without the subresource keeps status inline
    namespace = (document.namespace or "default") if resource.namespaced else None
    if resource.namespaced:
        body["metadata"]["namespace"] = namespace
    else:
        body["metadata"].pop("namespace", None)
    path = mapper.path(document.api_version, document.kind, document.name, namespace)
    try:
        code, _ = apply(api, path, body, field_manager=FIELD_MANAGER)
    except KubeApiError as error:
        raise SeedError(
            f"{document.where}: {document.kind} {document.name} refused: {error.message}"
        ) from error
    written = False
    if status is not None:
        status_body: dict[str, Any] = {
            "apiVersion": document.api_version,
            "kind": document.kind,
            "metadata": {"name": document.name, **({"namespace": namespace} if namespace else {})},
            "status": status,
        }
        try:
            apply(api, f"{path}/status", status_body, field_manager=FIELD_MANAGER)
        except KubeApiError as error:
            raise SeedError(
                f"{document.where}: status of {document.kind} {document.name} refused: {error.message}"
            ) from error
        written = True
    return AppliedObject(document.kind, document.name, namespace, created=code == 201, status_written=written)
