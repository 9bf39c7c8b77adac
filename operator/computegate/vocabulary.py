"""The words ComputeGate shares with Kubernetes, spelled once: the workload kinds it judges (with
where each keeps its pod template), the operations it answers, its label and annotation keys,
and the ECCN bands.

Everything else derives from here: the models, the engine, the evaluator's readers, the webhook
configuration, the operator's watches and the API calls. Pure data, no imports of our own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "ADMISSION_OPERATIONS",
    "BANDS",
    "CODE_ANNOTATION",
    "CONTROLLERS",
    "DECISION_ANNOTATION",
    "DECISION_ID_ANNOTATION",
    "LICENSE_ANNOTATION",
    "PROTECTED_ANNOTATIONS",
    "SCALABLE",
    "TENANT_LABEL",
    "TPP_ANNOTATION",
    "WORKLOADS",
    "WORKLOAD_BY_KIND",
    "WORKLOAD_BY_PLURAL",
    "Band",
    "WorkloadKind",
]


@dataclass(frozen=True)
class WorkloadKind:
    """A kind whose objects make pods: where it lives in the API and where its pod spec is."""

    kind: str
    group: str
    version: str
    plural: str
    # Keys from the object to its pod template (the object that has `metadata` and `spec`);
    # empty for a Pod, whose own spec is the pod spec.
    template_path: tuple[str, ...]
    scalable: bool = False  # has a `scale` subresource that changes spec.replicas

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


WORKLOADS: Final = (
    WorkloadKind("Pod", "", "v1", "pods", ()),
    WorkloadKind("Deployment", "apps", "v1", "deployments", ("spec", "template"), scalable=True),
    WorkloadKind("ReplicaSet", "apps", "v1", "replicasets", ("spec", "template"), scalable=True),
    WorkloadKind("StatefulSet", "apps", "v1", "statefulsets", ("spec", "template"), scalable=True),
    WorkloadKind("DaemonSet", "apps", "v1", "daemonsets", ("spec", "template")),
    WorkloadKind("Job", "batch", "v1", "jobs", ("spec", "template")),
    WorkloadKind("CronJob", "batch", "v1", "cronjobs", ("spec", "jobTemplate", "spec", "template")),
)
WORKLOAD_BY_PLURAL: Final = {workload.plural: workload for workload in WORKLOADS}
WORKLOAD_BY_KIND: Final = {workload.kind: workload for workload in WORKLOADS}
CONTROLLERS: Final = tuple(workload for workload in WORKLOADS if workload.template_path)
SCALABLE: Final = tuple(workload for workload in WORKLOADS if workload.scalable)

# The operations the webhooks are registered for; DELETE and CONNECT never deliver compute.
ADMISSION_OPERATIONS: Final = ("CREATE", "UPDATE")

# A namespace's tenant, when no Tenant lists it (only admins may set or change it).
TENANT_LABEL: Final = "computegate.io/tenant"
# The decision record stamped on an admitted accelerator workload by the mutating webhook.
DECISION_ANNOTATION: Final = "computegate.io/decision"
CODE_ANNOTATION: Final = "computegate.io/code"
TPP_ANNOTATION: Final = "computegate.io/tpp"
LICENSE_ANNOTATION: Final = "computegate.io/license"  # what a pod's consumption is counted under
DECISION_ID_ANNOTATION: Final = "computegate.io/decision-id"
PROTECTED_ANNOTATIONS: Final = (
    DECISION_ANNOTATION,
    CODE_ANNOTATION,
    TPP_ANNOTATION,
    LICENSE_ANNOTATION,
    DECISION_ID_ANNOTATION,
)

Band = Literal["3A090.a", "3A090.b"]
BANDS: Final[tuple[Band, ...]] = ("3A090.a", "3A090.b")
