"""The few Kubernetes API calls the operator makes through the client (``watch`` lists and watches).

Calls go through the ``kubernetes`` client in a worker thread, so a slow API server never
blocks the event loop that answers admission requests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from computegate.kubeclient import client_configuration, request
from computegate.vocabulary import WORKLOAD_BY_PLURAL

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Conflict(Exception):
    """A compare-and-swap lost: the object changed since it was read (HTTP 409)."""


@dataclass
class Kube:
    api: Any  # kubernetes.client.ApiClient
    configuration: Any  # kubernetes.client.Configuration
    # The admission path's own threads (the ledger's reads and swaps, reading a controller), so a
    # burst of Events, posted after each answer, never queues in front of an answer.
    urgent: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=4, thread_name_prefix="kube-urgent")
    )

    @classmethod
    def connect(cls, kubeconfig: Path | None) -> Kube:
        configuration = client_configuration(kubeconfig)
        return cls(client.ApiClient(configuration), configuration)

    def connection_info(self) -> kopf.ConnectionInfo:
        """The same credentials for Kopf (its login)."""
        c = self.configuration
        token = (c.api_key or {}).get("authorization") or (c.api_key or {}).get("BearerToken")
        scheme, _, value = (token or "").partition(" ")
        return kopf.ConnectionInfo(
            server=c.host,
            ca_path=c.ssl_ca_cert,
            insecure=not c.verify_ssl,
            certificate_path=c.cert_file,
            private_key_path=c.key_file,
            scheme=scheme if value else None,
            token=value or None,
        )

    def close(self) -> None:
        self.urgent.shutdown(wait=False, cancel_futures=True)
        self.api.close()

    async def _urgently(self, call: Callable[[], T], urgent: bool = True) -> T:
        if not urgent:  # background writers (compliance, usage record) stay off the admission path's threads
            return await asyncio.to_thread(call)
        return await asyncio.get_running_loop().run_in_executor(self.urgent, call)

    # ----- calls (all run in a thread) -----

    async def post_event(self, event: Mapping[str, Any]) -> None:
        def call() -> None:
            # The raw request, as for the ledger: no generated-model (de)serialisation, which on
            # the first Event of a process cost about half a second (measured by
            # tests/e2e/test_webhook_observability.py), and several seconds on a busy node.
            self._call("POST", f"/api/v1/namespaces/{event['metadata']['namespace']}/events", event)

        try:
            await asyncio.to_thread(call)
        except (ApiException, OSError) as error:  # an Event is best effort; the decision stands
            logger.warning("Could not post an Event: %s", getattr(error, "reason", error))

    def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """One request with this identity; the JSON answer. Raises ``KubeApiError`` (an
        ``ApiException``, with ``.status``), or ``ConnectionError`` when the API server cannot be
        reached."""
        return request(self.api, method, path, body=dict(body) if body is not None else None, query=query)[1]

    async def get(self, path: str, *, urgent: bool = True) -> dict[str, Any] | None:
        """The object at ``path``, or None when there is none."""

        def call() -> dict[str, Any] | None:
            try:
                return self._call("GET", path)
            except ApiException as error:
                if error.status == 404:
                    return None
                raise

        return await self._urgently(call, urgent)

    async def put(self, path: str, body: Mapping[str, Any], *, urgent: bool = True) -> dict[str, Any]:
        """Replace; with ``metadata.resourceVersion`` a compare-and-swap (``Conflict`` when lost)."""
        return await self._write("PUT", path, body, urgent=urgent)

    async def post(self, path: str, body: Mapping[str, Any], *, urgent: bool = True) -> dict[str, Any]:
        """Create; ``Conflict`` when the object exists already."""
        return await self._write("POST", path, body, urgent=urgent)

    async def _write(
        self, method: str, path: str, body: Mapping[str, Any], *, urgent: bool
    ) -> dict[str, Any]:
        def call() -> dict[str, Any]:
            try:
                return self._call(method, path, body)
            except ApiException as error:
                if error.status == 409:
                    raise Conflict(path) from None
                raise

        return await self._urgently(call, urgent)

    async def delete(self, path: str, *, urgent: bool = False) -> None:
        """Delete the object at ``path``; one already gone is not an error."""

        def call() -> None:
            try:
                self._call("DELETE", path)
            except ApiException as error:
                if error.status != 404:
                    raise

        await self._urgently(call, urgent)

    async def pages(
        self, path: str, *, selector: str = "", limit: int = 500, urgent: bool = False
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """A collection, ``limit`` objects a request (``continue`` tokens), so no answer holds
        them all; nothing when the collection is not served."""
        token = ""
        while True:
            query = {"limit": str(limit)}
            query |= {"labelSelector": selector} if selector else {}
            query |= {"continue": token} if token else {}

            def call(query: dict[str, str] = query) -> dict[str, Any] | None:
                try:
                    return self._call("GET", path, query=query)
                except ApiException as error:
                    if error.status == 404:
                        return None
                    raise

            page = await self._urgently(call, urgent)
            if page is None:
                return
            yield list(page.get("items") or [])
            token = str((page.get("metadata") or {}).get("continue") or "")
            if not token:
                return

    async def delete_collection(self, path: str, *, selector: str, urgent: bool = False) -> None:
        """Delete every object of a collection that ``selector`` matches, in one request."""
        if not selector:
            raise ValueError("deleting a whole collection needs a label selector")
        await self._urgently(lambda: self._call("DELETE", path, query={"labelSelector": selector}), urgent)

    async def read_controller(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        workload = WORKLOAD_BY_PLURAL.get(plural)
        if workload is None or not workload.scalable:
            return None
        return await self.get(f"/apis/{workload.api_version}/namespaces/{namespace}/{plural}/{name}")

    async def apply_configuration(self, body: Mapping[str, Any]) -> None:
        """Create or replace a Validating/MutatingWebhookConfiguration."""

        def call() -> None:
            api: Any = client.AdmissionregistrationV1Api(self.api)  # plain dicts as bodies
            name = body["metadata"]["name"]
            validating = body["kind"] == "ValidatingWebhookConfiguration"
            read = (
                api.read_validating_webhook_configuration
                if validating
                else api.read_mutating_webhook_configuration
            )
            try:
                existing = read(name)
            except ApiException as error:
                if error.status != 404:
                    raise
                create = (
                    api.create_validating_webhook_configuration
                    if validating
                    else api.create_mutating_webhook_configuration
                )
                create(dict(body))
                return
            replace = (
                api.replace_validating_webhook_configuration
                if validating
                else api.replace_mutating_webhook_configuration
            )
            updated = {
                **body,
                "metadata": {**body["metadata"], "resourceVersion": existing.metadata.resource_version},
            }
            replace(name, updated)

        await asyncio.to_thread(call)
