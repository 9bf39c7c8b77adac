"""The derived views a ``ClusterState`` keeps beside its objects, each rebuilt or cleared only
when its inputs change: the profile index (which model a resource, label or device class names),
the consumption index (what licensed pods use) and a memo bounded in bytes.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

from computegate.engine.bands import eccn_band
from computegate.models.resources import AcceleratorProfileSpec
from computegate.vocabulary import Band

# GPU Feature Discovery appends these to gpu.product for time-slicing and MIG single strategy.
_GFD_SUFFIX = re.compile(r"-(SHARED|MIG-[0-9A-Za-z.+-]*)$")


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

    def copy(self) -> ConsumptionIndex:
        """An independent copy, for a view that counts some pods differently."""
        return ConsumptionIndex(
            pods=None if self.pods is None else dict(self.pods),
            by_license={
                license_name: {namespace: dict(usage) for namespace, usage in by_namespace.items()}
                for license_name, by_namespace in self.by_license.items()
            },
            uncounted=set(self.uncounted),
        )

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
