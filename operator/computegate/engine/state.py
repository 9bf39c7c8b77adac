"""An in-memory, indexed snapshot of the cluster state a decision reads.

Adapters keep it current (the webhook from watch events, the evaluator from files) through
``upsert`` and ``remove``. Everything a decision looks up is a dict access, so its cost does
not grow with the number of tenants, licenses, nodes or pods; derived views (profile and
policy indexes, license consumption) are rebuilt only when their inputs change.
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from dataclasses import dataclass, field, replace

from computegate.engine.indexes import SELECTION_CACHE_BYTES, BoundedCache, ConsumptionIndex, ProfileIndex
from computegate.engine.ledger import Ledger
from computegate.engine.policy import EffectivePolicy
from computegate.models.kube import (
    Container,
    DeviceClass,
    Namespace,
    Node,
    Pod,
    ResourceClaim,
    ResourceClaimTemplate,
)
from computegate.models.resources import (
    AcceleratorProfile,
    AcceleratorProfileSpec,
    BandwidthControl,
    CompliancePolicy,
    ExportLicense,
    PolicyRule,
    Tenant,
)
from computegate.vocabulary import TENANT_LABEL

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})

StateObject = (
    Tenant
    | ExportLicense
    | CompliancePolicy
    | AcceleratorProfile
    | Namespace
    | Node
    | Pod
    | ResourceClaim
    | ResourceClaimTemplate
    | DeviceClass
)


@dataclass(frozen=True)
class Catalog:
    """What ships with the package: built-in profiles, country groups, default rules and
    bandwidth controls (a policy's ``bandwidthControls`` replaces the last)."""

    profiles: dict[str, AcceleratorProfileSpec]
    country_groups: dict[str, frozenset[str]]
    rules: tuple[PolicyRule, ...]
    bandwidth_controls: tuple[BandwidthControl, ...] = ()

    def __post_init__(self) -> None:
        # With no profile at all an accelerator could be neither resolved nor assumed, and a
        # workload asking for one would pass as NoAccelerator: refuse such a catalog outright.
        if not self.profiles:
            raise ValueError("the accelerator catalog has no profiles")


@dataclass(frozen=True)
class TenantLookup:
    tenant: Tenant | None
    claimants: int  # how many tenants claim the namespace (list or label); >1 is a conflict
    missing_label_target: str | None = None  # the label names a tenant that does not exist


@dataclass
class ClusterState:
    catalog: Catalog
    tenants: dict[str, Tenant] = field(default_factory=dict)
    licenses: dict[str, ExportLicense] = field(default_factory=dict)
    namespaces: dict[str, Namespace] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)
    pods: dict[tuple[str, str], Pod] = field(default_factory=dict)
    claims: dict[tuple[str, str], ResourceClaim] = field(default_factory=dict)
    claim_templates: dict[tuple[str, str], ResourceClaimTemplate] = field(default_factory=dict)
    device_classes: dict[str, DeviceClass] = field(default_factory=dict)
    cluster_profiles: dict[str, AcceleratorProfileSpec] = field(default_factory=dict)
    policy_object: CompliancePolicy | None = None
    ledgers: dict[str, Ledger] = field(default_factory=dict)  # license → its status.ledger

    _licenses_by_tenant: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    _tenants_by_listed_namespace: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    _profiles: ProfileIndex | None = None
    _policy: EffectivePolicy | None = None
    _shared_containers: weakref.WeakValueDictionary[str, Container] = field(
        default_factory=weakref.WeakValueDictionary
    )
    consumption_index: ConsumptionIndex = field(default_factory=ConsumptionIndex)
    selection_cache: BoundedCache = field(default_factory=lambda: BoundedCache(SELECTION_CACHE_BYTES))

    # ----- derived views -----

    @property
    def profiles(self) -> ProfileIndex:
        if self._profiles is None:
            self._profiles = ProfileIndex.build(self.catalog.profiles, self.cluster_profiles)
        return self._profiles

    @property
    def policy(self) -> EffectivePolicy:
        if self._policy is None:
            spec = self.policy_object.spec if self.policy_object else None
            self._policy = EffectivePolicy.build(
                spec, self.catalog.country_groups, self.catalog.rules, self.catalog.bandwidth_controls
            )
        return self._policy

    def licenses_of(self, tenant: str) -> list[ExportLicense]:
        return [self.licenses[name] for name in sorted(self._licenses_by_tenant.get(tenant, ()))]

    def tenants_claiming(self, namespace: str) -> set[str]:
        """Names of the tenants that claim the namespace, by spec.namespaces or by its label."""
        names = set(self._tenants_by_listed_namespace.get(namespace, ()))
        ns = self.namespaces.get(namespace)
        if ns is not None and TENANT_LABEL in ns.metadata.labels:
            names.add(ns.metadata.labels[TENANT_LABEL])
        return names

    def tenants_listing(self, namespace: str) -> set[str]:
        """Names of the tenants whose spec.namespaces lists the namespace (existing or not)."""
        return set(self._tenants_by_listed_namespace.get(namespace, ()))

    def tenant_for_namespace(self, namespace: str) -> TenantLookup:
        names = self.tenants_claiming(namespace)
        if len(names) != 1:
            return TenantLookup(None, len(names))
        (name,) = names
        tenant = self.tenants.get(name)
        return TenantLookup(tenant, 1, None if tenant else name)

    def known_pod_uids(self) -> set[str]:
        """The uids of the pods this view knows, whatever their phase (the reconciler's "seen")."""
        return {pod.metadata.uid for pod in self.pods.values() if pod.metadata.uid}

    def tenant_claims_namespace(self, tenant: str, namespace: str) -> bool:
        """Whether the tenant claims the namespace, by its list or by the namespace's label."""
        if tenant in self._tenants_by_listed_namespace.get(namespace, ()):
            return True
        ns = self.namespaces.get(namespace)
        return ns is not None and ns.metadata.labels.get(TENANT_LABEL) == tenant

    # ----- a view for judging a claim before it is stored -----

    def with_claim(self, claim: ResourceClaim | ResourceClaimTemplate) -> ClusterState:
        """This state as it would be with ``claim`` added (or replacing the one of its name), for
        judging a claim or claim template before it is stored; this state is not written.

        The view shares this state's objects, indexes and caches, none of which depends on the
        claim, except the claims (or the templates) and, where pods name the claim and what it
        asks for changes, the consumption index: a copy, in which those pods are counted again
        with the new claim, as ``upsert`` would count them. It serves one decision; nothing is
        upserted into it.
        """
        key = (claim.metadata.namespace or "", claim.metadata.name)
        template = isinstance(claim, ResourceClaimTemplate)
        before: ResourceClaim | ResourceClaimTemplate | None
        if isinstance(claim, ResourceClaimTemplate):
            before = self.claim_templates.get(key)
            view = replace(self, claim_templates={**self.claim_templates, key: claim})
        else:
            before = self.claims.get(key)
            view = replace(self, claims={**self.claims, key: claim})
        naming = (
            self._pods_naming(key, template=template) if before is None or before.spec != claim.spec else []
        )
        if naming:
            view.consumption_index = self.consumption_index.copy()
            for pod_key in naming:
                view.consumption_index.recount(pod_key)
        return view

    # ----- mutation -----

    def upsert(self, obj: StateObject) -> None:
        match obj:
            case Tenant():
                old_tenant = self.tenants.get(obj.metadata.name)
                self._drop_tenant(obj.metadata.name)
                self.tenants[obj.metadata.name] = obj
                if old_tenant is None or old_tenant.spec != obj.spec:
                    self._invalidate_consumption()  # which model an unbound pod counts as may change
                for namespace in obj.spec.namespaces:
                    self._tenants_by_listed_namespace[namespace].add(obj.metadata.name)
            case ExportLicense():
                self._drop_license(obj.metadata.name)
                self.licenses[obj.metadata.name] = obj
                self._licenses_by_tenant[obj.spec.tenant].add(obj.metadata.name)
                ledger = Ledger.from_status(obj.status)
                if ledger is not None:
                    self.ledgers[obj.metadata.name] = ledger
            case CompliancePolicy():
                self.policy_object = obj
                self._policy = None
                self._invalidate_consumption()
            case AcceleratorProfile():
                self.cluster_profiles[obj.metadata.name] = obj.spec
                self._hardware_changed()
            case Namespace():
                before = self.namespaces.get(obj.metadata.name)
                self.namespaces[obj.metadata.name] = obj
                if (before.metadata.labels if before else {}).get(TENANT_LABEL) != obj.metadata.labels.get(
                    TENANT_LABEL
                ):
                    self._invalidate_consumption()  # its pods' tenant changed
            case Node():
                previous = self.nodes.get(obj.metadata.name)
                self.nodes[obj.metadata.name] = obj
                if (
                    previous is None
                    or previous.metadata.labels != obj.metadata.labels
                    or (previous.status.capacity != obj.status.capacity)
                ):
                    self._hardware_changed()
            case Pod():
                key = (obj.metadata.namespace or "", obj.metadata.name)
                self.pods[key] = self._sharing_containers(obj)
                self.consumption_index.recount(key)
            case ResourceClaim():
                key = (obj.metadata.namespace or "", obj.metadata.name)
                before_claim = self.claims.get(key)
                self.claims[key] = obj
                if before_claim is None or before_claim.spec != obj.spec:
                    self._claim_changed(key, template=False)
            case ResourceClaimTemplate():
                key = (obj.metadata.namespace or "", obj.metadata.name)
                before_template = self.claim_templates.get(key)
                self.claim_templates[key] = obj
                if before_template is None or before_template.spec != obj.spec:
                    self._claim_changed(key, template=True)
            case DeviceClass():
                self.device_classes[obj.metadata.name] = obj

    def _sharing_containers(self, pod: Pod) -> Pod:
        """``pod`` holding the one kept copy of each container equal to its own: the replicas of
        a template have equal containers, and models are frozen. The key is the model's repr,
        which keeps quantities exact (its JSON rounds them to thousandths). A third of a kept pod's memory
        was its containers (docs/benchmarks.md, "Lean state")."""
        spec = pod.spec
        shared = {
            part: [self._shared_containers.setdefault(repr(c), c) for c in getattr(spec, part)]
            for part in ("containers", "init_containers", "ephemeral_containers")
        }
        return pod.model_copy(update={"spec": spec.model_copy(update=shared)})

    def remove(self, kind: str, name: str, namespace: str | None = None) -> None:
        key = (namespace or "", name)
        match kind:
            case "Tenant":
                self._drop_tenant(name)
                self._invalidate_consumption()
            case "ExportLicense":
                self._drop_license(name)
            case "CompliancePolicy":
                self.policy_object = None
                self._policy = None
                self._invalidate_consumption()
            case "AcceleratorProfile":
                if self.cluster_profiles.pop(name, None) is not None:
                    self._hardware_changed()
            case "Namespace":
                if self.namespaces.pop(name, None) is not None:
                    self._invalidate_consumption()
            case "Node":
                if self.nodes.pop(name, None) is not None:
                    self._hardware_changed()
            case "Pod":
                self.consumption_index.forget(key)
                self.pods.pop(key, None)
            case "ResourceClaim":
                if self.claims.pop(key, None) is not None:
                    self._claim_changed(key, template=False)
            case "ResourceClaimTemplate":
                if self.claim_templates.pop(key, None) is not None:
                    self._claim_changed(key, template=True)
            case "DeviceClass":
                self.device_classes.pop(name, None)

    def _drop_tenant(self, name: str) -> None:
        old = self.tenants.pop(name, None)
        if old is not None:
            for namespace in old.spec.namespaces:
                self._tenants_by_listed_namespace[namespace].discard(name)

    def _drop_license(self, name: str) -> None:
        self.ledgers.pop(name, None)
        old = self.licenses.pop(name, None)
        if old is not None:
            self._licenses_by_tenant[old.spec.tenant].discard(name)

    def _claim_changed(self, key: tuple[str, str], *, template: bool) -> None:
        """A claim (or template) appeared, changed or went: the pods that name it are counted again."""
        for pod_key in self._pods_naming(key, template=template):
            self.consumption_index.recount(pod_key)

    def _pods_naming(self, key: tuple[str, str], *, template: bool) -> list[tuple[str, str]]:
        namespace, name = key
        return [
            pod_key
            for pod_key, pod in self.pods.items()
            if pod_key[0] == namespace
            and any(
                (ref.resource_claim_template_name if template else ref.resource_claim_name) == name
                for ref in pod.spec.resource_claims
            )
        ]

    def _hardware_changed(self) -> None:
        self._profiles = None
        self.selection_cache.clear()
        self._invalidate_consumption()

    def _invalidate_consumption(self) -> None:
        self.consumption_index.reset()
