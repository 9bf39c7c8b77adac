"""The words ComputeGate shares with Kubernetes, spelled once: the workload kinds it judges (with
where each keeps its pod template), the operations it answers, its label and annotation keys,
the kinds the decisions are read from, and the ECCN bands.

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
    "DRA_GROUP",
    "GROUP",
    "LICENSE_ANNOTATION",
    "PROTECTED_ANNOTATIONS",
    "SCALABLE",
    "STATE_KINDS",
    "TENANT_LABEL",
    "TPP_ANNOTATION",
    "VERSION",
    "WORKLOADS",
    "WORKLOAD_BY_KIND",
    "WORKLOAD_BY_PLURAL",
    "Band",
    "StateKind",
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

# Our own API (the CRDs) and Dynamic Resource Allocation's.
GROUP: Final = "computegate.io"
VERSION: Final = "v1alpha1"
DRA_GROUP: Final = "resource.k8s.io"


@dataclass(frozen=True)
class StateKind:
    """A kind the decisions are made from: the operator lists and watches all its objects."""

    kind: str
    group: str
    plural: str
    # None: the version the API server prefers, found when the operator starts (DRA's group
    # moved from v1beta1 to v1 across the releases we support, and may not be served at all).
    version: str | None

    def path(self, version: str) -> str:
        """The collection across all namespaces, in ``version``."""
        prefix = f"/apis/{self.group}" if self.group else "/api"
        return f"{prefix}/{version}/{self.plural}"


_POD = WORKLOAD_BY_KIND["Pod"]
STATE_KINDS: Final = (
    StateKind("Tenant", GROUP, "tenants", VERSION),
    StateKind("ExportLicense", GROUP, "exportlicenses", VERSION),
    StateKind("CompliancePolicy", GROUP, "compliancepolicies", VERSION),
    StateKind("AcceleratorProfile", GROUP, "acceleratorprofiles", VERSION),
    StateKind("Namespace", "", "namespaces", "v1"),
    StateKind("Node", "", "nodes", "v1"),
    StateKind(_POD.kind, _POD.group, _POD.plural, _POD.version),
    StateKind("ResourceClaim", DRA_GROUP, "resourceclaims", None),
    StateKind("ResourceClaimTemplate", DRA_GROUP, "resourceclaimtemplates", None),
    StateKind("DeviceClass", DRA_GROUP, "deviceclasses", None),
)

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
