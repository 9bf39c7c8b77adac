"""Cluster state from a live API server: the same kinds a state folder holds, listed once.

For one-shot commands (``computegate report``), not for the webhook, which keeps its state
current from watches. Objects are parsed by the same code as the files (``statefiles``), so a
field error reads the same way whichever the source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from computegate.engine.state import Catalog, ClusterState
from computegate.kubeclient import KubeApiError, KubeconfigError, api_client, list_all, request
from computegate.statefiles import Document, InputError, parse_state_object
from computegate.vocabulary import DRA_GROUP, STATE_KINDS

PAGE = 500


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


def _get(api: Any, path: str) -> dict[str, Any] | None:
    """One JSON answer; None when the server does not serve ``path`` (404)."""
    try:
        return request(api, "GET", path)[1]
    except KubeApiError as error:
        if error.status == 404:
            return None
        raise InputError(str(error)) from None
    except ConnectionError as error:
        raise InputError(f"cannot reach the API server: {error}") from None


def _list(api: Any, path: str) -> list[dict[str, Any]]:
    """Every object of one collection; none when it is not served."""
    try:
        return list_all(api, path, limit=PAGE)
    except KubeApiError as error:
        raise InputError(str(error)) from None
    except ConnectionError as error:
        raise InputError(f"cannot reach the API server: {error}") from None


def _read(api: Any, catalog: Catalog) -> ClusterState:
    group = _get(api, f"/apis/{DRA_GROUP}") or {}
    dra_version = (group.get("preferredVersion") or {}).get("version")  # None: no DRA here
    state = ClusterState(catalog)
    for kind in STATE_KINDS:
        version = kind.version or dra_version
        if version is None:
            continue
        path = kind.path(version)
        for index, item in enumerate(_list(api, path), start=1):
            # Items of a list carry no kind; the documents name the collection they came from.
            document = Document(Path(path), index, {**item, "kind": kind.kind})
            state.upsert(parse_state_object(document))
    return state
