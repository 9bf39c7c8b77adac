"""Kopf handlers: they only register, and hand every call to the ``Runtime`` in ``memo.runtime``.

Kopf runs the operator (its credentials, its settings, its lifetime) but watches nothing: the
state is read by our own LISTs and WATCHes (``watch``), because Kopf's index start-up grows
faster than the square of the objects, and because Kopf says nothing when its indexes have
listed a kind that has no objects (readiness would then wait for an object that may never come;
docs/webhook.md). Admission is served by our own server (``runtime.admit``), not by Kopf's
admission machinery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import kopf

if TYPE_CHECKING:
    from computegate.webhook.runtime import Runtime

REGISTRY = kopf.OperatorRegistry()


def _runtime(memo: Any) -> Runtime:
    runtime: Runtime = memo.runtime
    return runtime


@kopf.on.login(registry=REGISTRY)
def login(memo: Any, **_: Any) -> kopf.ConnectionInfo:
    return _runtime(memo).kube.connection_info()


@kopf.on.startup(registry=REGISTRY)
def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    _runtime(memo).configure(settings)
