"""The one way ComputeGate's adapters reach a cluster: a ``kubernetes`` client configuration.

Order: the kubeconfig file given (``--kubeconfig``), else the in-cluster ServiceAccount (in a
pod), else ``$KUBECONFIG`` or ``~/.kube/config``, read now (the library reads ``$KUBECONFIG``
once, at import). The library's global default configuration is never touched.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, config

__all__ = ["KubeconfigError", "api_client", "client_configuration"]


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


def api_client(kubeconfig: Path | None) -> Any:
    """A ``kubernetes.client.ApiClient`` (close it when done)."""
    return client.ApiClient(client_configuration(kubeconfig))
