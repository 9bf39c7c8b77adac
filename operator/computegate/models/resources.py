"""ComputeGate's own resources (group ``computegate.io``, version ``v1alpha1``, cluster-scoped).

Field names are the API (DESIGN.md); the CRD schemas are generated from these models
(``computegate.models.crds``), so the two cannot drift apart.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, model_validator

from computegate.models.base import ApiModel, CountryCode, Timestamp, WireModel
from computegate.models.kube import ObjectMeta
from computegate.vocabulary import BANDS, Band

GROUP = "computegate.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


class KycStatus(StrEnum):
    VERIFIED = "Verified"
    PENDING = "Pending"
    FAILED = "Failed"


class Action(StrEnum):
    ALLOW = "Allow"
    REQUIRE_LICENSE = "RequireLicense"
    PROHIBIT = "Prohibit"


class Enforcement(StrEnum):
    ENFORCE = "Enforce"
    AUDIT = "Audit"


class UnknownTenantAction(StrEnum):
    DENY = "Deny"
    ALLOW = "Allow"


class UnknownAcceleratorAction(StrEnum):
    ASSUME_MOST_CAPABLE = "AssumeMostCapable"
    DENY = "Deny"


class DeviceAccessAction(StrEnum):
    """DESIGN.md step 2: a container that can reach accelerators without asking for them."""

    JUDGE = "Judge"  # it asks for every accelerator of its node (worst case over the candidates)
    DENY = "Deny"  # refused with DeviceAccessWithoutRequest
    ALLOW = "Allow"  # not ComputeGate's business (the node's settings are trusted)


def _all_bands() -> list[Band]:
    return list(BANDS)


class Kyc(ApiModel):
    status: KycStatus
    verified_at: Timestamp | None = None


class TenantSpec(ApiModel):
    display_name: str | None = None
    jurisdiction: CountryCode
    parent_jurisdiction: CountryCode | None = None
    kyc: Kyc
    namespaces: list[str] = Field(default_factory=list)


class ExportLicenseSpec(ApiModel):
    tenant: str = Field(min_length=1)
    license_number: str = Field(min_length=1)
    authority: str = Field(min_length=1)
    valid_from: Timestamp
    valid_until: Timestamp
    accelerators: list[str] = Field(default_factory=list)
    max_tpp: float = Field(alias="maxTPP", ge=0)
    max_accelerators: float | None = Field(default=None, ge=0)
    revoked: bool = False
    revoked_reason: str | None = None

    @model_validator(mode="after")
    def _window_is_not_empty(self) -> ExportLicenseSpec:
        if self.valid_until <= self.valid_from:
            raise ValueError("validUntil must be after validFrom")
        return self


class PolicyRule(ApiModel):
    groups: list[str] = Field(default_factory=list)
    jurisdictions: list[CountryCode] = Field(default_factory=list)
    action: Action


class BandwidthControl(ApiModel):
    """A license requirement that follows an accelerator's bandwidth rather than its ECCN band.

    An accelerator is covered when any threshold given is met; the control applies to a tenant
    whose own or parent jurisdiction is in one of ``groups`` or in ``jurisdictions``.
    """

    name: str = Field(
        min_length=1, description="Short name shown in messages, e.g. 'US April 2025 H20-class'"
    )
    source: str = Field(min_length=1, description="Where the requirement is published, with its date")
    dram_gbps: float | None = Field(
        default=None,
        alias="dramGBps",
        gt=0,
        description="Covered when DRAM GB/s is at least this",
    )
    io_gbps: float | None = Field(
        default=None,
        alias="ioGBps",
        gt=0,
        description="Covered when I/O GB/s is at least this",
    )
    combined_gbps: float | None = Field(
        default=None,
        alias="combinedGBps",
        gt=0,
        description="Covered when DRAM plus I/O bandwidth (GB/s) is at least this",
    )
    groups: list[str] = Field(default_factory=list, description="Country groups whose tenants it covers")
    jurisdictions: list[CountryCode] = Field(
        default_factory=list, description="Countries whose tenants it covers, beside the groups"
    )

    @model_validator(mode="after")
    def _has_a_threshold_and_a_scope(self) -> BandwidthControl:
        if self.dram_gbps is None and self.io_gbps is None and self.combined_gbps is None:
            raise ValueError("a bandwidth control needs at least one of dramGBps, ioGBps, combinedGBps")
        if not self.groups and not self.jurisdictions:
            raise ValueError("a bandwidth control needs groups or jurisdictions to cover")
        return self


class CompliancePolicySpec(ApiModel):
    enforcement: Enforcement = Enforcement.ENFORCE
    country_groups: dict[str, list[CountryCode]] = Field(default_factory=dict)
    rules: list[PolicyRule] | None = None
    controlled_bands: list[Band] = Field(default_factory=_all_bands)
    require_kyc: bool = Field(default=True, alias="requireKYC")
    unknown_tenant: UnknownTenantAction = UnknownTenantAction.DENY
    unknown_accelerator: UnknownAcceleratorAction = UnknownAcceleratorAction.ASSUME_MOST_CAPABLE
    exempt_namespaces: list[str] = Field(default_factory=lambda: ["kube-system"])
    device_access_without_request: DeviceAccessAction = Field(
        default=DeviceAccessAction.JUDGE,
        description="Containers that can reach accelerators without a request (device environment "
        "variables, a GPU RuntimeClass, privileged, hostPath of /dev, CDI annotations): Judge counts "
        "every accelerator of the node, Deny refuses them, Allow ignores them",
    )
    bandwidth_controls: list[BandwidthControl] | None = Field(
        default=None,
        description="License requirements that follow bandwidth; absent = the built-in list, [] = none",
    )


class AcceleratorProfileSpec(ApiModel):
    vendor: str
    model: str
    resource_names: list[str] = Field(min_length=1)
    product_labels: dict[str, list[str]] = Field(default_factory=dict)
    device_class_names: list[str] = Field(default_factory=list)
    tpp: float = Field(ge=0)
    performance_density: float | None = Field(default=None, ge=0)
    datacenter: bool = True
    mig_compute_slices: int | None = Field(default=None, ge=1)
    memory_bandwidth_gbps: float | None = Field(
        default=None,
        alias="memoryBandwidthGBps",
        gt=0,
        description="Total DRAM GB/s; absent = unknown",
    )
    io_bandwidth_gbps: float | None = Field(
        default=None,
        alias="ioBandwidthGBps",
        gt=0,
        description="Off-chip I/O GB/s other than DRAM (chip-to-chip plus host); absent = unknown",
    )


class _Resource(WireModel):
    api_version: str = API_VERSION
    metadata: ObjectMeta


class Tenant(_Resource):
    kind: Literal["Tenant"] = "Tenant"
    spec: TenantSpec


class ExportLicense(_Resource):
    kind: Literal["ExportLicense"] = "ExportLicense"
    spec: ExportLicenseSpec
    status: dict[str, Any] | None = None


class CompliancePolicy(_Resource):
    kind: Literal["CompliancePolicy"] = "CompliancePolicy"
    spec: CompliancePolicySpec = Field(default_factory=CompliancePolicySpec)


class AcceleratorProfile(_Resource):
    kind: Literal["AcceleratorProfile"] = "AcceleratorProfile"
    spec: AcceleratorProfileSpec
