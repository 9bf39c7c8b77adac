"""The admission webhook configurations: the one source of truth for dev, tests and the chart.

What reaches the webhook is decided here, and it must never lock up a cluster:

- ``matchConditions`` (CEL) send only objects whose pod spec names an extended resource (any
  resource name with a ``/``: the webhook tells accelerators from the rest itself, so a profile
  added at run time needs no re-registration), resource claims, or device access without a
  request; namespaces whose tenant label changes, and namespaces a non-admin creates; subresource
  writes only when the tenant label or the stamps differ between ``object`` and ``oldObject``
  (or an ephemeral container reaches devices). Every path is guarded with ``has()``, because a
  condition that errors falls under the failure policy.
- a ``namespaceSelector`` skips the exempt namespaces (kube-system, our own, the GPU operator's),
  except for namespace creations: a non-admin must not create a namespace named like one;
- ``failurePolicy: Fail`` for what is sent (accelerator workloads fail closed), except the
  ``scale`` subresource: a Scale object carries no pod spec, so it cannot be filtered, and the
  pods that a scale-up creates are judged (and fail closed) on their own CREATE; and namespace
  creations, whose policy is the installer's choice (``namespace_creation_failure_policy``).

``SUBRESOURCES`` says how each writable subresource of pods and namespaces is covered; an
end-to-end test compares it with the API server's discovery.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from computegate.engine.asks import CDI_ANNOTATION_PREFIX, DEVICE_ENV_VARS, GPU_RUNTIME_CLASS
from computegate.vocabulary import (
    ADMISSION_OPERATIONS,
    CONTROLLERS,
    PROTECTED_ANNOTATIONS,
    SCALABLE,
    TENANT_LABEL,
    WORKLOADS,
)

VALIDATING_CONFIGURATION = "computegate-validating"
MUTATING_CONFIGURATION = "computegate-mutating"
TIMEOUT_SECONDS = 5

# The URL path of each webhook: the server routes on it.
VALIDATE_WORKLOADS = "validate-workloads"
VALIDATE_SCALE = "validate-scale"
VALIDATE_RESOURCE_CLAIMS = "validate-resourceclaims"
VALIDATE_NAMESPACES = "validate-namespaces"
VALIDATE_SUBRESOURCES = "validate-subresources"
MUTATE_WORKLOADS = "mutate-workloads"
WEBHOOK_PATHS = (
    VALIDATE_WORKLOADS,
    VALIDATE_SCALE,
    VALIDATE_RESOURCE_CLAIMS,
    VALIDATE_NAMESPACES,
    VALIDATE_SUBRESOURCES,
    MUTATE_WORKLOADS,
)
FAILURE_POLICIES = ("Fail", "Ignore")

# Every subresource of pods and namespaces that the API server lets someone write, and how it is
# kept from changing what a decision rests on. "webhook": sent to /validate-subresources (pods) or
# /validate-namespaces (namespaces) when the stamps or the tenant label differ. The others say why
# no webhook is needed.
SUBRESOURCES: dict[str, str] = {
    "pods/status": "webhook",
    "pods/ephemeralcontainers": "webhook",  # also judged: device access of a new ephemeral container
    "pods/resize": "webhook",  # the API server lets a resize change only CPU and memory
    "pods/binding": "pinned placement: the required node affinity the mutating webhook adds",
    "pods/eviction": "deletes a pod: frees what it used, never delivers compute",
    "pods/attach": "CONNECT to a running container: no object is written",
    "pods/exec": "CONNECT to a running container: no object is written",
    "pods/portforward": "CONNECT to a running container: no object is written",
    "pods/proxy": "CONNECT to a running container: no object is written",
    "namespaces/status": "webhook",
    "namespaces/finalize": "webhook",
}


def _rules(resources: Iterable[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """One rule per (group, version), in the order first seen, from (group, version, resource)."""
    by_api: dict[tuple[str, str], list[str]] = {}
    for group, version, resource in resources:
        by_api.setdefault((group, version), []).append(resource)
    return [
        {"apiGroups": [group], "apiVersions": [version], "resources": plurals}
        for (group, version), plurals in by_api.items()
    ]


_CREATE_UPDATE = list(ADMISSION_OPERATIONS)
_WORKLOAD_RULES = _rules((w.group, w.version, w.plural) for w in WORKLOADS)
_SCALE_RULES = _rules((w.group, w.version, f"{w.plural}/scale") for w in SCALABLE)
_CLAIM_RULES: list[dict[str, Any]] = [
    {"apiGroups": ["resource.k8s.io"], "apiVersions": ["*"], "resources": ["resourceclaims"]},
]
_NAMESPACE_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": [""],
        "apiVersions": ["v1"],
        "resources": [
            "namespaces",
            *(s for s, how in SUBRESOURCES.items() if s.startswith("namespaces/") and how == "webhook"),
        ],
    },
]
_NAMESPACE_CREATION_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "apiVersions": ["v1"], "resources": ["namespaces"]},
]
_SUBRESOURCE_RULES = _rules(
    [
        *(("", "v1", s) for s, how in SUBRESOURCES.items() if s.startswith("pods/") and how == "webhook"),
        *((w.group, w.version, f"{w.plural}/status") for w in CONTROLLERS),
    ]
)
_CLAIM_RULES[0]["resources"] = ["resourceclaims", "resourceclaimtemplates"]

# An extended resource: its name has a domain (``example.com/name``); CPU, memory,
# ephemeral-storage and hugepages-* have none. The webhook tells accelerators from the rest.
_EXTENDED = "k.contains('/')"


def _containers_ask(spec: str, field: str) -> str:
    resources = "c.resources"
    asks = " || ".join(
        f"(has({resources}.{kind}) && {resources}.{kind}.exists(k, {_EXTENDED}))"
        for kind in ("limits", "requests")
    )
    return f"(has({spec}.{field}) && {spec}.{field}.exists(c, has(c.resources) && ({asks})))"


_CEL_DEVICE_ENV = "[" + ", ".join(f"'{name}'" for name in sorted(DEVICE_ENV_VARS)) + "]"
_CONTAINER_KINDS = ("containers", "initContainers", "ephemeralContainers")


def _containers_reach_devices(spec: str, field: str) -> str:
    env = f"(has(c.env) && c.env.exists(e, has(e.name) && e.name in {_CEL_DEVICE_ENV}))"
    context = "c.securityContext"
    privileged = f"(has({context}) && has({context}.privileged) && {context}.privileged == true)"
    return f"(has({spec}.{field}) && {spec}.{field}.exists(c, {env} || {privileged}))"


def pod_reaches_devices(spec: str, metadata: str) -> str:
    """CEL: the pod (spec at ``spec``, metadata at ``metadata``) may reach devices without a
    request (DESIGN.md step 2). Broader than the engine (any hostPath, any GPU-like runtime class
    name): the webhook decides precisely."""
    return " || ".join(
        [
            *(_containers_reach_devices(spec, field) for field in _CONTAINER_KINDS),
            f"(has({spec}.runtimeClassName) && "
            f"{spec}.runtimeClassName.matches('(?i)({GPU_RUNTIME_CLASS.pattern})'))",
            f"(has({spec}.volumes) && {spec}.volumes.exists(v, has(v.hostPath)))",
            f"(has({metadata}.annotations) && "
            f"{metadata}.annotations.exists(k, k.startsWith('{CDI_ANNOTATION_PREFIX}')))",
        ]
    )


def pod_spec_asks_for_accelerators(spec: str, metadata: str | None = None) -> str:
    """CEL: the pod spec at ``spec`` names an extended resource or resource claims, or (with its
    ``metadata``) reaches devices without a request."""
    tests = [
        _containers_ask(spec, "containers"),
        _containers_ask(spec, "initContainers"),
        f"(has({spec}.resourceClaims) && size({spec}.resourceClaims) > 0)",
    ]
    if metadata is not None:
        tests.append(pod_reaches_devices(spec, metadata))
    return " || ".join(tests)


def workload_asks_for_accelerators() -> str:
    """CEL over ``object`` for any of the workload kinds; false (never an error) on anything else."""
    pod = pod_spec_asks_for_accelerators("object.spec", "object.metadata")
    template = pod_spec_asks_for_accelerators("object.spec.template.spec", "object.spec.template.metadata")
    tmpl = "object.spec.jobTemplate.spec.template"
    cron = pod_spec_asks_for_accelerators(f"{tmpl}.spec", f"{tmpl}.metadata")
    job = "object.spec.jobTemplate"
    cron_guard = (
        f"has({job}) && has({job}.spec) && has({job}.spec.template) && has({job}.spec.template.spec)"
        f" && has({job}.spec.template.metadata)"
    )
    template_guard = (
        "has(object.spec.template) && has(object.spec.template.spec) && has(object.spec.template.metadata)"
    )
    return (
        "has(object.spec) && ("
        f"request.kind.kind == 'Pod' ? (has(object.metadata) && ({pod})) : "
        f"request.kind.kind == 'CronJob' ? ({cron_guard} && ({cron})) : "
        f"({template_guard} && ({template})))"
    )


def _tenant_label(obj: str) -> str:
    labels = f"{obj}.metadata.labels"
    return (
        f"({obj} != null && has({labels}) && '{TENANT_LABEL}' in {labels} ? {labels}['{TENANT_LABEL}'] : '')"
    )


TENANT_LABEL_CHANGES = f"{_tenant_label('object')} != {_tenant_label('oldObject')}"


def _annotation(obj: str, key: str) -> str:
    annotations = f"{obj}.metadata.annotations"
    return f"({obj} != null && has({annotations}) && '{key}' in {annotations} ? {annotations}['{key}'] : '')"


STAMPS_CHANGE = " || ".join(
    f"{_annotation('object', k)} != {_annotation('oldObject', k)}" for k in PROTECTED_ANNOTATIONS
)
# A subresource write that may change what a decision rests on: the stamps, the tenant label, or
# an ephemeral container that reaches devices (``kubectl debug --env NVIDIA_VISIBLE_DEVICES=all``).
SUBRESOURCE_CHANGES = (
    f"{STAMPS_CHANGE} || {TENANT_LABEL_CHANGES} || (request.subResource == 'ephemeralcontainers' && "
    "has(object.spec) && " + _containers_reach_devices("object.spec", "ephemeralContainers") + ")"
)
# Namespace creations by anyone but system:masters (other admin groups reach the webhook and are
# admitted there: their names are flags, not part of the chart's generated configuration).
NON_ADMIN_CREATES = (
    "request.operation == 'CREATE' && "
    "!(has(request.userInfo.groups) && 'system:masters' in request.userInfo.groups)"
)


def _namespace_selector(exempt_namespaces: Iterable[str]) -> dict[str, Any]:
    return {
        "matchExpressions": [
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": sorted(set(exempt_namespaces)),
            }
        ]
    }


def _webhook(
    name: str,
    path: str,
    rules: list[dict[str, Any]],
    *,
    client_config: dict[str, Any],
    exempt_namespaces: Iterable[str],
    condition: str | None,
    failure_policy: str = "Fail",
    side_effects: str = "NoneOnDryRun",
    operations: list[str] = _CREATE_UPDATE,
    select_namespaces: bool = True,
) -> dict[str, Any]:
    webhook: dict[str, Any] = {
        "name": name,
        "admissionReviewVersions": ["v1"],
        "clientConfig": _with_path(client_config, path),
        "rules": [{**rule, "operations": operations, "scope": "*"} for rule in rules],
        "failurePolicy": failure_policy,
        "matchPolicy": "Equivalent",
        "sideEffects": side_effects,
        "timeoutSeconds": TIMEOUT_SECONDS,
        "namespaceSelector": _namespace_selector(exempt_namespaces) if select_namespaces else {},
    }
    if condition is not None:
        webhook["matchConditions"] = [{"name": name.split(".")[0], "expression": condition}]
    return webhook


def _with_path(client_config: dict[str, Any], path: str) -> dict[str, Any]:
    """Point a clientConfig (``url`` or ``service``) at one handler's path."""
    config = dict(client_config)
    if "url" in config:
        config["url"] = config["url"].rstrip("/") + "/" + path
    else:
        config["service"] = {**config["service"], "path": "/" + path}
    return config


