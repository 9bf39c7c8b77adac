"""Kopf handlers: they only register, and hand every call to the ``Runtime`` in ``memo.runtime``.

Handler ids equal the URL paths of ``configuration`` (the server routes ``/<id>`` to them), so
the configuration we register and the handlers cannot drift apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import kopf

from computegate.webhook.configuration import (
    MUTATE_WORKLOADS,
    VALIDATE_NAMESPACES,
    VALIDATE_RESOURCE_CLAIMS,
    VALIDATE_SCALE,
    VALIDATE_WORKLOADS,
)

if TYPE_CHECKING:
    from computegate.webhook.runtime import Runtime

REGISTRY = kopf.OperatorRegistry()

WORKLOADS = (
    ("", "pods"),
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
)
SCALABLE = (("apps", "deployments"), ("apps", "replicasets"), ("apps", "statefulsets"))
# What the ClusterState is made of: (group, version or None for the preferred one, plural, kind).
WATCHED = (
    ("computegate.io", "v1alpha1", "tenants", "Tenant"),
    ("computegate.io", "v1alpha1", "exportlicenses", "ExportLicense"),
    ("computegate.io", "v1alpha1", "compliancepolicies", "CompliancePolicy"),
    ("computegate.io", "v1alpha1", "acceleratorprofiles", "AcceleratorProfile"),
    ("", "v1", "namespaces", "Namespace"),
    ("", "v1", "nodes", "Node"),
    ("", "v1", "pods", "Pod"),
    ("resource.k8s.io", None, "resourceclaims", "ResourceClaim"),
    ("resource.k8s.io", None, "resourceclaimtemplates", "ResourceClaimTemplate"),
    ("resource.k8s.io", None, "deviceclasses", "DeviceClass"),
)
_OPERATIONS: tuple[Literal["CREATE", "UPDATE"], ...] = ("CREATE", "UPDATE")


def _runtime(memo: Any) -> Runtime:
    runtime: Runtime = memo.runtime
    return runtime


@kopf.on.login(registry=REGISTRY)
def login(memo: Any, **_: Any) -> kopf.ConnectionInfo:
    return _runtime(memo).kube.connection_info()


@kopf.on.startup(registry=REGISTRY)
def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    _runtime(memo).configure(settings)


async def validate_workload(memo: Any, **kwargs: Any) -> None:
    await _runtime(memo).validate(VALIDATE_WORKLOADS, kwargs)


async def mutate_workload(memo: Any, **kwargs: Any) -> None:
    await _runtime(memo).mutate(MUTATE_WORKLOADS, kwargs)


async def validate_scale(memo: Any, **kwargs: Any) -> None:
    await _runtime(memo).validate(VALIDATE_SCALE, kwargs)


async def validate_claim(memo: Any, **kwargs: Any) -> None:
    await _runtime(memo).validate(VALIDATE_RESOURCE_CLAIMS, kwargs)


async def validate_namespace(memo: Any, **kwargs: Any) -> None:
    await _runtime(memo).validate(VALIDATE_NAMESPACES, kwargs)


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


for _group, _plural in WORKLOADS:
    kopf.on.validate(_group, "v1", _plural, id=VALIDATE_WORKLOADS, operations=_OPERATIONS, registry=REGISTRY)(
        validate_workload
    )
    kopf.on.mutate(_group, "v1", _plural, id=MUTATE_WORKLOADS, operations=_OPERATIONS, registry=REGISTRY)(
        mutate_workload
    )
for _group, _plural in SCALABLE:
    kopf.on.validate(
        _group,
        "v1",
        _plural,
        subresource="scale",
        id=VALIDATE_SCALE,
        operations=_OPERATIONS,
        registry=REGISTRY,
    )(validate_scale)
kopf.on.validate(
    "resource.k8s.io",
    "resourceclaims",
    id=VALIDATE_RESOURCE_CLAIMS,
    operations=_OPERATIONS,
    registry=REGISTRY,
)(validate_claim)
kopf.on.validate("", "v1", "namespaces", id=VALIDATE_NAMESPACES, operations=_OPERATIONS, registry=REGISTRY)(
    validate_namespace
)
# An index per watched kind: Kopf holds every other handler until all of them have listed
# their objects, which is what makes readiness mean "the state is complete".
for _group, _version, _plural, _kind in WATCHED:
    if _version is None:
        kopf.index(_group, _plural, id=f"state-{_plural}", registry=REGISTRY)(_index(_kind))
        kopf.on.event(_group, _plural, id=f"gone-{_plural}", registry=REGISTRY)(_event(_kind))
    else:
        kopf.index(_group, _version, _plural, id=f"state-{_plural}", registry=REGISTRY)(_index(_kind))
        kopf.on.event(_group, _version, _plural, id=f"gone-{_plural}", registry=REGISTRY)(_event(_kind))
