"""Kubeconfig files with the certificates embedded, so one file is all a client needs."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from computegate.devcluster._pki import KeyPair, write_private

__all__ = ["KubeconfigCredentials", "read_kubeconfig", "write_kubeconfig"]

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


@dataclass(frozen=True)
class KubeconfigCredentials:
    """What the current context of a kubeconfig says: server, CA, and client certificate or token."""

    server: str
    ca_pem: bytes | None
    client: KeyPair | None
    token: str | None
    insecure: bool = False


def _data_or_file(entry: dict[str, Any], key: str, base: Path) -> bytes | None:
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        file = Path(entry[key])
        return (file if file.is_absolute() else base / file).read_bytes()
    return None


def read_kubeconfig(path: Path) -> KubeconfigCredentials:
    """The current context of a kubeconfig: enough for certificate or token authentication."""
    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict):
        raise ValueError(f"{path}: not a kubeconfig")

    def named(section: str, name: str) -> dict[str, Any]:
        for item in config.get(section) or []:
            if item.get("name") == name:
                body = item.get(section.rstrip("s")) or {}
                if isinstance(body, dict):
                    return body
        raise ValueError(f"{path}: no {section.rstrip('s')} named {name!r}")

    context = named("contexts", str(config.get("current-context", "")))
    cluster = named("clusters", str(context.get("cluster", "")))
    user = named("users", str(context.get("user", "")))
    base = path.parent
    cert = _data_or_file(user, "client-certificate", base)
    key = _data_or_file(user, "client-key", base)
    return KubeconfigCredentials(
        server=str(cluster["server"]),
        ca_pem=_data_or_file(cluster, "certificate-authority", base),
        client=KeyPair(cert, key) if cert is not None and key is not None else None,
        token=user.get("token"),
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
    )
