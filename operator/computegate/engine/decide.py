"""DESIGN.md step 4: the verdict, first match wins; and step 6, judging an UPDATE."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from computegate.engine import consumption
from computegate.engine.asks import device_access
from computegate.engine.bandwidth import Coverage, coverages
from computegate.engine.footprint import pod_annotations, pod_uses, workload_pods
from computegate.engine.indexes import Usage
from computegate.engine.messages import Messages
from computegate.engine.policy import RuleMatch, stricter
from computegate.engine.state import ClusterState
from computegate.engine.verdict import AcceleratorUse, Code, Verdict
from computegate.models.kube import Pod, Workload
from computegate.models.resources import (
    Action,
    DeviceAccessAction,
    Enforcement,
    ExportLicense,
    KycStatus,
    Tenant,
    UnknownAcceleratorAction,
    UnknownTenantAction,
)
from computegate.vocabulary import LICENSE_ANNOTATION

# The closest failure wins: a license that only lacks headroom is nearer to admitting the
# workload than one that does not cover its model, and so on down to one not valid yet.
_LICENSE_FAILURE_ORDER = (
    Code.LICENSE_CAP_EXCEEDED,
    Code.LICENSE_SCOPE,
    Code.LICENSE_REVOKED,
    Code.LICENSE_EXPIRED,
    Code.LICENSE_NOT_YET_VALID,
)


@dataclass(frozen=True)
class Footprint:
    """The accelerators a workload asks for, with the sums a decision reads several times."""

    uses: tuple[AcceleratorUse, ...]
    accelerators: float
    controlled: tuple[AcceleratorUse, ...]
    controlled_usage: Usage
    resolved: bool
    coverage: tuple[Coverage, ...]  # the bandwidth controls that cover its models for the tenant
    device_access: tuple[str, ...] = ()  # how its containers reach devices without a request

    @classmethod
    def of(
        cls,
        uses: tuple[AcceleratorUse, ...],
        coverage: tuple[Coverage, ...] = (),
        device_access: tuple[str, ...] = (),
    ) -> Footprint:
        controlled = tuple(use for use in uses if use.controlled)
        return cls(
            uses=uses,
            accelerators=sum(use.count for use in uses),
            controlled=controlled,
            controlled_usage=Usage(sum(u.tpp for u in controlled), sum(u.count for u in controlled)),
            resolved=all(use.resolved for use in uses),
            coverage=coverage,
            device_access=device_access,
        )


def footprint(state: ClusterState, workload: Workload) -> Footprint:
    """The workload's accelerators; those outside the controlled bands that a bandwidth control
    covers for the namespace's tenant are marked controlled (DESIGN.md step 5)."""
    namespace = workload.metadata.namespace or ""
    tenant = state.tenant_for_namespace(namespace).tenant
    annotations = pod_annotations(workload)
    uses: list[AcceleratorUse] = []
    access: list[str] = []
    for spec, count in workload_pods(state, workload):
        if count > 0:
            uses.extend(pod_uses(state, spec, namespace, count, tenant=tenant, annotations=annotations))
            if state.policy.device_access is not DeviceAccessAction.ALLOW:
                access.extend(reason for reason in device_access(spec, annotations) if reason not in access)
    if tenant is None or not state.policy.bandwidth_controls:
        return Footprint.of(tuple(uses), device_access=tuple(access))
    return with_bandwidth_controls(state, tuple(uses), tenant, tuple(access))


def with_bandwidth_controls(
    state: ClusterState, uses: tuple[AcceleratorUse, ...], tenant: Tenant, device_access: tuple[str, ...] = ()
) -> Footprint:
    """The uses with those a bandwidth control covers for the tenant marked controlled."""
    found: dict[str, tuple[Coverage, ...]] = {}
    for use in uses:
        if not use.controlled and use.profile not in found:
            spec = state.profiles.by_name[use.profile].spec
            found[use.profile] = coverages(state.policy, use.profile, spec, tenant.spec)
    marked = tuple(
        use.model_copy(update={"controlled": True, "bandwidth_control": found[use.profile][0].control.name})
        if not use.controlled and found[use.profile]
        else use
        for use in uses
    )
    return Footprint.of(marked, tuple(c for covering in found.values() for c in covering), device_access)


def decide(
    state: ClusterState, workload: Workload, *, at: datetime, prefer_license: str | None = None
) -> Verdict:
    """Judge a CREATE: may this workload run, for this tenant, on this hardware, under a license?

    ``prefer_license``: when that license admits the workload it is the one chosen (the
    validating webhook keeps the license the mutating webhook stamped, DESIGN.md step 7).
    """
    return _judge(state, workload, footprint(state, workload), demand=None, at=at, prefer=prefer_license)


