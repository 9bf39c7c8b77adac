"""The regulator's remote-user list, computed from a ``ClusterState`` (pure, like the decision).

Every tenant whose own or parent jurisdiction is in the list, with its jurisdictions, KYC
status, licenses and the controlled accelerators it uses now. "Controlled" is the decision's
definition (in a controlled band, or covered by a bandwidth control for that tenant), and "uses
now" counts the pods that license consumption counts (not ``Succeeded`` or ``Failed``) that are
in a namespace the tenant claims or carry one of its licenses.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from computegate.engine.bandwidth import OWN, PARENT
from computegate.engine.decide import with_bandwidth_controls
from computegate.engine.footprint import pod_uses
from computegate.engine.state import TERMINAL_PHASES, ClusterState
from computegate.models.kube import Pod
from computegate.models.resources import Tenant
from computegate.vocabulary import LICENSE_ANNOTATION


@dataclass(frozen=True)
class ModelUse:
    """What one tenant uses now of one controlled accelerator model."""

    profile: str
    model: str
    accelerators: float  # a MIG slice counts as its share of a chip
    tpp: float
    pods: int


@dataclass(frozen=True)
class RemoteUser:
    tenant: str
    display_name: str | None
    jurisdiction: str
    parent_jurisdiction: str | None
    listed_for: tuple[tuple[str, str], ...]  # (country, OWN | PARENT) that put it on the list
    kyc_status: str
    kyc_verified_at: datetime | None
    namespaces: tuple[str, ...]
    licenses: tuple[str, ...]
    uses: tuple[ModelUse, ...]  # by profile name

    @property
    def controlled_accelerators(self) -> float:
        return sum(use.accelerators for use in self.uses)

    @property
    def controlled_tpp(self) -> float:
        return sum(use.tpp for use in self.uses)


def remote_users(state: ClusterState, jurisdictions: Iterable[str]) -> list[RemoteUser]:
    """The tenants whose own or parent jurisdiction is in ``jurisdictions``, by tenant name."""
    listed = frozenset(jurisdictions)
    rows = []
    for name in sorted(state.tenants):
        tenant = state.tenants[name]
        spec = tenant.spec
        reasons = tuple(
            (country, whose)
            for country, whose in ((spec.jurisdiction, OWN), (spec.parent_jurisdiction, PARENT))
            if country is not None and country in listed
        )
        if not reasons:
            continue
        licenses = tuple(lic.metadata.name for lic in state.licenses_of(name))
        rows.append(
            RemoteUser(
                tenant=name,
                display_name=spec.display_name,
                jurisdiction=spec.jurisdiction,
                parent_jurisdiction=spec.parent_jurisdiction,
                listed_for=reasons,
                kyc_status=spec.kyc.status.value,
                kyc_verified_at=spec.kyc.verified_at,
                namespaces=tuple(sorted(_namespaces_of(state, name))),
                licenses=licenses,
                uses=_controlled_uses(state, tenant, frozenset(licenses)),
            )
        )
    return rows


def _namespaces_of(state: ClusterState, tenant: str) -> set[str]:
    """The namespaces the tenant claims (by its list or their label), conflicts included."""
    candidates = set(state.namespaces) | set(state.tenants[tenant].spec.namespaces)
    return {namespace for namespace in candidates if tenant in state.tenants_claiming(namespace)}


def _controlled_uses(state: ClusterState, tenant: Tenant, licenses: frozenset[str]) -> tuple[ModelUse, ...]:
    namespaces = _namespaces_of(state, tenant.metadata.name)
    totals: dict[str, ModelUse] = {}
    for (namespace, _), pod in sorted(state.pods.items()):
        if not _counts(pod, namespace, namespaces, licenses):
            continue
        uses = tuple(
            pod_uses(state, pod.spec, namespace, tenant=tenant, annotations=pod.metadata.annotations)
        )
        controlled = with_bandwidth_controls(state, uses, tenant).controlled
        for profile in {use.profile for use in controlled}:
            mine = [use for use in controlled if use.profile == profile]
            before = totals.get(profile, ModelUse(profile, mine[0].model, 0.0, 0.0, 0))
            totals[profile] = ModelUse(
                profile=profile,
                model=before.model,
                accelerators=before.accelerators + sum(use.count for use in mine),
                tpp=before.tpp + sum(use.tpp for use in mine),
                pods=before.pods + 1,
            )
    return tuple(totals[name] for name in sorted(totals))


def _counts(pod: Pod, namespace: str, namespaces: set[str], licenses: frozenset[str]) -> bool:
    if pod.status.phase in TERMINAL_PHASES:
        return False
    return namespace in namespaces or pod.metadata.annotations.get(LICENSE_ANNOTATION) in licenses
