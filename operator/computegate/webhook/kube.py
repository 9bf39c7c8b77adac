"""The few Kubernetes API calls the operator makes itself (Kopf makes the watches).

Calls go through the ``kubernetes`` client in a worker thread, so a slow API server never
blocks the event loop that answers admission requests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from computegate.models.resources import GROUP, VERSION

logger = logging.getLogger(__name__)

_CONTROLLER_READERS = {
    "deployments": "read_namespaced_deployment",
    "replicasets": "read_namespaced_replica_set",
    "statefulsets": "read_namespaced_stateful_set",
}


@dataclass
class Kube:
    api: Any  # kubernetes.client.ApiClient
    configuration: Any  # kubernetes.client.Configuration

    @classmethod
    def connect(cls, kubeconfig: Path | None) -> Kube:
        """From a kubeconfig file, else ``$KUBECONFIG``/``~/.kube/config``, else in-cluster."""
        configuration = client.Configuration()
        load_kube_config: Callable[..., None] = config.load_kube_config  # untyped library
        load_incluster_config: Callable[..., None] = config.load_incluster_config
        if kubeconfig is not None:
            load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        else:
            try:
                load_incluster_config(client_configuration=configuration)
            except config.ConfigException:
                load_kube_config(client_configuration=configuration)
        return cls(client.ApiClient(configuration), configuration)

    def connection_info(self) -> kopf.ConnectionInfo:
        """The same credentials for Kopf's watches."""
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
        self.api.close()

    # ----- calls (all run in a thread) -----

    async def post_event(self, event: Mapping[str, Any]) -> None:
        def call() -> None:
            # The client serialises a plain dict as is; the generated models add nothing here.
            body: Any = dict(event)
            client.CoreV1Api(self.api).create_namespaced_event(event["metadata"]["namespace"], body)

        try:
            await asyncio.to_thread(call)
        except (ApiException, OSError) as error:  # an Event is best effort; the decision stands
            logger.warning("Could not post an Event: %s", getattr(error, "reason", error))

    async def read_controller(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        method = _CONTROLLER_READERS.get(plural)
        if method is None:
            return None

        def call() -> dict[str, Any] | None:
            apps = client.AppsV1Api(self.api)
            try:
                response = getattr(apps, method)(name, namespace, _preload_content=False)
            except ApiException as error:
                if error.status == 404:
                    return None
                raise
            import json

            data: dict[str, Any] = json.loads(response.data)
            return data

        return await asyncio.to_thread(call)

    async def patch_license_status(self, name: str, status: Mapping[str, Any]) -> None:
        def call() -> None:
            client.CustomObjectsApi(self.api).patch_cluster_custom_object_status(
                GROUP, VERSION, "exportlicenses", name, {"status": dict(status)}
            )

        await asyncio.to_thread(call)

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
