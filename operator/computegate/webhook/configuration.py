"""The admission webhook configurations: the one source of truth for dev, tests and the chart.

What reaches the webhook is decided here, and it must never lock up a cluster:

- ``matchConditions`` (CEL) send only objects whose pod spec names an accelerator resource or
  resource claims, and namespaces whose tenant label changes. Every path is guarded with
  ``has()``, because a condition that errors falls under the failure policy.
- a ``namespaceSelector`` skips the exempt namespaces (kube-system, our own, the GPU operator's);
- ``failurePolicy: Fail`` for what is sent (accelerator workloads fail closed), except the
  ``scale`` subresource: a Scale object carries no pod spec, so it cannot be filtered, and the
  pods that a scale-up creates are judged (and fail closed) on their own CREATE.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from computegate.engine.footprint import ACCELERATOR_NAMES, ACCELERATOR_PREFIXES
from computegate.vocabulary import ADMISSION_OPERATIONS, SCALABLE, TENANT_LABEL, WORKLOADS

VALIDATING_CONFIGURATION = "computegate-validating"
MUTATING_CONFIGURATION = "computegate-mutating"
TIMEOUT_SECONDS = 5

# The URL path of each webhook: the server routes on it.
VALIDATE_WORKLOADS = "validate-workloads"
VALIDATE_SCALE = "validate-scale"
VALIDATE_RESOURCE_CLAIMS = "validate-resourceclaims"
VALIDATE_NAMESPACES = "validate-namespaces"
MUTATE_WORKLOADS = "mutate-workloads"
WEBHOOK_PATHS = (
    VALIDATE_WORKLOADS,
    VALIDATE_SCALE,
    VALIDATE_RESOURCE_CLAIMS,
    VALIDATE_NAMESPACES,
    MUTATE_WORKLOADS,
)


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
    {"apiGroups": [""], "apiVersions": ["v1"], "resources": ["namespaces"]},
]


def _is_accelerator(key: str, extra_resource_names: Iterable[str]) -> str:
    tests = [f"{key}.startsWith('{prefix}')" for prefix in ACCELERATOR_PREFIXES]
    tests += [
        f"{key} == '{name}'" for name in (*sorted(ACCELERATOR_NAMES), *sorted(set(extra_resource_names)))
    ]
    return "(" + " || ".join(tests) + ")"


def _containers_ask(spec: str, field: str, extra: Iterable[str]) -> str:
    resources = "c.resources"
    asks = " || ".join(
        f"(has({resources}.{kind}) && {resources}.{kind}.exists(k, {_is_accelerator('k', extra)}))"
        for kind in ("limits", "requests")
    )
    return f"(has({spec}.{field}) && {spec}.{field}.exists(c, has(c.resources) && ({asks})))"


def pod_spec_asks_for_accelerators(spec: str, extra_resource_names: Iterable[str] = ()) -> str:
    """CEL: the pod spec at ``spec`` names an accelerator resource or resource claims."""
    extra = tuple(extra_resource_names)
    return " || ".join(
        [
            _containers_ask(spec, "containers", extra),
            _containers_ask(spec, "initContainers", extra),
            f"(has({spec}.resourceClaims) && size({spec}.resourceClaims) > 0)",
        ]
    )


def workload_asks_for_accelerators(extra_resource_names: Iterable[str] = ()) -> str:
    """CEL over ``object`` for any of the workload kinds; false (never an error) on anything else."""
    extra = tuple(extra_resource_names)
    pod = pod_spec_asks_for_accelerators("object.spec", extra)
    template = pod_spec_asks_for_accelerators("object.spec.template.spec", extra)
    cron = pod_spec_asks_for_accelerators("object.spec.jobTemplate.spec.template.spec", extra)
    job = "object.spec.jobTemplate"
    cron_guard = f"has({job}) && has({job}.spec) && has({job}.spec.template) && has({job}.spec.template.spec)"
    template_guard = "has(object.spec.template) && has(object.spec.template.spec)"
    return (
        "has(object.spec) && ("
        f"request.kind.kind == 'Pod' ? ({pod}) : "
        f"request.kind.kind == 'CronJob' ? ({cron_guard} && ({cron})) : "
        f"({template_guard} && ({template})))"
    )


def _tenant_label(obj: str) -> str:
    labels = f"{obj}.metadata.labels"
    return (
        f"({obj} != null && has({labels}) && '{TENANT_LABEL}' in {labels} ? {labels}['{TENANT_LABEL}'] : '')"
    )


TENANT_LABEL_CHANGES = f"{_tenant_label('object')} != {_tenant_label('oldObject')}"


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
) -> dict[str, Any]:
    webhook: dict[str, Any] = {
        "name": name,
        "admissionReviewVersions": ["v1"],
        "clientConfig": _with_path(client_config, path),
        "rules": [{**rule, "operations": _CREATE_UPDATE, "scope": "*"} for rule in rules],
        "failurePolicy": failure_policy,
        "matchPolicy": "Equivalent",
        "sideEffects": side_effects,
        "timeoutSeconds": TIMEOUT_SECONDS,
        "namespaceSelector": _namespace_selector(exempt_namespaces),
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
    extra_resource_names: Iterable[str] = (),
    labels: dict[str, str] | None = None,
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
                condition=workload_asks_for_accelerators(extra_resource_names),
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
        ],
    }


def mutating_configuration(
    *,
    client_config: dict[str, Any],
    exempt_namespaces: Iterable[str],
    extra_resource_names: Iterable[str] = (),
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    webhook = _webhook(
        "workloads.mutate.computegate.io",
        MUTATE_WORKLOADS,
        _WORKLOAD_RULES,
        client_config=client_config,
        exempt_namespaces=tuple(exempt_namespaces),
        condition=workload_asks_for_accelerators(extra_resource_names),
        side_effects="None",
    )
    webhook["reinvocationPolicy"] = "IfNeeded"
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": MUTATING_CONFIGURATION, "labels": labels or {}},
        "webhooks": [webhook],
    }