def decide_update(state: ClusterState, old: Workload, new: Workload, *, at: datetime) -> Verdict:
    """Judge an UPDATE (DESIGN.md step 6).

    A pod's resources are immutable, so a pod UPDATE is never denied for accounting; a
    controller UPDATE is judged on the growth of its footprint only.
    """
    new_footprint = footprint(state, new)
    if isinstance(new, Pod):
        return _admit_unchanged(_judge(state, new, new_footprint, demand=Usage(0, 0), at=at), "pod")
    growth = new_footprint.controlled_usage - footprint(state, old).controlled_usage
    grows = growth.tpp > 0 or growth.accelerators > 0
    demand = Usage(max(growth.tpp, 0.0), max(growth.accelerators, 0.0))
    verdict = _judge(state, new, new_footprint, demand=demand, at=at)
    return verdict if grows else _admit_unchanged(verdict, "controller")


def _admit_unchanged(verdict: Verdict, what: str) -> Verdict:
    if verdict.allowed:
        return verdict
    reason = (
        "a pod's resources cannot change, so an update is not judged on accounting"
        if what == "pod"
        else "the update does not grow the workload's controlled footprint"
    )
    return verdict.model_copy(
        update={"allowed": True, "warnings": (*verdict.warnings, f"{verdict.message} (admitted: {reason})")}
    )


def _judge(
    state: ClusterState,
    workload: Workload,
    fp: Footprint,
    *,
    demand: Usage | None,
    at: datetime,
    prefer: str | None = None,
) -> Verdict:
    verdict = _first_match(
        state, workload, fp, demand if demand is not None else fp.controlled_usage, at, prefer
    )
    return _enforced(state, verdict)


def _enforced(state: ClusterState, verdict: Verdict) -> Verdict:
    """A would-be denial is admitted when the tenant's enforcement (its override, else the
    cluster's) is Audit."""
    if verdict.allowed or state.policy.enforcement_for(verdict.tenant) is not Enforcement.AUDIT:
        return verdict
    return verdict.model_copy(
        update={"allowed": True, "audit": True, "warnings": (f"Audit mode, would deny: {verdict.message}",)}
    )


def judge_running(state: ClusterState, pod: Pod, *, at: datetime) -> Verdict:
    """Judge a pod that is already running, as if it were created now (DESIGN.md "After
    admission"), without its caps: a running pod's own use is already in what its license has
    consumed, so the caller (``computegate.engine.compliance``) checks caps over all the running
    pods at once, oldest first. A pod stamped with a license is judged under that license only
    (its use stays counted there); one stamped with none is judged against all of its tenant's.
    """
    stamped = pod.metadata.annotations.get(LICENSE_ANNOTATION)
    only = stamped if stamped and stamped in state.licenses else None
    fp = footprint(state, pod)
    return _enforced(
        state, _first_match(state, pod, fp, fp.controlled_usage, at, only, only=only, caps=False)
    )


