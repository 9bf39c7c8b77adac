"""The one way ComputeGate's adapters reach a cluster: a ``kubernetes`` client configuration.

Order: the kubeconfig file given (``--kubeconfig``), else the in-cluster ServiceAccount (in a
pod), else ``$KUBECONFIG`` or ``~/.kube/config``, read now (the library reads ``$KUBECONFIG``
once, at import). The library's global default configuration is never touched.

``request`` and ``apply`` are one JSON request through a client's ``call_api`` (plain dicts in
and out, no generated models), for callers that handle arbitrary kinds, such as the dev
cluster's seeding.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

__all__ = [
    "APPLY_PATCH",
    "JsonObject",
    "KubeApiError",
    "KubeconfigError",
    "api_client",
    "apply",
    "client_configuration",
    "request",
    "send",
]

JsonObject = dict[str, Any]
APPLY_PATCH = "application/apply-patch+yaml"


class KubeconfigError(Exception):
    """No usable credentials: the message says which file and why."""


def client_configuration(kubeconfig: Path | None) -> Any:
    """A ``kubernetes.client.Configuration`` for ``kubeconfig``, or found as the module says."""
    configuration = client.Configuration()
    load_kube_config: Callable[..., None] = config.load_kube_config  # untyped library
    load_incluster_config: Callable[..., None] = config.load_incluster_config
    try:
        if kubeconfig is not None:
            load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
            return configuration
        try:
            load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            load_kube_config(config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration)
    except (config.ConfigException, OSError) as error:
        raise KubeconfigError(
            f"{kubeconfig or os.environ.get('KUBECONFIG') or '~/.kube/config'}: {error}"
        ) from None
    return configuration


def api_client(kubeconfig: Path | None, *, retry: bool = True) -> Any:
    """A ``kubernetes.client.ApiClient`` (close it when done). ``retry=False``: a connection
    that fails raises at once, where urllib3 would retry it three times, logging a warning each
    time (for polling a server that is starting)."""
    configuration = client_configuration(kubeconfig)
    if not retry:
        configuration.retries = False
    return client.ApiClient(configuration)


class KubeApiError(ApiException):
    """The API server answered with an error status. ``status``, ``reason`` and ``message`` (the
    Status message) come from its answer; ``str()`` is one line naming the request."""

    def __init__(self, method: str, path: str, status: int, reason: str, body: bytes) -> None:
        text = body.decode(errors="replace").strip()
        try:
            decoded: object = json.loads(text)
        except ValueError:
            decoded = None
        answer = decoded if isinstance(decoded, dict) else {}
        super().__init__(status=status, reason=str(answer.get("reason") or reason), body=text)
        self.method = method
        self.path = path
        self.message = str(answer.get("message", text))

    def __str__(self) -> str:
        return f"{self.method} {self.path}: HTTP {self.status} {self.reason}: {self.message}"


def send(
    api: Any,
    method: str,
    path: str,
    *,
    body: object = None,
    query: Mapping[str, str] | None = None,
    content_type: str = "application/json",
    timeout: float = 30.0,
) -> tuple[int, bytes]:
    """One request with ``api``'s identity: the status and body, uninterpreted. An API server
    that cannot be reached raises ``ConnectionError`` naming it."""
    method, url, headers, payload, _ = api.param_serialize(
        method,
        path,
        query_params=list((query or {}).items()),
        header_params={"Accept": "application/json", "Content-Type": content_type},
        body=body,
        auth_settings=["BearerToken"],
    )
    try:
        response = api.call_api(method, url, header_params=headers, body=payload, _request_timeout=timeout)
        response.read()
    except HTTPError as error:  # urllib3's, under the client: connection refused, timed out
        raise ConnectionError(f"{method} {api.configuration.host}{path}: {error}") from error
    data: bytes = response.data
    return int(response.status), data


def request(
    api: Any,
    method: str,
    path: str,
    *,
    body: object = None,
    query: Mapping[str, str] | None = None,
    content_type: str = "application/json",
    timeout: float = 30.0,
) -> tuple[int, JsonObject]:
    """A JSON request: the status and the JSON object answered. ``KubeApiError`` on any status
    of 400 or more."""
    status, data = send(api, method, path, body=body, query=query, content_type=content_type, timeout=timeout)
    if status >= 400:
        raise KubeApiError(method, path, status, "", data)
    decoded: object = json.loads(data) if data else {}
    if not isinstance(decoded, dict):
        raise KubeApiError(method, path, status, "not a JSON object", data[:200])
    return status, decoded


def list_all(api: Any, path: str, *, limit: int = 500) -> list[JsonObject]:
    """Every object of a collection, ``limit`` a request (``continue`` tokens); none when the
    collection is not served (404). ``KubeApiError`` on any other refusal."""
    items: list[JsonObject] = []
    token = ""
    while True:
        query = {"limit": str(limit), **({"continue": token} if token else {})}
        try:
            page = request(api, "GET", path, query=query)[1]
        except KubeApiError as error:
            if error.status == 404:
                return items
            raise
        items += page.get("items") or []
        token = str((page.get("metadata") or {}).get("continue") or "")
        if not token:
            return items


def apply(
    api: Any, path: str, obj: JsonObject, *, field_manager: str, force: bool = True
) -> tuple[int, JsonObject]:
    """Server-side apply (create or update): 201 when it created the object, 200 otherwise.
    Unknown or duplicate fields are refused (``fieldValidation=Strict``)."""
    query = {"fieldManager": field_manager, "fieldValidation": "Strict"}
    if force:
        query["force"] = "true"
    # JSON is YAML: the client sends a dict as JSON under the apply-patch+yaml content type.
    return request(api, "PATCH", path, body=obj, content_type=APPLY_PATCH, query=query)
