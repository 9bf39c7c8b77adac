"""Pydantic models of the objects ComputeGate reads: its own resources and the Kubernetes kinds.

Purely declarative: parsing and validation, no I/O. Every adapter (webhook, CLI, audit) turns
its input into these models before the engine sees it, so a field error reads the same way
everywhere.
"""

from computegate.models.kube import (
    WORKLOAD_KINDS,
    Container,
    DeviceClass,
    Namespace,
    Node,
    NodeSelector,
    NodeSelectorRequirement,
    NodeSelectorTerm,
    ObjectMeta,
    Pod,
    PodSpec,
    PodTemplate,
    ResourceClaim,
    ResourceClaimTemplate,
    Workload,
)
from computegate.models.quantity import Quantity, parse_quantity
from computegate.models.resources import (
    AcceleratorProfile,
    AcceleratorProfileSpec,
    BandwidthControl,
    CompliancePolicy,
    CompliancePolicySpec,
    ExportLicense,
    ExportLicenseSpec,
    PolicyRule,
    Tenant,
    TenantSpec,
)

__all__ = [
    "WORKLOAD_KINDS",
    "AcceleratorProfile",
    "AcceleratorProfileSpec",
    "BandwidthControl",
    "CompliancePolicy",
    "CompliancePolicySpec",
    "Container",
    "DeviceClass",
    "ExportLicense",
    "ExportLicenseSpec",
    "Namespace",
    "Node",
    "NodeSelector",
    "NodeSelectorRequirement",
    "NodeSelectorTerm",
    "ObjectMeta",
    "Pod",
    "PodSpec",
    "PodTemplate",
    "PolicyRule",
    "Quantity",
    "ResourceClaim",
    "ResourceClaimTemplate",
    "Tenant",
    "TenantSpec",
    "Workload",
    "parse_quantity",
]
