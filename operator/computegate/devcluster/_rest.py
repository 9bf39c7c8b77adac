"""A small, typed HTTPS client for the Kubernetes API (standard library only).

The harness needs a handful of calls (health, discovery, server-side apply, get); this keeps
them explicit and independent of the generated client's internals. Tests use the
``kubernetes`` package's ``ApiClient`` on the same kubeconfig.
"""

from __future__ import annotations

import http.client
import json
import ssl
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from computegate.devcluster._kubeconfig import read_kubeconfig

__all__ = ["KubeApiError", "KubeHttp"]

JsonObject = dict[str, Any]

APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"


class KubeApiError(RuntimeError):
    """The API server answered with an error status; ``message`` is its Status message."""

    def __init__(self, method: str, path: str, status: int, body: object) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.body = body
        if isinstance(body, dict):
            self.reason = str(body.get("reason", ""))
            self.message = str(body.get("message", body))
        else:
            self.reason = ""
            self.message = str(body).strip()
        super().__init__(f"{method} {path}: HTTP {status} {self.reason}: {self.message}".replace(" : ", ": "))


class KubeHttp:
    """HTTPS to one API server as one identity (client certificate or bearer token)."""

    def __init__(
        self, server: str, context: ssl.SSLContext, *, token: str | None = None, timeout: float = 30.0
    ) -> None:
        parts = urlsplit(server)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"expected an https:// API server URL, got {server!r}")
        self.server = server.rstrip("/")
        self._host = parts.hostname
        self._port = parts.port or 443
        self._context = context
        self._token = token
        self._timeout = timeout

    @classmethod
    def from_kubeconfig(cls, path: Path | str, *, timeout: float = 30.0) -> KubeHttp:
        creds = read_kubeconfig(Path(path))
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if creds.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif creds.ca_pem is not None:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=creds.ca_pem.decode())
        if creds.client is not None:
            # ssl can only load a certificate chain from files: stage them privately, briefly.
            with tempfile.TemporaryDirectory(prefix="computegate-kubeconfig-") as tmp:
                cert, key = creds.client.write(Path(tmp) / "client.crt", Path(tmp) / "client.key")
                context.load_cert_chain(cert, key)
        return cls(creds.server, context, token=creds.token, timeout=timeout)

    def raw(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str = "application/json",
        query: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[int, bytes]:
        """One request; returns the status and body without interpreting them."""
        url = path + ("?" + urlencode(dict(query)) if query else "")
        headers = {"Accept": "application/json", "User-Agent": "computegate-devcluster"}
        if body is not None:
            headers["Content-Type"] = content_type
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        connection = http.client.HTTPSConnection(
            self._host, self._port, context=self._context, timeout=timeout or self._timeout
        )
        try:
            connection.request(method, url, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        content_type: str = "application/json",
        query: Mapping[str, str] | None = None,
    ) -> tuple[int, JsonObject]:
        """A JSON request; raises ``KubeApiError`` on any status >= 400."""
        payload = None if body is None else json.dumps(body).encode()
        status, data = self.raw(method, path, body=payload, content_type=content_type, query=query)
        try:
            decoded: object = json.loads(data) if data else {}
        except ValueError:
            decoded = data.decode(errors="replace")
        if status >= 400:
            raise KubeApiError(method, path, status, decoded)
        if not isinstance(decoded, dict):
            raise KubeApiError(method, path, status, f"expected a JSON object, got {decoded!r:.200}")
        return status, decoded

    def get(self, path: str, query: Mapping[str, str] | None = None) -> JsonObject:
        return self.request("GET", path, query=query)[1]

    def apply(
        self, path: str, obj: JsonObject, *, field_manager: str, force: bool = True
    ) -> tuple[int, JsonObject]:
        """Server-side apply (create or update): 201 when it created the object, 200 otherwise."""
        query = {"fieldManager": field_manager, "fieldValidation": "Strict"}
        if force:
            query["force"] = "true"
        # JSON is YAML, so the apply-patch+yaml content type takes a JSON body.
        return self.request("PATCH", path, body=obj, content_type=APPLY_PATCH, query=query)
