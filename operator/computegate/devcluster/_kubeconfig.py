"""Kubeconfig files with the certificates embedded, so one file is all a client needs."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from computegate.devcluster._pki import KeyPair, write_private

__all__ = ["write_kubeconfig"]

CLUSTER_NAME = "computegate-dev"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def write_kubeconfig(path: Path, *, server: str, ca_pem: bytes, user: str, credentials: KeyPair) -> Path:
    """Write a kubeconfig whose current context is ``user`` on the dev cluster (mode 0600)."""
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": CLUSTER_NAME, "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)}}
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(credentials.cert_pem),
                    "client-key-data": _b64(credentials.key_pem),
                },
            }
        ],
        "contexts": [{"name": f"{user}@{CLUSTER_NAME}", "context": {"cluster": CLUSTER_NAME, "user": user}}],
        "current-context": f"{user}@{CLUSTER_NAME}",
        "preferences": {},
    }
    return write_private(path, yaml.safe_dump(config, sort_keys=False).encode())
