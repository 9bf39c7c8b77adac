"""An in-memory, indexed snapshot of the cluster state a decision reads.

Adapters keep it current (the webhook from watch events, the evaluator from files) through
``upsert`` and ``remove``. Everything a decision looks up is a dict access, so its cost does
not grow with the number of tenants, licenses, nodes or pods; derived views (profile and
policy indexes, license consumption) are rebuilt only when their inputs change.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

from computegate.engine.bands import eccn_band
from computegate.engine.ledger import Ledger
from computegate.engine.policy import EffectivePolicy
from computegate.models.kube import (
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
from computegate.vocabulary import TENANT_LABEL, Band

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})

# GPU Feature Discovery appends these to gpu.product for time-slicing and MIG single strategy.
_GFD_SUFFIX = re.compile(r"-(SHARED|MIG-[0-9A-Za-z.+-]*)$")

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
class Usage:
    tpp: float
    accelerators: float

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.tpp + other.tpp, self.accelerators + other.accelerators)

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.tpp - other.tpp, self.accelerators - other.accelerators)


NO_USAGE = Usage(0.0, 0.0)

# A pod's (or a namespace's) licensed use split by why it may be controlled: key BAND_CONTROLLED
# for the accelerators in a controlled band, a profile name for those a bandwidth control may
# cover (decided per license's tenant when consumption is summed).
UsageBreakdown = dict[str, Usage]
BAND_CONTROLLED = ""


def _add_breakdown(total: UsageBreakdown, part: UsageBreakdown, sign: int = 1) -> None:
    for key, usage in part.items():
        before = total.get(key, NO_USAGE)
        total[key] = before + usage if sign > 0 else before - usage


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
class ResolvedProfile:
    name: str
    spec: AcceleratorProfileSpec
    band: Band | None
    covered_by: frozenset[str]  # names a license may list to cover it: its own and those it shadows


def normalize_product_label(value: str) -> str:
    # GFD appends -MIG-<profile> and then -SHARED; strip them in whatever order they come.
    while True:
        stripped = _GFD_SUFFIX.sub("", value)
        if stripped == value:
            return value
        value = stripped


@dataclass
class ProfileIndex:
    by_name: dict[str, ResolvedProfile]
    by_label: dict[tuple[str, str], ResolvedProfile]
    by_resource: dict[str, list[ResolvedProfile]]
    by_device_class: dict[str, list[ResolvedProfile]]
    label_keys: frozenset[str]
    most_capable: ResolvedProfile | None
    accelerator_resources: dict[str, bool] = field(default_factory=dict)  # memo of resource names

    @classmethod
    def build(
        cls, builtin: dict[str, AcceleratorProfileSpec], cluster: dict[str, AcceleratorProfileSpec]
    ) -> ProfileIndex:
        specs = {**builtin, **cluster}  # a cluster profile with a built-in's name replaces it
        shadowed: dict[str, set[str]] = defaultdict(set)
        label_owner: dict[tuple[str, str], str] = {}
        # Built-ins first, then cluster profiles, so a cluster profile wins a shared label value.
        for name in [*(n for n in specs if n not in cluster), *cluster]:
            for key, values in specs[name].product_labels.items():
                for value in values:
                    previous = label_owner.get((key, value))
                    if previous is not None and previous != name:
                        shadowed[name].add(previous)
                    label_owner[(key, value)] = name
        resolved = {
            name: ResolvedProfile(
                name=name,
                spec=spec,
                band=eccn_band(spec.tpp, spec.performance_density, spec.datacenter),
                covered_by=frozenset({name, *shadowed[name]}),
            )
            for name, spec in specs.items()
        }
        by_resource: dict[str, list[ResolvedProfile]] = defaultdict(list)
        by_device_class: dict[str, list[ResolvedProfile]] = defaultdict(list)
        for profile in resolved.values():
            for resource in profile.spec.resource_names:
                by_resource[resource].append(profile)
            for device_class in profile.spec.device_class_names:
                by_device_class[device_class].append(profile)
        return cls(
            by_name=resolved,
            by_label={label: resolved[name] for label, name in label_owner.items()},
            by_resource=dict(by_resource),
            by_device_class=dict(by_device_class),
            label_keys=frozenset(key for key, _ in label_owner),
            most_capable=max(resolved.values(), key=lambda p: (p.spec.tpp, p.name), default=None),
        )

    def for_node_labels(self, labels: dict[str, str]) -> list[ResolvedProfile]:
        found = []
        for key in self.label_keys.intersection(labels):
            profile = self.by_label.get((key, labels[key])) or self.by_label.get(
                (key, normalize_product_label(labels[key]))
            )
            if profile is not None:
                found.append(profile)
        return found

    def for_label_value(self, key: str, value: str) -> ResolvedProfile | None:
        return self.by_label.get((key, value)) or self.by_label.get((key, normalize_product_label(value)))


@dataclass(frozen=True)
class TenantLookup:
    tenant: Tenant | None
    claimants: int  # how many tenants claim the namespace (list or label); >1 is a conflict
    missing_label_target: str | None = None  # the label names a tenant that does not exist


@dataclass
class LicensedPod:
    license: str
    namespace: str
    usage: UsageBreakdown


@dataclass
class ConsumptionIndex:
    """What the licensed pods use, by license and namespace: the storage of
    ``computegate.engine.consumption``, which fills it; ``ClusterState`` only invalidates it."""

    pods: dict[tuple[str, str], LicensedPod] | None = None  # None: count every pod again
    by_license: dict[str, dict[str, UsageBreakdown]] = field(default_factory=dict)
    uncounted: set[tuple[str, str]] = field(default_factory=set)  # pods changed since counted

    def reset(self) -> None:
        self.pods = None
        self.by_license.clear()
        self.uncounted.clear()

    def forget(self, key: tuple[str, str]) -> None:
        if self.pods is None:
            return
        self.uncounted.discard(key)
        entry = self.pods.pop(key, None)
        if entry is not None:
            _add_breakdown(self.by_license[entry.license][entry.namespace], entry.usage, sign=-1)

    def recount(self, key: tuple[str, str]) -> None:
        if self.pods is not None:
            self.forget(key)
            self.uncounted.add(key)

    def add(self, key: tuple[str, str], entry: LicensedPod) -> None:
        assert self.pods is not None
        self.pods[key] = entry
        by_namespace = self.by_license.setdefault(entry.license, {})
        _add_breakdown(by_namespace.setdefault(entry.namespace, {}), entry.usage)


def approximate_bytes(key: object) -> int:
    """What a cache key of strings, numbers and tuples holds in memory, roughly (CPython sizes)."""
    total, stack = 0, [key]
    while stack:
        item = stack.pop()
        if isinstance(item, tuple):
            total += 56 + 8 * len(item)
            stack.extend(item)
        elif isinstance(item, str):
            total += 49 + len(item)
        else:
            total += 32
    return total


@dataclass
class BoundedCache:
    """A memo keyed by user input, bounded in bytes: the keys' approximate size, plus a fixed
    cost per entry for its value. Full, it starts over; an entry larger than a sixteenth of the
    budget is never kept (the complexity limits refuse such objects before they get here)."""

    max_bytes: int
    entry_overhead: int = 256  # the dict slot and a small value
    _entries: dict[object, object] = field(default_factory=dict)
    _bytes: int = 0

    def get(self, key: object) -> object | None:
        return self._entries.get(key)

    def put(self, key: object, value: object) -> None:
        cost = approximate_bytes(key) + self.entry_overhead
        if cost > self.max_bytes // 16:
            return
        if self._bytes + cost > self.max_bytes:
            self.clear()
        if key not in self._entries:
            self._bytes += cost
        self._entries[key] = value

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)


SELECTION_CACHE_BYTES = 32 * 1024 * 1024


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
                self.pods[key] = obj
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
        namespace, name = key
        for pod_key, pod in self.pods.items():
            if pod_key[0] == namespace and any(
                (ref.resource_claim_template_name if template else ref.resource_claim_name) == name
                for ref in pod.spec.resource_claims
            ):
                self.consumption_index.recount(pod_key)

    def _hardware_changed(self) -> None:
        self._profiles = None
        self.selection_cache.clear()
        self._invalidate_consumption()

    def _invalidate_consumption(self) -> None:
        self.consumption_index.reset()
