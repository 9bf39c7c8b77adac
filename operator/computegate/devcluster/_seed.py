"""Install the CRDs and restore a folder of YAML objects into a cluster, as from a backup.

Every object is server-side applied (create, or update if it exists, such as ``kube-system``)
by the field manager ``computegate-dev`` with ``force``, so seeding twice is a no-op and the
folder always wins. A ``status`` (a node's capacity, a pod's phase) is then applied through
the status subresource, which is the only place the API server accepts it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from computegate.devcluster._rest import JsonObject, KubeApiError, KubeHttp
from computegate.models.crds import crd_manifests

__all__ = [
    "NODE_DEFAULT_CAPACITY",
    "AppliedObject",
    "SeedError",
    "StateDocument",
    "check_state",
    "install_crds",
    "live_node_status",
    "read_state",
    "seed",
]

FIELD_MANAGER = "computegate-dev"
_STATE_SUFFIXES = (".yaml", ".yml", ".json")
# Server-owned metadata a backup carries but a restore must not send.
_SERVER_METADATA = (
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
_CRD = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
# What a node of a live cluster offers when the folder gives no figure: the scheduler fits no
# pod on a node without cpu, memory and pods capacity.
NODE_DEFAULT_CAPACITY = {"cpu": "64", "memory": "512Gi", "pods": "110"}
_DRA_KINDS = ("DeviceClass", "ResourceClaim", "ResourceClaimTemplate")
_DRA_GROUP = "resource.k8s.io/"
_SERVICE_ACCOUNT_WAIT = 60.0
_NODE_READY_WAIT = 60.0


class SeedError(ValueError):
    """A state document is unusable or the API server refused it; one line naming the file and
    the document's index (0-based, in file order)."""


@dataclass(frozen=True)
class StateDocument:
    """One object from the state folder and where it came from."""

    path: Path
    index: int
    obj: JsonObject

    @property
    def where(self) -> str:
        return f"{self.path} (document {self.index})"

    @property
    def api_version(self) -> str:
        return str(self.obj["apiVersion"])

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def namespace(self) -> str | None:
        value = self.obj["metadata"].get("namespace")
        return str(value) if value else None


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


def _documents(path: Path) -> Iterator[tuple[int, object]]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise SeedError(f"{path}: cannot read: {error}") from error
    index = -1
    try:
        for index, document in enumerate(yaml.safe_load_all(text)):
            yield index, document
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise SeedError(f"{path} (document {index + 1}){line}: invalid YAML: {problem}") from error


def _check(path: Path, index: int, obj: object) -> JsonObject:
    where = f"{path} (document {index})"
    if not isinstance(obj, dict):
        raise SeedError(f"{where}: expected a Kubernetes object (a mapping), got {type(obj).__name__}")
    for key in ("apiVersion", "kind"):
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise SeedError(f"{where}: missing {key}")
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str) or not metadata["name"]:
        raise SeedError(f"{where}: {obj['kind']} needs metadata.name")
    return obj


def read_state(state_dir: Path) -> list[StateDocument]:
    """Every object in the ``.yaml``/``.yml``/``.json`` files under ``state_dir`` (recursively,
    files in name order), with ``List`` documents flattened. Raises ``SeedError``."""
    if not state_dir.is_dir():
        raise SeedError(f"{state_dir}: not a directory")
    found: list[StateDocument] = []
    files = sorted(p for p in state_dir.rglob("*") if p.is_file() and p.suffix in _STATE_SUFFIXES)
    for path in files:
        for index, document in _documents(path):
            if document is None:
                continue
            if isinstance(document, dict) and str(document.get("kind", "")).endswith("List"):
                items = document.get("items")
                if not isinstance(items, list):
                    raise SeedError(f"{path} (document {index}): a {document['kind']} needs a list of items")
                found.extend(StateDocument(path, index, _check(path, index, item)) for item in items)
            else:
                found.append(StateDocument(path, index, _check(path, index, document)))
    return found


def _is(document: StateDocument, kind: str, group: str = "") -> bool:
    if document.kind != kind:
        return False
    return document.api_version == "v1" if not group else document.api_version.startswith(group)


