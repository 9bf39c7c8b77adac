"""The state folder of ``seed``: YAML objects as from a backup, read, checked and made ready
to restore (server-owned metadata dropped), with one-line errors naming the file and document.
Nothing here talks to a cluster."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from computegate.kubeclient import JsonObject
from computegate.statefiles import InputError, read_documents

__all__ = [
    "CRD",
    "NODE_DEFAULT_CAPACITY",
    "SeedError",
    "StateDocument",
    "apply_rank",
    "check_state",
    "is_kind",
    "live_node_status",
    "read_state",
    "restorable",
]

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
CRD = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
# What a node of a live cluster offers when the folder gives no figure: the scheduler fits no
# pod on a node without cpu, memory and pods capacity.
NODE_DEFAULT_CAPACITY = {"cpu": "64", "memory": "512Gi", "pods": "110"}
_DRA_KINDS = ("DeviceClass", "ResourceClaim", "ResourceClaimTemplate")
_DRA_GROUP = "resource.k8s.io/"


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
        return f"{self.path}: document {self.index}"

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


def _check(path: Path, index: int, obj: object) -> JsonObject:
    where = f"{path}: document {index}"
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
    files in name order), with ``List`` documents flattened, read as the offline evaluator reads
    them (``statefiles.read_documents``). Raises ``SeedError``."""
    if not state_dir.is_dir():
        raise SeedError(f"{state_dir}: not a directory")
    try:
        documents = read_documents([state_dir])
    except InputError as error:
        raise SeedError(str(error)) from None
    return [StateDocument(d.path, d.index, _check(d.path, d.index, d.body)) for d in documents]


def is_kind(document: StateDocument, kind: str, group: str = "") -> bool:
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
    nodes = {d.name for d in documents if is_kind(d, "Node")} | set(known_nodes)
    for document in documents:
        if not is_kind(document, "Pod"):
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
    if devices and not any(is_kind(d, "ResourceSlice", _DRA_GROUP) for d in documents):
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


def restorable(obj: JsonObject) -> tuple[JsonObject, JsonObject | None]:
    """The object without server-owned metadata and status, and its status (if any)."""
    body = {key: value for key, value in obj.items() if key != "status"}
    metadata = {key: value for key, value in obj["metadata"].items() if key not in _SERVER_METADATA}
    body["metadata"] = metadata
    status = obj.get("status")
    return body, status if isinstance(status, dict) and status else None


def apply_rank(document: StateDocument) -> int:
    if (document.api_version, document.kind) == ("v1", "Namespace"):
        return 0
    if (document.api_version, document.kind) == CRD:
        return 1
    return 2
