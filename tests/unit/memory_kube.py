"""An in-memory stand-in for the few API calls the compliance and usage writers make: objects by
path, ``resourceVersion`` compare-and-swap, 404 and 409 as the API server answers them, label
selectors (``key``, ``!key``, ``key=value``, ``key in (...)``, ``key notin (...)``), and LIST
a page at a time. Every request is recorded, so a test can say how the writers asked."""

from __future__ import annotations

import copy
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException

from computegate.webhook.kube import Conflict

_TERM = re.compile(r"^\s*(!?)([\w./-]+)\s*(?:(=|==|!=)\s*([\w.-]*)|\s+(in|notin)\s*\(([^)]*)\))?\s*$")


def _terms(selector: str) -> list[str]:
    """Split on the commas outside parentheses."""
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    return [t for t in [*terms, current] if t.strip()]


def matches(selector: str, labels: Mapping[str, str]) -> bool:
    for term in _terms(selector):
        found = _TERM.match(term)
        assert found is not None, f"not a label selector term: {term!r}"
        negated, key, operator, value, set_operator, values = found.groups()
        if set_operator:
            allowed = {v.strip() for v in values.split(",")}
            if (set_operator == "in") != (labels.get(key) in allowed):
                return False
        elif operator:
            if (operator == "!=") == (labels.get(key) == value):
                return False
        elif bool(negated) == (key in labels):
            return False
    return True


@dataclass
class MemoryKube:
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)  # object path → object
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (verb, path, selector)
    version: int = 0

    def _stored(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self.version += 1
        stored = copy.deepcopy(dict(body))
        stored.setdefault("metadata", {})["resourceVersion"] = str(self.version)
        self.objects[path] = stored
        return copy.deepcopy(stored)

    def under(self, collection: str) -> dict[str, dict[str, Any]]:
        """The objects of a collection, by name."""
        prefix = collection.rstrip("/") + "/"
        return {
            path[len(prefix) :]: obj
            for path, obj in sorted(self.objects.items())
            if path.startswith(prefix) and "/" not in path[len(prefix) :]
        }

    async def get(self, path: str, *, urgent: bool = True) -> dict[str, Any] | None:
        self.requests.append(("get", path, ""))
        found = self.objects.get(path)
        return copy.deepcopy(found) if found is not None else None

    async def post(self, path: str, body: Mapping[str, Any], *, urgent: bool = True) -> dict[str, Any]:
        self.requests.append(("create", path, ""))
        target = f"{path}/{body['metadata']['name']}"
        if target in self.objects:
            raise Conflict(target)
        return self._stored(target, body)

    async def put(self, path: str, body: Mapping[str, Any], *, urgent: bool = True) -> dict[str, Any]:
        self.requests.append(("update", path, ""))
        status = path.endswith("/status")
        target = path.removesuffix("/status")
        current = self.objects.get(target)
        if current is None:
            raise ApiException(status=404, reason="Not Found")
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
            raise Conflict(path)
        if status:  # the status subresource changes the status only
            return self._stored(target, {**current, "status": copy.deepcopy(body.get("status"))})
        return self._stored(target, body)

    async def delete(self, path: str, *, urgent: bool = False) -> None:
        self.requests.append(("delete", path, ""))
        self.objects.pop(path, None)

    def across_namespaces(self, collection: str) -> list[dict[str, Any]]:
        """A namespaced resource's objects in every namespace (``/apis/G/V/R`` lists those of
        ``/apis/G/V/namespaces/*/R``)."""
        root, _, resource = collection.rstrip("/").rpartition("/")
        pattern = re.compile(rf"^{re.escape(root)}/namespaces/[^/]+/{re.escape(resource)}/[^/]+$")
        return [obj for path, obj in sorted(self.objects.items()) if pattern.match(path)]

    async def pages(
        self, path: str, *, selector: str = "", limit: int = 500, urgent: bool = False
    ) -> AsyncIterator[list[dict[str, Any]]]:
        chosen = [
            copy.deepcopy(obj)
            for obj in [*self.under(path).values(), *self.across_namespaces(path)]
            if matches(selector, (obj.get("metadata") or {}).get("labels") or {})
        ]
        for start in range(0, max(len(chosen), 1), limit):
            self.requests.append(("list", path, selector))
            yield chosen[start : start + limit]

    async def delete_collection(self, path: str, *, selector: str, urgent: bool = False) -> None:
        self.requests.append(("deletecollection", path, selector))
        for name, obj in self.under(path).items():
            if matches(selector, (obj.get("metadata") or {}).get("labels") or {}):
                del self.objects[f"{path}/{name}"]
