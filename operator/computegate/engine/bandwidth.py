"""License requirements that follow an accelerator's bandwidth, not its ECCN band.

DESIGN.md steps 5 and 7: an accelerator is controlled for a tenant when it is in a controlled
band, or when a bandwidth control covers it for the tenant's own or parent jurisdiction. Which
accelerators a control covers depends on the tenant, so this is applied after the footprint is
resolved to models, and again (per license's tenant) when consumption is summed.
"""

from __future__ import annotations

from dataclasses import dataclass

from computegate.engine.policy import EffectivePolicy
from computegate.models.resources import AcceleratorProfileSpec, BandwidthControl, TenantSpec

OWN = "own"
PARENT = "parent"


@dataclass(frozen=True)
class ThresholdMet:
    """The first of a control's thresholds that a profile's figures reach."""

    measure: str  # "DRAM bandwidth", "I/O bandwidth" or "DRAM plus I/O bandwidth"
    value: float  # GB/s
    threshold: float  # GB/s


@dataclass(frozen=True)
class Coverage:
    """One bandwidth control covering one accelerator model for one tenant."""

    control: BandwidthControl
    profile: str
    model: str
    met: ThresholdMet
    countries: tuple[tuple[str, str], ...]  # (country, OWN | PARENT) of the tenant the control names


def threshold_met(control: BandwidthControl, spec: AcceleratorProfileSpec) -> ThresholdMet | None:
    """The threshold the profile reaches, or None; an unknown figure never reaches one."""
    dram, io = spec.memory_bandwidth_gbps, spec.io_bandwidth_gbps
    if control.dram_gbps is not None and dram is not None and dram >= control.dram_gbps:
        return ThresholdMet("DRAM bandwidth", dram, control.dram_gbps)
    if control.io_gbps is not None and io is not None and io >= control.io_gbps:
        return ThresholdMet("I/O bandwidth", io, control.io_gbps)
    if (
        control.combined_gbps is not None
        and dram is not None
        and io is not None
        and dram + io >= control.combined_gbps
    ):
        return ThresholdMet("DRAM plus I/O bandwidth", dram + io, control.combined_gbps)
    return None


def tenant_countries(tenant: TenantSpec) -> tuple[tuple[str, str], ...]:
    own = ((tenant.jurisdiction, OWN),)
    return (*own, (tenant.parent_jurisdiction, PARENT)) if tenant.parent_jurisdiction else own


def coverages(
    policy: EffectivePolicy, profile: str, spec: AcceleratorProfileSpec, tenant: TenantSpec
) -> tuple[Coverage, ...]:
    """Every control of the policy that covers the profile for the tenant, in the policy's order."""
    found = []
    for control in policy.bandwidth_controls:
        met = threshold_met(control, spec)
        if met is None:
            continue
        named = tuple(
            (country, whose)
            for country, whose in tenant_countries(tenant)
            if policy.control_names(control, country)
        )
        if named:
            found.append(Coverage(control, profile, f"{spec.vendor} {spec.model}", met, named))
    return tuple(found)


def may_be_covered(spec: AcceleratorProfileSpec) -> bool:
    """Whether some control could cover the profile: it has a bandwidth figure at all."""
    return spec.memory_bandwidth_gbps is not None or spec.io_bandwidth_gbps is not None
