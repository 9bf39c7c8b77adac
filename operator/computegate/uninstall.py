"""``computegate uninstall-webhooks``: take ComputeGate out of the API server's admission path.

The chart's pre-delete hook Job runs it (with a ServiceAccount that may delete these two objects
and nothing else), so an uninstall can never leave webhook configurations pointing at a Service
that is gone. It is also the emergency procedure's second step, runnable from a laptop with a
kubeconfig. Deleting an absent configuration is not an error: the command is idempotent.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from computegate.webhook.configuration import MUTATING_CONFIGURATION, VALIDATING_CONFIGURATION

__all__ = ["add_arguments", "delete_webhook_configurations", "run"]


def delete_webhook_configurations(api_client: Any) -> list[tuple[str, bool]]:
    """Delete both configurations; ``[(kind/name, deleted)]``, False where it was already gone."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = client.AdmissionregistrationV1Api(api_client)
    deletions: list[tuple[str, Callable[[str], Any]]] = [
        (
            f"validatingwebhookconfiguration/{VALIDATING_CONFIGURATION}",
            api.delete_validating_webhook_configuration,
        ),
        (f"mutatingwebhookconfiguration/{MUTATING_CONFIGURATION}", api.delete_mutating_webhook_configuration),
    ]
    results = []
    for what, delete in deletions:
        try:
            delete(what.split("/", 1)[1])
        except ApiException as error:
            if error.status != 404:
                raise
            results.append((what, False))
            continue
        results.append((what, True))
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(handler=run)


def run(_: argparse.Namespace) -> int:
    from kubernetes.client.exceptions import ApiException

    from computegate.kubeclient import api_client as connect

    api_client = connect(None)
    try:
        results = delete_webhook_configurations(api_client)
    except ApiException as error:
        sys.stderr.write(f"computegate uninstall-webhooks: {error.status} {error.reason}: {error.body}\n")
        return 1
    finally:
        api_client.close()
    for what, deleted in results:
        sys.stdout.write(f"{what} {'deleted' if deleted else 'already absent'}\n")
    return 0
