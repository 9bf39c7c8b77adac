"""The parts of Kubernetes objects that a decision reads; every other field is ignored."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from computegate.models.base import WireModel
from computegate.models.quantity import Quantity
from computegate.vocabulary import WORKLOADS


class ObjectMeta(WireModel):
    name: str = ""
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None


class ResourceRequirements(WireModel):
    requests: dict[str, Quantity] = Field(default_factory=dict)
    limits: dict[str, Quantity] = Field(default_factory=dict)


class EnvVar(WireModel):
    name: str = ""
    value: str | None = None


class SecurityContext(WireModel):
    privileged: bool | None = None


class Container(WireModel):
    name: str = ""
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    restart_policy: str | None = None
    env: list[EnvVar] = Field(default_factory=list)
    security_context: SecurityContext | None = None


class HostPathVolumeSource(WireModel):
    path: str = ""


class Volume(WireModel):
    name: str = ""
    host_path: HostPathVolumeSource | None = None


class NodeSelectorRequirement(WireModel):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    values: list[str] = Field(default_factory=list)


class NodeSelectorTerm(WireModel):
    match_expressions: list[NodeSelectorRequirement] = Field(default_factory=list)
    match_fields: list[NodeSelectorRequirement] = Field(default_factory=list)


class NodeSelector(WireModel):
    node_selector_terms: list[NodeSelectorTerm] = Field(default_factory=list)


class NodeAffinity(WireModel):
    required_during_scheduling_ignored_during_execution: NodeSelector | None = None


class Affinity(WireModel):
    node_affinity: NodeAffinity | None = None


class PodResourceClaim(WireModel):
    name: str
    resource_claim_name: str | None = None
    resource_claim_template_name: str | None = None


class PodSpec(WireModel):
    containers: list[Container] = Field(default_factory=list)
    init_containers: list[Container] = Field(default_factory=list)
    ephemeral_containers: list[Container] = Field(default_factory=list)
    volumes: list[Volume] = Field(default_factory=list)
    runtime_class_name: str | None = None
    node_name: str | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    affinity: Affinity | None = None
    resource_claims: list[PodResourceClaim] = Field(default_factory=list)

    @property
    def required_node_selector(self) -> NodeSelector | None:
        node_affinity = self.affinity.node_affinity if self.affinity else None
        return node_affinity.required_during_scheduling_ignored_during_execution if node_affinity else None


class PodStatus(WireModel):
    phase: str | None = None
    start_time: datetime | None = None


class Pod(WireModel):
    kind: Literal["Pod"] = "Pod"
    api_version: str = "v1"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: PodSpec = Field(default_factory=PodSpec)
    status: PodStatus = Field(default_factory=PodStatus)


class PodTemplate(WireModel):
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: PodSpec = Field(default_factory=PodSpec)


class JobSpec(WireModel):
    parallelism: int | None = Field(default=None, ge=0)
    template: PodTemplate = Field(default_factory=PodTemplate)


class JobTemplate(WireModel):
    spec: JobSpec = Field(default_factory=JobSpec)


class LabelSelector(WireModel):
    match_labels: dict[str, str] = Field(default_factory=dict)


class ControllerSpec(WireModel):
    """The union of the pod controllers' spec fields that set how many pods they make."""

    replicas: int | None = Field(default=None, ge=0)
    parallelism: int | None = Field(default=None, ge=0)
    template: PodTemplate | None = None
    job_template: JobTemplate | None = None


WorkloadKind = Literal["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "CronJob"]
WORKLOAD_KINDS: frozenset[str] = frozenset(workload.kind for workload in WORKLOADS)


class Controller(WireModel):
    kind: WorkloadKind
    api_version: str = ""
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ControllerSpec = Field(default_factory=ControllerSpec)


Workload = Pod | Controller


class NodeStatus(WireModel):
    capacity: dict[str, Quantity] = Field(default_factory=dict)
    allocatable: dict[str, Quantity] = Field(default_factory=dict)


class Node(WireModel):
    kind: Literal["Node"] = "Node"
    metadata: ObjectMeta
    status: NodeStatus = Field(default_factory=NodeStatus)


class Namespace(WireModel):
    kind: Literal["Namespace"] = "Namespace"
    metadata: ObjectMeta


class ExactDeviceRequest(WireModel):
    device_class_name: str
    allocation_mode: Literal["ExactCount", "All"] = "ExactCount"
    count: int = Field(default=1, ge=0)


class DeviceSubRequest(WireModel):
    """One alternative of a ``firstAvailable`` request."""

    name: str = ""
    device_class_name: str
    allocation_mode: Literal["ExactCount", "All"] = "ExactCount"
    count: int = Field(default=1, ge=0)


class DeviceRequest(WireModel):
    """resource.k8s.io: v1 nests the request under ``exactly`` (or lists alternatives under
    ``firstAvailable``); v1beta1 has it inline."""

    name: str = ""
    exactly: ExactDeviceRequest | None = None
    first_available: list[DeviceSubRequest] = Field(default_factory=list)
    device_class_name: str | None = None
    allocation_mode: Literal["ExactCount", "All"] = "ExactCount"
    count: int = Field(default=1, ge=0)

    @property
    def exact(self) -> ExactDeviceRequest | None:
        if self.exactly is not None:
            return self.exactly
        if self.device_class_name is None:
            return None
        return ExactDeviceRequest(
            device_class_name=self.device_class_name, allocation_mode=self.allocation_mode, count=self.count
        )


class DeviceClaim(WireModel):
    requests: list[DeviceRequest] = Field(default_factory=list)


class ResourceClaimSpec(WireModel):
    devices: DeviceClaim = Field(default_factory=DeviceClaim)


class ResourceClaim(WireModel):
    kind: Literal["ResourceClaim"] = "ResourceClaim"
    metadata: ObjectMeta
    spec: ResourceClaimSpec = Field(default_factory=ResourceClaimSpec)


class ResourceClaimTemplateSpec(WireModel):
    spec: ResourceClaimSpec = Field(default_factory=ResourceClaimSpec)


class ResourceClaimTemplate(WireModel):
    kind: Literal["ResourceClaimTemplate"] = "ResourceClaimTemplate"
    metadata: ObjectMeta
    spec: ResourceClaimTemplateSpec = Field(default_factory=ResourceClaimTemplateSpec)


class DeviceClass(WireModel):
    kind: Literal["DeviceClass"] = "DeviceClass"
    metadata: ObjectMeta