def _first_match(
    state: ClusterState,
    workload: Workload,
    fp: Footprint,
    demand: Usage,
    at: datetime,
    prefer: str | None,
    *,
    only: str | None = None,
    caps: bool = True,
) -> Verdict:
    policy = state.policy
    namespace = workload.metadata.namespace or ""
    say = Messages(workload, fp.uses, fp.coverage)
    numbers = {
        "accelerators": fp.accelerators,
        "tpp": sum(u.tpp for u in fp.uses) if fp.uses and fp.resolved else None,
        "controlled_tpp": fp.controlled_usage.tpp,
        "controlled_accelerators": fp.controlled_usage.accelerators,
        "uses": fp.uses,
    }

    who: dict[str, object] = {}

    def verdict(
        code: Code, message: str, *, allowed: bool | None = None, license: str | None = None
    ) -> Verdict:
        admitted = code.admits if allowed is None else allowed
        fields = {
            "code": code,
            "allowed": admitted,
            "message": f"[{code.value}] {message}",
            "license": license,
        }
        return Verdict.model_validate({**fields, **numbers, **who})

    if not fp.uses and not fp.device_access:
        return verdict(Code.NO_ACCELERATOR, say.no_accelerator())
    if namespace in policy.exempt_namespaces:
        return verdict(Code.EXEMPT, say.exempt(namespace))
    if fp.device_access and policy.device_access is DeviceAccessAction.DENY:
        return verdict(Code.DEVICE_ACCESS_WITHOUT_REQUEST, say.device_access(fp.device_access))
    if not fp.uses:
        return verdict(Code.NO_ACCELERATOR, say.no_accelerator())
    lookup = state.tenant_for_namespace(namespace)
    if lookup.tenant is None:
        allow = policy.unknown_tenant is UnknownTenantAction.ALLOW
        return verdict(Code.UNKNOWN_TENANT, say.unknown_tenant(namespace, lookup, allow), allowed=allow)
    tenant = lookup.tenant
    who["tenant"] = tenant.metadata.name
    if not fp.resolved and policy.unknown_accelerator is UnknownAcceleratorAction.DENY:
        return verdict(Code.UNKNOWN_ACCELERATOR, say.unknown_accelerator())
    if not fp.controlled:
        return verdict(
            Code.NOT_CONTROLLED, say.not_controlled(policy.controlled_bands, bool(policy.bandwidth_controls))
        )
    if policy.require_kyc and tenant.spec.kyc.status is not KycStatus.VERIFIED:
        return verdict(Code.KYC_INCOMPLETE, say.kyc_incomplete(tenant))

    own = _at_least_licensed(policy.action_for(tenant.spec.jurisdiction), tenant.spec.jurisdiction, fp)
    parent = (
        _at_least_licensed(
            policy.action_for(tenant.spec.parent_jurisdiction), tenant.spec.parent_jurisdiction, fp
        )
        if tenant.spec.parent_jurisdiction
        else None
    )
    from_parent = parent is not None and stricter(parent.action, own.action) != own.action
    effective = parent if from_parent and parent is not None else own
    country = tenant.spec.parent_jurisdiction if from_parent else tenant.spec.jurisdiction
    who.update(jurisdiction=country, jurisdiction_source="parent" if from_parent else "own")
    where = say.jurisdiction(tenant, country or "", from_parent, effective)
    if effective.action is Action.ALLOW:
        return verdict(Code.JURISDICTION_ALLOWED, where)
    if effective.action is Action.PROHIBIT:
        return verdict(Code.PROHIBITED, say.prohibited(where))

    licenses = state.licenses_of(tenant.metadata.name)
    if only is not None:
        licenses = [lic for lic in licenses if lic.metadata.name == only]
    if not licenses:
        return verdict(Code.NO_LICENSE, say.no_license(where, demand))
    # The usable license that expires first, then by name: check in that order, stop at the first.
    failures: list[tuple[Code, ExportLicense]] = []
    order = sorted(
        licenses, key=lambda lic: (lic.metadata.name != prefer, lic.spec.valid_until, lic.metadata.name)
    )
    for lic in order:
        failure = _license_failure(state, lic, fp, demand if caps else None, at)
        if failure is None:
            headroom = _headroom(state, lic)
            return verdict(
                Code.LICENSED, say.licensed(where, lic, demand, headroom), license=lic.metadata.name
            )
        failures.append((failure, lic))
    code, closest = min(
        failures,
        key=lambda pair: (_LICENSE_FAILURE_ORDER.index(pair[0]), pair[1].metadata.name),
    )
    detail = say.license_failure(code, closest, demand, _headroom(state, closest))
    return verdict(code, f"{where} {detail}", license=closest.metadata.name)


def _at_least_licensed(match: RuleMatch, country: str, fp: Footprint) -> RuleMatch:
    """DESIGN.md step 7: a country that a control covering the workload names needs a license at
    least, whatever the rules say (a rule's Prohibit or RequireLicense stands as it is)."""
    if match.action is not Action.ALLOW:
        return match
    for coverage in fp.coverage:
        if any(named == country for named, _ in coverage.countries):
            return RuleMatch(Action.REQUIRE_LICENSE, match.rule_index, match.via, coverage.control.name)
    return match


def _headroom(state: ClusterState, lic: ExportLicense) -> Usage:
    used = consumption.committed(state, lic.metadata.name)
    max_count = lic.spec.max_accelerators
    return Usage(
        lic.spec.max_tpp - used.tpp, float("inf") if max_count is None else max_count - used.accelerators
    )


def _license_failure(
    state: ClusterState, lic: ExportLicense, fp: Footprint, demand: Usage | None, at: datetime
) -> Code | None:
    """The license's first failing check; ``demand`` None: the cap is not checked."""
    spec = lic.spec
    if spec.revoked:
        return Code.LICENSE_REVOKED
    if at >= spec.valid_until:
        return Code.LICENSE_EXPIRED
    if at < spec.valid_from:
        return Code.LICENSE_NOT_YET_VALID
    if spec.accelerators and not all(
        not state.profiles.by_name[use.profile].covered_by.isdisjoint(spec.accelerators)
        for use in fp.controlled
    ):
        return Code.LICENSE_SCOPE
    if demand is None:
        return None
    headroom = _headroom(state, lic)
    # A tiny tolerance: fractional MIG shares must not fail a cap they exactly meet.
    if demand.tpp > headroom.tpp + 1e-9 or demand.accelerators > headroom.accelerators + 1e-9:
        return Code.LICENSE_CAP_EXCEEDED
    return None
