"""Cluster state from a live API server: the same kinds a state folder holds, listed once.

For one-shot commands (``computegate report``), not for the webhook, which keeps its state
current from watches. Objects are parsed by the same code as the files (``statefiles``), so a
field error reads the same way whichever the source.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from computegate.engine.state import Catalog, ClusterState
from computegate.kubeclient import KubeconfigError, api_client
from computegate.models.resources import GROUP, VERSION
from computegate.statefiles import Document, InputError, parse_state_object

# (kind, API group or "" for the core group, plural); resource.k8s.io in the version the server
# prefers. The client's typed calls are used (they are stable across its releases).
_DRA_GROUP = "resource.k8s.io"
_COLLECTIONS = (
    ("AcceleratorProfile", GROUP, "acceleratorprofiles"),
    ("CompliancePolicy", GROUP, "compliancepolicies"),
    ("Tenant", GROUP, "tenants"),
    ("ExportLicense", GROUP, "exportlicenses"),
    ("Namespace", "", "namespaces"),
    ("Node", "", "nodes"),
    ("DeviceClass", _DRA_GROUP, "deviceclasses"),
    ("ResourceClaimTemplate", _DRA_GROUP, "resourceclaimtemplates"),
    ("ResourceClaim", _DRA_GROUP, "resourceclaims"),
    ("Pod", "", "pods"),
)
_CORE_LISTS = {
    "namespaces": "list_namespace",
    "nodes": "list_node",
    "pods": "list_pod_for_all_namespaces",
}


def load_live_state(kubeconfig: Path | None, catalog: Catalog) -> ClusterState:
    """List every kind of the state; ``kubeconfig`` None: ``$KUBECONFIG``/``~/.kube/config``,
    else the in-cluster service account."""
    try:
        api: Any = api_client(kubeconfig)
    except KubeconfigError as error:
        raise InputError(f"cannot reach the cluster: {error}") from None
    try:
        return _read(api, catalog)
    finally:
        api.close()


def _list(api: Any, group: str, version: str, plural: str) -> list[dict[str, Any]]:
    """Every object of one kind, as JSON; none when the server does not serve the kind (404)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    where = f"{group or 'core'}/{version} {plural}"
    listed: dict[str, Any]
    try:
        if group:
            objects: Any = client.CustomObjectsApi(api).list_cluster_custom_object(group, version, plural)
            listed = objects  # a plain dict (the client types it as object)
        else:
            response = getattr(client.CoreV1Api(api), _CORE_LISTS[plural])(_preload_content=False)
            listed = json.loads(response.data)
    except ApiException as error:
        if error.status == 404:
            return []
        raise InputError(f"{where}: the API server answered {error.status} {error.reason}") from None
    except OSError as error:
        raise InputError(f"{where}: cannot reach the API server: {error}") from None
    items: list[dict[str, Any]] = listed.get("items") or []
    return items


def _preferred_version(api: Any, group: str) -> str | None:
    from kubernetes import client

    for found in client.ApisApi(api).get_api_versions().groups or []:
        if found.name == group and found.preferred_version is not None:
            version: str = found.preferred_version.version
            return version
    return None


def _read(api: Any, catalog: Catalog) -> ClusterState:
    dra_version = _preferred_version(api, _DRA_GROUP)
    state = ClusterState(catalog)
    for kind, group, plural in _COLLECTIONS:
        if group == _DRA_GROUP and dra_version is None:
            continue  # no Dynamic Resource Allocation on this server
        version = VERSION if group == GROUP else dra_version if group == _DRA_GROUP else "v1"
        for index, item in enumerate(_list(api, group, version or "", plural), start=1):
            # Items of a list carry no kind; the documents name the collection they came from.
            document = Document(Path(f"{group or 'core'}/{version}/{plural}"), index, {**item, "kind": kind})
            state.upsert(parse_state_object(document))
    return state
