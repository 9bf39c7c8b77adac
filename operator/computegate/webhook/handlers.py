"""Kopf handlers: they only register, and hand every call to the ``Runtime`` in ``memo.runtime``.

Kopf is the operator here: it lists and watches what decisions are made from. Admission is
served by our own server (``runtime.admit``), not by Kopf's admission machinery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import kopf

if TYPE_CHECKING:
    from computegate.webhook.runtime import Runtime

REGISTRY = kopf.OperatorRegistry()

# What the ClusterState is made of: (group, version or None for the preferred one, plural, kind).
# Pods are not here: there are many, and Kopf's index start-up grows with the square of the
# objects; ``podwatch`` lists and watches them.
WATCHED = (
    ("computegate.io", "v1alpha1", "tenants", "Tenant"),
    ("computegate.io", "v1alpha1", "exportlicenses", "ExportLicense"),
    ("computegate.io", "v1alpha1", "compliancepolicies", "CompliancePolicy"),
    ("computegate.io", "v1alpha1", "acceleratorprofiles", "AcceleratorProfile"),
    ("", "v1", "namespaces", "Namespace"),
    ("", "v1", "nodes", "Node"),
    ("resource.k8s.io", None, "resourceclaims", "ResourceClaim"),
    ("resource.k8s.io", None, "resourceclaimtemplates", "ResourceClaimTemplate"),
    ("resource.k8s.io", None, "deviceclasses", "DeviceClass"),
)


def _runtime(memo: Any) -> Runtime:
    runtime: Runtime = memo.runtime
    return runtime


@kopf.on.login(registry=REGISTRY)
def login(memo: Any, **_: Any) -> kopf.ConnectionInfo:
    return _runtime(memo).kube.connection_info()


@kopf.on.startup(registry=REGISTRY)
def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    _runtime(memo).configure(settings)


def _index(kind: str) -> Any:
    def index(body: kopf.Body, memo: Any, **_: Any) -> None:
        _runtime(memo).upsert(kind, body)

    index.__name__ = f"index_{kind.lower()}"
    return index


def _event(kind: str) -> Any:
    def event(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
        _runtime(memo).on_event(kind, type, body)

    event.__name__ = f"event_{kind.lower()}"
    return event


# An index per watched kind: Kopf holds every other handler until all of them have listed
# their objects, which is what makes readiness mean "the state is complete".
for _group, _version, _plural, _kind in WATCHED:
    if _version is None:
        kopf.index(_group, _plural, id=f"state-{_plural}", registry=REGISTRY)(_index(_kind))
        kopf.on.event(_group, _plural, id=f"gone-{_plural}", registry=REGISTRY)(_event(_kind))
    else:
        kopf.index(_group, _version, _plural, id=f"state-{_plural}", registry=REGISTRY)(_index(_kind))
        kopf.on.event(_group, _version, _plural, id=f"gone-{_plural}", registry=REGISTRY)(_event(_kind))