def validating_configuration(
    *,
    client_config: dict[str, Any],
    exempt_namespaces: Iterable[str],
    labels: dict[str, str] | None = None,
    namespace_creation_failure_policy: str = "Fail",
) -> dict[str, Any]:
    exempt = tuple(exempt_namespaces)
    common: dict[str, Any] = {"client_config": client_config, "exempt_namespaces": exempt}
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": VALIDATING_CONFIGURATION, "labels": labels or {}},
        "webhooks": [
            _webhook(
                "workloads.validate.computegate.io",
                VALIDATE_WORKLOADS,
                _WORKLOAD_RULES,
                condition=workload_asks_for_accelerators(),
                **common,
            ),
            _webhook(
                "scale.validate.computegate.io",
                VALIDATE_SCALE,
                _SCALE_RULES,
                condition=None,
                failure_policy="Ignore",
                **common,
            ),
            _webhook(
                "resourceclaims.validate.computegate.io",
                VALIDATE_RESOURCE_CLAIMS,
                _CLAIM_RULES,
                condition=None,
                **common,
            ),
            _webhook(
                "namespaces.validate.computegate.io",
                VALIDATE_NAMESPACES,
                _NAMESPACE_RULES,
                condition=TENANT_LABEL_CHANGES,
                side_effects="None",
                **common,
            ),
            _webhook(
                "namespace-creations.validate.computegate.io",
                VALIDATE_NAMESPACES,
                _NAMESPACE_CREATION_RULES,
                condition=NON_ADMIN_CREATES,
                side_effects="None",
                operations=["CREATE"],
                select_namespaces=False,  # a name like an exempt namespace's is the point
                failure_policy=namespace_creation_failure_policy,
                **common,
            ),
            _webhook(
                "subresources.validate.computegate.io",
                VALIDATE_SUBRESOURCES,
                _SUBRESOURCE_RULES,
                condition=SUBRESOURCE_CHANGES,
                side_effects="None",
                **common,
            ),
        ],
    }


def mutating_configuration(
    *,
    client_config: dict[str, Any],
    exempt_namespaces: Iterable[str],
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    webhook = _webhook(
        "workloads.mutate.computegate.io",
        MUTATE_WORKLOADS,
        _WORKLOAD_RULES,
        client_config=client_config,
        exempt_namespaces=tuple(exempt_namespaces),
        condition=workload_asks_for_accelerators(),
        side_effects="None",
    )
    webhook["reinvocationPolicy"] = "IfNeeded"
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": MUTATING_CONFIGURATION, "labels": labels or {}},
        "webhooks": [webhook],
    }
