"""Cluster state from a live API server: the same kinds a state folder holds, listed once.

For one-shot commands (``computegate report``), not for the webhook, which keeps its state
current from watches. Objects are parsed by the same code as the files (``statefiles``), so a
field error reads the same way whichever the source.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from computegate.engine.state import Catalog, ClusterState
from computegate.models.resources import GROUP, VERSION
from computegate.statefiles import Document, InputError, parse_state_object

_OURS = f"/apis/{GROUP}/{VERSION}"
# (kind, collection path); resource.k8s.io is added in the version the server prefers.
_COLLECTIONS = (
    ("AcceleratorProfile", f"{_OURS}/acceleratorprofiles"),
    ("CompliancePolicy", f"{_OURS}/compliancepolicies"),
    ("Tenant", f"{_OURS}/tenants"),
    ("ExportLicense", f"{_OURS}/exportlicenses"),
    ("Namespace", "/api/v1/namespaces"),
    ("Node", "/api/v1/nodes"),
    ("DeviceClass", "deviceclasses"),
    ("ResourceClaimTemplate", "resourceclaimtemplates"),
    ("ResourceClaim", "resourceclaims"),
    ("Pod", "/api/v1/pods"),
)
_DRA_GROUP = "/apis/resource.k8s.io"


def load_live_state(kubeconfig: Path | None, catalog: Catalog) -> ClusterState:
    """List every kind of the state; ``kubeconfig`` None: ``$KUBECONFIG``/``~/.kube/config``,
    else the in-cluster service account."""
    from kubernetes import client, config

    configuration = client.Configuration()
    load_kube_config: Callable[..., None] = config.load_kube_config  # untyped library
    load_incluster_config: Callable[..., None] = config.load_incluster_config
    try:
        if kubeconfig is not None:
            load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        else:
            try:
                load_incluster_config(client_configuration=configuration)
            except config.ConfigException:
                load_kube_config(client_configuration=configuration)
    except (config.ConfigException, OSError) as error:
        raise InputError(f"{kubeconfig or 'kubeconfig'}: cannot be used: {error}") from None
    api: Any = client.ApiClient(configuration)
    try:
        return _read(api, catalog)
    finally:
        api.close()


def _get(api: Any, path: str) -> dict[str, Any] | None:
    """GET a path as JSON; None when the server does not serve it (404)."""
    from kubernetes.client.exceptions import ApiException

    try:
        response = api.call_api(
            path, "GET", auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise InputError(f"{path}: the API server answered {error.status} {error.reason}") from None
    except OSError as error:
        raise InputError(f"{path}: cannot reach the API server: {error}") from None
    body: dict[str, Any] = json.loads(response.data)
    return body


def _read(api: Any, catalog: Catalog) -> ClusterState:
    discovery = _get(api, _DRA_GROUP)
    preferred = (discovery or {}).get("preferredVersion", {}).get("groupVersion")
    state = ClusterState(catalog)
    for kind, path in _COLLECTIONS:
        if not path.startswith("/"):
            if preferred is None:
                continue  # no Dynamic Resource Allocation on this server
            path = f"/apis/{preferred}/{path}"
        listed = _get(api, path)
        for index, item in enumerate((listed or {}).get("items") or [], start=1):
            # Items of a list carry no kind; the documents name the path they came from.
            document = Document(Path(path), index, {**item, "kind": kind})
            state.upsert(parse_state_object(document))
    return state
