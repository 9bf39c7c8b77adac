"""The words a `kubectl` user reads: what was found, which rule applied, what to do next.

Messages name only the requesting tenant's own facts (its jurisdiction, its licenses); a
namespace conflict is reported without naming the other tenants involved.
"""

from __future__ import annotations

from collections.abc import Iterable

from computegate.engine.bandwidth import OWN, PARENT, Coverage
from computegate.engine.indexes import Usage
from computegate.engine.policy import RuleMatch
from computegate.engine.state import TenantLookup
from computegate.engine.verdict import AcceleratorUse, Code
from computegate.models.kube import Workload
from computegate.models.resources import Action, ExportLicense, Tenant


def _num(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def describe_uses(uses: Iterable[AcceleratorUse]) -> str:
    parts = []
    for use in uses:
        assumed = "" if use.resolved else ", assumed: model not identified"
        band = use.band or (
            "no 3A090 band, bandwidth-controlled" if use.bandwidth_control else "no 3A090 band"
        )
        per_chip = f"TPP {_num(use.tpp_per_chip)} per chip"
        parts.append(f"{_num(use.count)} x {use.model} ({use.resource}, {per_chip}, {band}{assumed})")
    return "; ".join(parts)


_WHOSE = {OWN: "its own", PARENT: "its parent's"}


def describe_coverage(coverage: Coverage) -> str:
    """E.g. "NVIDIA H20 96GB: DRAM bandwidth 4,000 GB/s ≥ 1,400 GB/s under <control>, for CN
    (its parent's jurisdiction)"."""
    countries = " and ".join(
        f"{country} ({_WHOSE[whose]} jurisdiction)" for country, whose in coverage.countries
    )
    met = coverage.met
    return (
        f"{coverage.model}: {met.measure} {_num(met.value)} GB/s ≥ {_num(met.threshold)} GB/s "
        f"under {coverage.control.name}, for {countries}"
    )


class Messages:
    def __init__(
        self, workload: Workload, uses: tuple[AcceleratorUse, ...], coverage: tuple[Coverage, ...] = ()
    ) -> None:
        self.subject = (
            f"{workload.kind} {workload.metadata.namespace}/{workload.metadata.name or '<generated>'}"
        )
        self.uses = uses
        # One line per covered model: the control the use names (the first that covers it).
        applied = {(u.profile, u.bandwidth_control) for u in uses if u.bandwidth_control}
        self.coverage = tuple(c for c in coverage if (c.profile, c.control.name) in applied)
        self.controlled = tuple(u for u in uses if u.controlled)
        self.controlled_tpp = sum(u.tpp for u in self.controlled)

    def _asks(self) -> str:
        return f"{self.subject} asks for {describe_uses(self.uses)}"

    def _asks_controlled(self) -> str:
        why = "".join(f" Bandwidth-controlled: {describe_coverage(c)}." for c in self.coverage)
        return f"{self._asks()}: {_num(self.controlled_tpp)} controlled TPP.{why}"

    def no_accelerator(self) -> str:
        return f"{self.subject} asks for no accelerator."

    def device_access(self, reasons: tuple[str, ...]) -> str:
        return (
            f"{self.subject} can reach accelerators without asking for them ({'; '.join(reasons)}), and "
            "the cluster's policy refuses device access without a request "
            "(CompliancePolicy spec.deviceAccessWithoutRequest: Deny). Ask for accelerators through "
            "resources (e.g. nvidia.com/gpu) or resource claims instead."
        )

    def exempt(self, namespace: str) -> str:
        return f"{self._asks()}; namespace {namespace} is exempt by the CompliancePolicy."

    def unknown_tenant(self, namespace: str, lookup: TenantLookup, allowed: bool) -> str:
        if lookup.claimants > 1:
            found = (
                f"namespace {namespace} is claimed by more than one tenant (by spec.namespaces or the "
                "computegate.io/tenant label), so it has no tenant until a cluster admin fixes the conflict"
            )
        elif lookup.missing_label_target:
            found = (
                f"namespace {namespace} is labelled computegate.io/tenant={lookup.missing_label_target}, "
                "but no Tenant of that name exists"
            )
        else:
            found = f"namespace {namespace} belongs to no Tenant"
        outcome = (
            "admitted because the CompliancePolicy sets unknownTenant: Allow"
            if allowed
            else "ask a cluster admin to add the namespace to your Tenant's spec.namespaces"
        )
        return f"{self._asks()}; {found}; {outcome}."

    def unknown_accelerator(self) -> str:
        return (
            f"{self._asks()}; the accelerator model could not be identified from the nodes it may run on, "
            "and the CompliancePolicy sets unknownAccelerator: Deny. Select nodes with a known "
            "product label (nodeSelector) or ask a cluster admin to add an AcceleratorProfile."
        )

    def not_controlled(self, bands: frozenset[str], controls: bool) -> str:
        controlled = f"none is in a controlled band ({', '.join(sorted(bands))})"
        if controls:
            controlled += " or covered by a bandwidth control for the tenant's jurisdictions"
        return f"{self._asks()}; {controlled}."

    def kyc_incomplete(self, tenant: Tenant) -> str:
        return (
            f"{self._asks_controlled()} Tenant {tenant.metadata.name} has KYC status"
            f" {tenant.spec.kyc.status.value}, and an unverified jurisdiction is not trusted; "
            "complete the customer verification with your provider to use controlled accelerators."
        )

    def jurisdiction(self, tenant: Tenant, country: str, from_parent: bool, match: RuleMatch) -> str:
        whose = "its parent's jurisdiction" if from_parent else "its own jurisdiction"
        if match.rule_index is None:
            rule = "no CompliancePolicy rule matches it"
        else:
            via = "its own list" if match.via == "jurisdictions" else f"country group {match.via}"
            action = Action.ALLOW if match.raised_by else match.action
            rule = f"rule {match.rule_index + 1} ({action.value}) matches it through {via}"
        if match.raised_by:
            rule += (
                f", but bandwidth control {match.raised_by} names it, so it needs a license at least"
                " (RequireLicense)"
            )
        return (
            f"{self._asks_controlled()} Tenant {tenant.metadata.name}: effective jurisdiction"
            f" {country} ({whose}); {rule}."
        )

    def prohibited(self, where: str) -> str:
        return (
            f"{where} Controlled accelerators cannot be delivered to this jurisdiction; no license allows it."
        )

    def no_license(self, where: str, demand: Usage) -> str:
        return (
            f"{where} A license is required and the tenant holds none. Request an export license "
            f"(e.g. from US-BIS) covering {_models(self.controlled)} for at least {_num(demand.tpp)} TPP, "
            "and have a cluster admin record it as an ExportLicense."
        )

    def licensed(self, where: str, lic: ExportLicense, demand: Usage, headroom: Usage) -> str:
        return (
            f"{where} Admitted under license {lic.metadata.name} ({lic.spec.authority} "
            f"{lic.spec.license_number}, valid until {lic.spec.valid_until.isoformat()}); it uses "
            f"{_num(demand.tpp)} of {_num(headroom.tpp)} TPP headroom."
        )

    def license_failure(self, code: Code, lic: ExportLicense, demand: Usage, headroom: Usage) -> str:
        name = f"license {lic.metadata.name} ({lic.spec.authority} {lic.spec.license_number})"
        spec = lic.spec
        match code:
            case Code.LICENSE_REVOKED:
                reason = f": {spec.revoked_reason}" if spec.revoked_reason else ""
                return f"The closest {name} is revoked{reason}. Contact your compliance officer."
            case Code.LICENSE_EXPIRED:
                return (
                    f"The closest {name} expired at {spec.valid_until.isoformat()}. "
                    "Request a renewal and have a cluster admin record it."
                )
            case Code.LICENSE_NOT_YET_VALID:
                return f"The closest {name} is valid only from {spec.valid_from.isoformat()}. Retry then."
            case Code.LICENSE_SCOPE:
                uncovered = sorted({u.profile for u in self.controlled} - set(spec.accelerators))
                return (
                    f"The closest {name} covers {', '.join(spec.accelerators)}, not {', '.join(uncovered)}. "
                    "Use a covered accelerator (nodeSelector) or request an amendment of the license."
                )
            case _:
                count = (
                    ""
                    if headroom.accelerators == float("inf")
                    else f" and {_num(headroom.accelerators)} accelerators"
                )
                return (
                    f"The closest {name} has {_num(max(headroom.tpp, 0))} TPP{count} of headroom left; "
                    f"this needs {_num(demand.tpp)} TPP and {_num(demand.accelerators)} accelerators. "
                    "Reduce replicas or accelerators, free capacity, or request a higher cap."
                )


def _models(uses: Iterable[AcceleratorUse]) -> str:
    return ", ".join(sorted({u.profile for u in uses}))
