"""ComputeGate's own resources (group ``computegate.io``, version ``v1alpha1``, cluster-scoped).

Field names are the API (DESIGN.md); the CRD schemas are generated from these models
(``computegate.models.crds``), so the two cannot drift apart.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, model_validator

from computegate.models.base import ApiModel, CountryCode, Timestamp, WireModel
from computegate.models.kube import ObjectMeta
from computegate.vocabulary import BANDS, Band
from computegate.vocabulary import GROUP as GROUP  # spelled in the vocabulary, used with the models
from computegate.vocabulary import VERSION as VERSION

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_seconds(text: str) -> float:
    """A Go-style duration (``90s``, ``5m``, ``1h30m``) in seconds."""
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))


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


class OnViolation(StrEnum):
    REPORT = "Report"
    EVICT = "Evict"


def _all_bands() -> list[Band]:
    return list(BANDS)


class Kyc(ApiModel):
    """The provider's know-your-customer record of the tenant."""

    status: KycStatus = Field(
        description="Verified, Pending or Failed; with requireKYC only Verified tenants get controlled TPP"
    )
    verified_at: Timestamp | None = Field(default=None, description="When the KYC check passed (RFC 3339)")


class TenantSpec(ApiModel):
    """A customer of the cluster: where it is, where its parent is, and which namespaces it owns."""

    display_name: str | None = Field(default=None, description="A name for people; not used in decisions")
    jurisdiction: CountryCode = Field(
        description="ISO 3166-1 alpha-2 country where the tenant is established"
    )
    parent_jurisdiction: CountryCode | None = Field(
        default=None,
        description="Country of its ultimate parent or headquarters; the stricter of the two applies",
    )
    kyc: Kyc = Field(description="The know-your-customer record")
    namespaces: list[str] = Field(
        default_factory=list,
        description="Namespaces it owns (a namespace may instead carry the label computegate.io/tenant)",
    )


class ExportLicenseSpec(ApiModel):
    """An export license held by one tenant: which accelerators, how much, from when until when."""

    tenant: str = Field(min_length=1, description="The Tenant that holds it")
    license_number: str = Field(min_length=1, description="The number the authority gave it")
    authority: str = Field(min_length=1, description="Who granted it, e.g. US-BIS")
    valid_from: Timestamp = Field(description="Valid from this instant (RFC 3339), inclusive")
    valid_until: Timestamp = Field(description="Valid until this instant (RFC 3339), exclusive")
    accelerators: list[str] = Field(
        default_factory=list, description="AcceleratorProfile names it covers; empty or absent: any"
    )
    max_tpp: float = Field(
        alias="maxTPP",
        ge=0,
        description="Cap on the summed TPP of the controlled accelerators admitted under it",
    )
    max_accelerators: float | None = Field(
        default=None, ge=0, description="Cap on their count (a MIG slice counts as its share of a chip)"
    )
    revoked: bool = Field(default=False, description="Revoked: admits nothing more")
    revoked_reason: str | None = Field(default=None, description="Why it was revoked, shown in messages")

    @model_validator(mode="after")
    def _window_is_not_empty(self) -> ExportLicenseSpec:
        if self.valid_until <= self.valid_from:
            raise ValueError("validUntil must be after validFrom")
        return self


class PolicyRule(ApiModel):
    """Matches a country in any of its groups or in its own list; the first matching rule wins."""

    groups: list[str] = Field(default_factory=list, description="Country groups (built-in or countryGroups)")
    jurisdictions: list[CountryCode] = Field(default_factory=list, description="Countries, beside the groups")
    action: Action = Field(description="Allow, RequireLicense or Prohibit")


class BandwidthControl(ApiModel):
    """A license requirement that follows an accelerator's bandwidth rather than its ECCN band.

    An accelerator is covered when any threshold given is met; the control applies to a tenant
    whose own or parent jurisdiction is in one of ``groups`` or in ``jurisdictions``.
    """

    name: str = Field(min_length=1, description="Short name shown in messages")
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


