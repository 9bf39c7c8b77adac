"""What a license has consumed (DESIGN.md steps 5 and 7): the live pods stamped with it, and
what its ledger has committed. Between the footprint (what one pod uses) and the decision.

The per-pod figures are kept in ``ClusterState.consumption_index`` and counted again only for
pods that changed; the state invalidates them when what they depend on changes (profiles,
nodes, the policy, tenants, namespaces' tenants).
"""

from __future__ import annotations

from collections.abc import Mapping

from computegate.engine.bandwidth import coverages, may_be_covered
from computegate.engine.footprint import pod_uses
from computegate.engine.indexes import BAND_CONTROLLED, NO_USAGE, LicensedPod, Usage, UsageBreakdown
from computegate.engine.state import TERMINAL_PHASES, ClusterState
from computegate.models.kube import PodSpec
from computegate.models.resources import Tenant
from computegate.vocabulary import LICENSE_ANNOTATION

__all__ = ["committed", "live", "usage_by_coverage"]


def usage_by_coverage(
    state: ClusterState,
    spec: PodSpec,
    namespace: str,
    *,
    tenant: Tenant | None = None,
    annotations: Mapping[str, str] = {},
) -> UsageBreakdown:
    """A pod's use as license consumption needs it, before any license's tenant is known.

    Key ``BAND_CONTROLLED``: accelerators in a controlled band. Key a profile name: accelerators
    outside the bands that a bandwidth control may cover; whether one does depends on the
    license's tenant, so ``live`` decides when it sums.
    """
    breakdown: UsageBreakdown = {}
    for use in pod_uses(state, spec, namespace, tenant=tenant, annotations=annotations):
        if use.controlled:
            key = BAND_CONTROLLED
        elif may_be_covered(state.profiles.by_name[use.profile].spec):
            key = use.profile
        else:
            continue
        breakdown[key] = breakdown.get(key, NO_USAGE) + Usage(use.tpp, use.count)
    return breakdown


def _count(state: ClusterState) -> None:
    index = state.consumption_index
    if index.pods is None:
        index.pods = {}
        index.by_license.clear()
        keys = set(state.pods)
    else:
        keys = set(index.uncounted)
    index.uncounted.clear()
    for key in keys:
        pod = state.pods.get(key)
        if pod is None:
            continue
        license_name = pod.metadata.annotations.get(LICENSE_ANNOTATION)
        if not license_name or pod.status.phase in TERMINAL_PHASES:
            continue
        # The model of an unbound pod is chosen for its namespace's tenant, as in the decision.
        tenant = state.tenant_for_namespace(key[0]).tenant
        usage = usage_by_coverage(
            state, pod.spec, key[0], tenant=tenant, annotations=pod.metadata.annotations
        )
        index.add(key, LicensedPod(license_name, key[0], usage))


def live(state: ClusterState, license_name: str) -> Usage:
    """Controlled TPP and accelerators of the live pods stamped with the license.

    Only the license's tenant's pods count: a pod in a namespace that tenant does not claim
    cannot use up its cap. A namespace in conflict still counts for each claimant, which errs
    on the safe side. "Controlled" is the decision's definition: in a controlled band, or
    covered by a bandwidth control for the license's tenant.
    """
    _count(state)
    used = NO_USAGE
    by_namespace = state.consumption_index.by_license.get(license_name)
    if not by_namespace:
        return used
    lic = state.licenses.get(license_name)
    tenant = state.tenants.get(lic.spec.tenant) if lic is not None else None
    covered: dict[str, bool] = {}
    for namespace, breakdown in by_namespace.items():
        if lic is not None and not state.tenant_claims_namespace(lic.spec.tenant, namespace):
            continue
        for key, usage in breakdown.items():
            if key not in covered:
                covered[key] = key == BAND_CONTROLLED or _covered_for(state, key, tenant)
            if covered[key]:
                used = used + usage
    return used


def _covered_for(state: ClusterState, profile: str, tenant: Tenant | None) -> bool:
    resolved = state.profiles.by_name.get(profile)
    if tenant is None or resolved is None:
        return False
    return bool(coverages(state.policy, profile, resolved.spec, tenant.spec))


def committed(state: ClusterState, license_name: str) -> Usage:
    """What the license has committed, as a decision reads it: the larger, figure by figure, of
    its ledger (what every replica's admissions have reserved, DESIGN.md step 7) and the live
    pods this view sees, so neither a view that lags the ledger nor a ledger not yet written
    shows more headroom than there is."""
    seen = live(state, license_name)
    ledger = state.ledgers.get(license_name)
    if ledger is None:
        return seen
    return Usage(
        max(seen.tpp, float(ledger.committed_tpp)),
        max(seen.accelerators, float(ledger.committed_accelerators)),
    )
