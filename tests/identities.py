"""Identities the tests act as, beside the admin's client certificate: ServiceAccounts with
tokens minted by TokenRequest (as a pod would get them), and a reading of RBAC rules."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from computegate.devcluster import ControlPlane


def token_kubeconfig(
    plane: ControlPlane, admin_api: Any, *, namespace: str, service_account: str, path: Path
) -> Path:
    """A kubeconfig that authenticates as a ServiceAccount with a token minted by TokenRequest."""
    from kubernetes import client

    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    response = client.CoreV1Api(admin_api).create_namespaced_service_account_token(
        service_account, namespace, request
    )
    token = response.status.token
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "plane",
                "cluster": {
                    "server": plane.url,
                    "certificate-authority-data": base64.b64encode(plane.ca_pem).decode("ascii"),
                },
            }
        ],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "plane", "user": service_account}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def rule_allows(
    rules: Iterable[Mapping[str, Any]], *, verb: str, group: str, resource: str, name: str | None = None
) -> bool:
    """Whether RBAC ``rules`` grant ``verb`` on ``resource`` (``plural`` or ``plural/subresource``)
    of ``group``, for the object ``name``, as the API server's RBAC authorizer matches them."""
    for rule in rules:
        if not {"*", verb} & set(rule.get("verbs") or []):
            continue
        if not {"*", group} & set(rule.get("apiGroups") or []):
            continue
        if not {"*", resource} & set(rule.get("resources") or []):
            continue
        names = rule.get("resourceNames") or []
        if names and name not in names:
            continue
        return True
    return False
