"""Cluster state and workloads from YAML files: the offline evaluator's input adapter.

Every error names the file, the document and the field, in one line, so a user can fix a
manifest without a stack trace.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from computegate.engine.state import Catalog, ClusterState, StateObject
from computegate.models import kube, resources
from computegate.vocabulary import CONTROLLERS

STATE_KINDS: dict[str, type[BaseModel]] = {
    "Tenant": resources.Tenant,
    "ExportLicense": resources.ExportLicense,
    "CompliancePolicy": resources.CompliancePolicy,
    "AcceleratorProfile": resources.AcceleratorProfile,
    "Namespace": kube.Namespace,
    "Node": kube.Node,
    "Pod": kube.Pod,
    "ResourceClaim": kube.ResourceClaim,
    "ResourceClaimTemplate": kube.ResourceClaimTemplate,
    "DeviceClass": kube.DeviceClass,
}
CONTROLLER_KINDS = frozenset(controller.kind for controller in CONTROLLERS)
_YAML_SUFFIXES = {".yaml", ".yml", ".json"}


class InputError(Exception):
    """Unusable input: the message names the file, the document and the field."""


@dataclass(frozen=True)
class Document:
    path: Path
    index: int  # 1-based position in its file
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def where(self) -> str:
        metadata = self.body.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        what = f" ({self.kind} {name})" if self.kind and name else f" ({self.kind})" if self.kind else ""
        return f"{self.path}: document {self.index}{what}"


def field_path(location: Iterable[int | str]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif "." in part or "/" in part:
            path += f'["{part}"]'
        else:
            path += f".{part}" if path else part
    return path


def describe_validation_error(error: ValidationError) -> str:
    first = error.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    path = field_path(first["loc"])
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{path or 'the object'}: {message}{more}"


# `-` names standard input (`helm template ... | computegate evaluate --state DIR -`).
STDIN = Path("-")
_STDIN_LABEL = Path("<stdin>")


def _files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path == STDIN:
            yield path
        elif path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _YAML_SUFFIXES)
        elif path.is_file():
            yield path
        else:
            raise InputError(f"{path}: no such file or directory")


def read_documents(paths: Iterable[Path]) -> list[Document]:
    """Every non-empty YAML document under the paths; a ``List`` is read as its items."""
    documents: list[Document] = []
    for path in _files(paths):
        loaded: list[Any] = []
        source = path
        if path == STDIN:
            path = _STDIN_LABEL  # what every message names
        try:
            text = sys.stdin.read() if source == STDIN else source.read_text(encoding="utf-8")
            for body in yaml.safe_load_all(text):
                loaded.append(body)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f", line {mark.line + 1}" if mark is not None else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            # The documents before the broken one loaded, so it is the next one.
            document = len(loaded) + 1
            raise InputError(f"{path}: document {document}{where}: not valid YAML: {problem}") from None
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(f"{path}: cannot be read: {error}") from None
        for index, body in enumerate(loaded, start=1):
            if body is None:
                continue
            if not isinstance(body, dict):
                raise InputError(f"{path}: document {index}: expected a Kubernetes object (a mapping)")
            if body.get("kind") == "List" or (str(body.get("kind", "")).endswith("List") and "items" in body):
                items = body.get("items") or []
                if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
                    raise InputError(f"{path}: document {index}: items: expected a list of objects")
                documents.extend(Document(path, index, item) for item in items)
            else:
                documents.append(Document(path, index, body))
    return documents


# Namespaced kinds: a document without metadata.namespace lands in "default", as with
# `kubectl apply` in the default context, rather than in no namespace at all.
NAMESPACED_KINDS = frozenset({"Pod", "ResourceClaim", "ResourceClaimTemplate", *CONTROLLER_KINDS})
DEFAULT_NAMESPACE = "default"


def _parse(document: Document, model: type[BaseModel]) -> Any:
    body = document.body
    metadata = body.get("metadata")
    if document.kind in NAMESPACED_KINDS and isinstance(metadata, dict) and not metadata.get("namespace"):
        body = {**body, "metadata": {**metadata, "namespace": DEFAULT_NAMESPACE}}
    try:
        return model.model_validate(body)
    except ValidationError as error:
        raise InputError(f"{document.where}: {describe_validation_error(error)}") from None


def _require_kind(document: Document, known: Iterable[str]) -> None:
    if not document.kind:
        raise InputError(f"{document.where}: kind: missing")
    metadata = document.body.get("metadata")
    if not isinstance(metadata, dict) or (not metadata.get("name") and not metadata.get("generateName")):
        raise InputError(f"{document.where}: metadata.name: missing")
    if document.kind not in known:
        raise InputError(
            f"{document.where}: kind: {document.kind!r} is not one of {', '.join(sorted(known))}"
        )


def parse_state_object(document: Document) -> StateObject:
    _require_kind(document, STATE_KINDS)
    parsed: StateObject = _parse(document, STATE_KINDS[document.kind])
    return parsed


def parse_workload(document: Document) -> kube.Workload:
    _require_kind(document, {"Pod", *CONTROLLER_KINDS})
    workload: kube.Workload = _parse(document, kube.Pod if document.kind == "Pod" else kube.Controller)
    return workload


def load_state(state_dir: Path, catalog: Catalog) -> ClusterState:
    state = ClusterState(catalog)
    for document in read_documents([state_dir]):
        state.upsert(parse_state_object(document))
    return state