class TenantOverride(ApiModel):
    """Enforcement for some tenants, over the cluster default (named here by an admin, never
    taken from a label a tenant can edit)."""

    tenants: list[str] = Field(min_length=1, description="Tenant names this override applies to")
    enforcement: Enforcement = Field(description="Enforce or Audit for these tenants")


class CompliancePolicySpec(ApiModel):
    """The cluster's policy (one, named default): which countries need a license, and how strictly."""

    enforcement: Enforcement = Field(
        default=Enforcement.ENFORCE,
        description="Enforce (deny) or Audit (admit, but warn, annotate and record the would-be denial)",
    )
    country_groups: dict[str, list[CountryCode]] = Field(
        default_factory=dict,
        description="Group name to countries, merged over the built-in EAR groups by name",
    )
    rules: list[PolicyRule] | None = Field(
        default=None, description="Ordered rules, first match wins; absent: the built-in rules"
    )
    controlled_bands: list[Band] = Field(
        default_factory=_all_bands, description="ECCN bands that count as controlled"
    )
    require_kyc: bool = Field(
        default=True,
        alias="requireKYC",
        description="Only tenants whose KYC is Verified receive controlled compute",
    )
    unknown_tenant: UnknownTenantAction = Field(
        default=UnknownTenantAction.DENY,
        description="What happens in a namespace no tenant owns: Deny or Allow",
    )
    unknown_accelerator: UnknownAcceleratorAction = Field(
        default=UnknownAcceleratorAction.ASSUME_MOST_CAPABLE,
        description="A model no profile resolves: AssumeMostCapable or Deny",
    )
    exempt_namespaces: list[str] = Field(
        default_factory=lambda: ["kube-system"], description="Namespaces never judged (cluster components)"
    )
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
    on_violation: OnViolation = Field(
        default=OnViolation.REPORT,
        description="A running pod judged a violation is: Report(ed), or Evict(ed) after the grace period",
    )
    eviction_grace_period: str = Field(
        default="5m",
        pattern=DURATION_PATTERN,
        description="How long a violation is reported before the pod is evicted (Evict), e.g. 30s, 5m, 1h",
    )
    overrides: list[TenantOverride] = Field(
        default_factory=list,
        description="Per-tenant enforcement over spec.enforcement; the first override naming a tenant wins",
    )

    @property
    def grace_seconds(self) -> float:
        return duration_seconds(self.eviction_grace_period)

    def enforcement_for(self, tenant: str | None) -> Enforcement:
        for override in self.overrides:
            if tenant is not None and tenant in override.tenants:
                return override.enforcement
        return self.enforcement


class AcceleratorProfileSpec(ApiModel):
    """One accelerator model (the name is its id): its figures and how nodes and pods name it."""

    vendor: str = Field(description="The chip's maker, e.g. NVIDIA")
    model: str = Field(description="The model as people name it, e.g. H100 SXM5 80GB")
    resource_names: list[str] = Field(
        min_length=1, description="Extended resources that request it, e.g. nvidia.com/gpu"
    )
    product_labels: dict[str, list[str]] = Field(
        default_factory=dict, description="Node label key to the values that identify it"
    )
    device_class_names: list[str] = Field(
        default_factory=list, description="DRA DeviceClasses whose devices are this model"
    )
    tpp: float = Field(ge=0, description="Total Processing Performance of one chip (ECCN 3A090)")
    performance_density: float | None = Field(
        default=None, ge=0, description="TPP per mm2 of die area; absent = unknown (counted as dense)"
    )
    datacenter: bool = Field(
        default=True, description="Designed or marketed for data centres (ECCN 3A090 Note 2)"
    )
    mig_compute_slices: int | None = Field(
        default=None, ge=1, description="MIG compute slices of one chip, e.g. 7; absent = no MIG"
    )
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