def check_state(
    documents: list[StateDocument], *, live: bool = True, known_nodes: frozenset[str] = frozenset()
) -> None:
    """Refuse a state a live cluster cannot keep, with one line naming the file and document.

    - A pod bound (``spec.nodeName``) to a node the folder does not define (nor ``known_nodes``):
      the pod garbage collector deletes pods of nodes that do not exist.
    - ``live`` only: devices (DeviceClasses, ResourceClaims, claim templates) without any
      ResourceSlice: the scheduler allocates devices from ResourceSlices, and simulated nodes
      publish none, so the folder must define them.
    """
    nodes = {d.name for d in documents if _is(d, "Node")} | set(known_nodes)
    for document in documents:
        if not _is(document, "Pod"):
            continue
        spec = document.obj.get("spec")
        node = spec.get("nodeName") if isinstance(spec, dict) else None
        if node and node not in nodes:
            raise SeedError(
                f"{document.where}: Pod {document.namespace or 'default'}/{document.name} is bound to node "
                f"{node}, which the state does not define (the pod garbage collector would delete the pod): "
                "add the Node to the folder or drop spec.nodeName"
            )
    if not live:
        return
    devices = [d for d in documents if d.kind in _DRA_KINDS and d.api_version.startswith(_DRA_GROUP)]
    if devices and not any(_is(d, "ResourceSlice", _DRA_GROUP) for d in documents):
        first = devices[0]
        raise SeedError(
            f"{first.where}: {first.kind} {first.name}: the state uses Dynamic Resource Allocation but "
            "defines no ResourceSlice; simulated nodes publish none, so the scheduler could allocate no "
            "device: add a ResourceSlice per node and driver (resource.k8s.io/v1) to the folder"
        )


def live_node_status(status: JsonObject | None) -> JsonObject:
    """A node's status with cpu, memory and pods capacity (and allocatable) filled in where the
    folder gives none (``NODE_DEFAULT_CAPACITY``)."""
    status = dict(status or {})
    capacity = {**NODE_DEFAULT_CAPACITY, **(status.get("capacity") or {})}
    allocatable = {**capacity, **(status.get("allocatable") or {})}
    status["capacity"], status["allocatable"] = capacity, allocatable
    return status


@dataclass
class _Resource:
    plural: str
    namespaced: bool
    subresources: set[str] = field(default_factory=set)


class _Mapper:
    """apiVersion + kind -> resource path, from the API server's discovery documents."""

    def __init__(self, client: KubeHttp) -> None:
        self._client = client
        self._cache: dict[str, dict[str, _Resource]] = {}

    def _discover(self, api_version: str) -> dict[str, _Resource]:
        path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        body = self._client.get(path)
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


def _client(client_or_kubeconfig: KubeHttp | str | os.PathLike[str]) -> KubeHttp:
    if isinstance(client_or_kubeconfig, KubeHttp):
        return client_or_kubeconfig
    return KubeHttp.from_kubeconfig(Path(client_or_kubeconfig))


def _wait_established(client: KubeHttp, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(names)
    while pending:
        name = pending[0]
        crd = client.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        conditions = {c.get("type"): c for c in crd.get("status", {}).get("conditions", [])}
        if conditions.get("Established", {}).get("status") == "True":
            pending.pop(0)
            continue
        refused = conditions.get("NamesAccepted", {})
        if refused.get("status") == "False":
            raise SeedError(f"CRD {name}: names not accepted: {refused.get('message')}")
        if time.monotonic() > deadline:
            raise SeedError(f"CRD {name} not Established after {timeout:.0f}s: {list(conditions.values())}")
        time.sleep(0.1)


def install_crds(
    client_or_kubeconfig: KubeHttp | str | os.PathLike[str], *, timeout: float = 60.0
) -> list[str]:
    """Apply ComputeGate's CRDs and wait until each is Established; returns their names."""
    client = _client(client_or_kubeconfig)
    names = []
    for crd in crd_manifests():
        name = str(crd["metadata"]["name"])
        try:
            client.apply(
                f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}",
                crd,
                field_manager=FIELD_MANAGER,
            )
        except KubeApiError as error:
            raise SeedError(f"CRD {name} refused by the API server: {error.message}") from error
        names.append(name)
    _wait_established(client, names, timeout)
    return names


def _restorable(obj: JsonObject) -> tuple[JsonObject, JsonObject | None]:
    """The object without server-owned metadata and status, and its status (if any)."""
    body = {key: value for key, value in obj.items() if key != "status"}
    metadata = {key: value for key, value in obj["metadata"].items() if key not in _SERVER_METADATA}
    body["metadata"] = metadata
    status = obj.get("status")
    return body, status if isinstance(status, dict) and status else None


def _order(document: StateDocument) -> int:
    if (document.api_version, document.kind) == ("v1", "Namespace"):
        return 0
    if (document.api_version, document.kind) == _CRD:
        return 1
    return 2


def seed(
    client_or_kubeconfig: KubeHttp | str | os.PathLike[str],
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
    """
    client = _client(client_or_kubeconfig)
    documents = sorted(read_state(state_dir), key=_order)  # stable: file order within a rank
    bound = any(
        _is(d, "Pod") and isinstance(d.obj.get("spec"), dict) and d.obj["spec"].get("nodeName")
        for d in documents
    )
    existing = (
        frozenset(str(item["metadata"]["name"]) for item in client.get("/api/v1/nodes").get("items", []))
        if bound
        else frozenset()
    )
    check_state(documents, live=live, known_nodes=existing)
    if install_computegate_crds:
        install_crds(client)
    mapper = _Mapper(client)
    applied: list[AppliedObject] = []
    declared = {d.name for d in documents if (d.api_version, d.kind) == ("v1", "Namespace")}
    crds_done = False
    for document in documents:
        if _order(document) == 2 and not crds_done:
            crds = [d.name for d in documents if (d.api_version, d.kind) == _CRD]
            if crds:
                _wait_established(client, crds, timeout=60.0)
            crds_done = True
        try:
            resource = mapper.resolve(document.api_version, document.kind)
        except LookupError as error:
            raise SeedError(f"{document.where}: {error}") from error
        if resource.namespaced and document.namespace and document.namespace not in declared:
            _ensure_namespace(client, mapper, document.namespace)
            declared.add(document.namespace)
        if live and _is(document, "Pod"):
            _wait_for_service_account(client, document)
        applied.append(_apply(client, mapper, document, resource, live=live))
    if live:
        _wait_nodes_ready(client, [d for d in documents if _is(d, "Node")])
    return applied


def _wait_for_service_account(client: KubeHttp, document: StateDocument) -> None:
    """The ServiceAccount admission plugin refuses a pod until the service-account controller
    has made its namespace's ``default`` account (moments after the namespace exists)."""
    namespace = document.namespace or "default"
    spec = document.obj.get("spec")
    account = (spec.get("serviceAccountName") if isinstance(spec, dict) else None) or "default"
    deadline = time.monotonic() + _SERVICE_ACCOUNT_WAIT
    while True:
        try:
            client.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}")
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
    conditions = node.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _wait_nodes_ready(client: KubeHttp, nodes: list[StateDocument]) -> None:
    """Until kwok has initialised every seeded node (so the scheduler can use it at once)."""
    deadline = time.monotonic() + _NODE_READY_WAIT
    pending = [d for d in nodes]
    while pending:
        if _ready(client.get(f"/api/v1/nodes/{pending[0].name}")):
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            raise SeedError(
                f"{pending[0].where}: Node {pending[0].name} not Ready after {_NODE_READY_WAIT:.0f}s "
                "(is kwok running? see logs/kwok.log)"
            )
        time.sleep(0.1)


def _ensure_namespace(client: KubeHttp, mapper: _Mapper, name: str) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    client.apply(mapper.path("v1", "Namespace", name, None), body, field_manager=FIELD_MANAGER)


def _apply(
    client: KubeHttp, mapper: _Mapper, document: StateDocument, resource: _Resource, *, live: bool
) -> AppliedObject:
    body, status = _restorable(document.obj)
    if live and _is(document, "Node"):
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
        code, _ = client.apply(path, body, field_manager=FIELD_MANAGER)
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
            client.apply(f"{path}/status", status_body, field_manager=FIELD_MANAGER)
        except KubeApiError as error:
            raise SeedError(
                f"{document.where}: status of {document.kind} {document.name} refused: {error.message}"
            ) from error
        written = True
    return AppliedObject(document.kind, document.name, namespace, created=code == 201, status_written=written)
