"""How much accelerator compute a workload asks for, and of which model (DESIGN.md steps 1-3)."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from computegate.engine.bandwidth import coverages
from computegate.engine.selection import named_label_values, node_admitted, selector_key
from computegate.engine.state import ClusterState, ResolvedProfile
from computegate.engine.verdict import AcceleratorUse
from computegate.models.kube import Container, Controller, Pod, PodSpec, Workload
from computegate.models.resources import Tenant, UnknownAcceleratorAction

# The accelerator resource families of DESIGN.md step 2; the webhook's matchConditions are built
# from the same two constants, so what reaches the webhook and what the engine counts agree.
ACCELERATOR_PREFIXES = (
    "nvidia.com/",
    "habana.ai/",
    "gpu.intel.com/",
    "huawei.com/Ascend",
    "aws.amazon.com/neuron",
    "deviceclass.resource.kubernetes.io/",
)
ACCELERATOR_NAMES = frozenset({"amd.com/gpu", "google.com/tpu"})
_MIG = re.compile(r"^nvidia\.com/mig-(\d+)g\.")
_DEVICE_CLASS_RESOURCE = "deviceclass.resource.kubernetes.io/"
_FULL_GPU = "nvidia.com/gpu"
_CLAIM = "resourceclaim:"  # the pseudo-resource a DRA device request stands for
SELECTION_CACHE_LIMIT = 50_000  # candidate-model entries kept before the cache starts over


def is_accelerator_resource(name: str, state: ClusterState) -> bool:
    known = state.profiles.accelerator_resources  # memo: a decision asks about the same few names
    answer = known.get(name)
    if answer is None:
        answer = (
            name in ACCELERATOR_NAMES
            or name.startswith(ACCELERATOR_PREFIXES)
            or name in state.profiles.by_resource
        )
        known[name] = answer
    return answer


def _container_ask(container: Container, state: ClusterState) -> dict[str, Fraction]:
    """A container's accelerator asks; its limit counts where it sets no request (as the API server
    defaults it). Kubernetes requires an extended resource's request and limit to be equal; where
    a manifest has them differ (the API server would reject it, the offline evaluator would not),
    the larger counts, so that a malformed spec is never under-counted."""
    resources = container.resources
    ask = {name: amount for name, amount in resources.limits.items() if is_accelerator_resource(name, state)}
    for name, amount in resources.requests.items():
        if is_accelerator_resource(name, state) and amount > ask.get(name, 0):
            ask[name] = amount
    return ask


def effective_requests(spec: PodSpec, state: ClusterState) -> dict[str, Fraction]:
    """Per accelerator resource, what the scheduler reserves for the pod, sidecars included."""
    resources: dict[str, Fraction] = {}
    for container in spec.containers:
        for name, amount in _container_ask(container, state).items():
            resources[name] = resources[name] + amount if name in resources else amount
    if spec.init_containers:
        sidecars: dict[str, Fraction] = defaultdict(Fraction)
        init_peak: dict[str, Fraction] = defaultdict(Fraction)
        for container in spec.init_containers:
            ask = _container_ask(container, state)
            if container.restart_policy == "Always":
                for name, amount in ask.items():
                    sidecars[name] += amount
                    init_peak[name] = max(init_peak[name], sidecars[name])
            else:
                for name in set(ask) | set(sidecars):
                    init_peak[name] = max(init_peak[name], ask.get(name, Fraction(0)) + sidecars[name])
        for name in set(resources) | set(sidecars) | set(init_peak):
            resources[name] = max(resources.get(name, Fraction(0)) + sidecars[name], init_peak[name])
    return {name: amount for name, amount in resources.items() if amount}  # quantities are never negative


@dataclass(frozen=True)
class _Candidates:
    profiles: tuple[ResolvedProfile, ...]
    unresolved: bool


def _profiles_for_resource(resource: str, state: ClusterState) -> list[ResolvedProfile]:
    """Profiles that can serve a resource (a MIG slice: the MIG-capable full-GPU profiles)."""
    index = state.profiles
    if _MIG.match(resource):
        return [p for p in index.by_resource.get(_FULL_GPU, []) if p.spec.mig_compute_slices]
    if resource in index.by_resource:
        return index.by_resource[resource]
    if resource == "nvidia.com/gpu.shared":
        return index.by_resource.get(_FULL_GPU, [])  # a time-slice may be the whole chip
    if resource.startswith(_DEVICE_CLASS_RESOURCE):
        return index.by_device_class.get(resource.removeprefix(_DEVICE_CLASS_RESOURCE), [])
    if resource.startswith(_CLAIM):
        return index.by_device_class.get(resource.removeprefix(_CLAIM), [])
    return []


def _node_offers(
    state: ClusterState, node_name: str, resource: str, candidates: list[ResolvedProfile]
) -> bool:
    node = state.nodes[node_name]
    if resource.startswith(_CLAIM):  # DRA devices are not in node capacity; the node's model says it
        names = {p.name for p in candidates}
        return any(p.name in names for p in state.profiles.for_node_labels(node.metadata.labels))
    return node.status.capacity.get(resource, Fraction(0)) > 0


def _candidates(state: ClusterState, spec: PodSpec, resource: str) -> _Candidates:
    key = (resource, spec.node_name, selector_key(spec))
    cached = state.selection_cache.get(key)
    if isinstance(cached, _Candidates):
        return cached
    serving = _profiles_for_resource(resource, state)
    serving_names = {p.name for p in serving}
    found: dict[str, ResolvedProfile] = {}
    unresolved = False

    def add_node(node_name: str) -> None:
        nonlocal unresolved
        models = [
            p
            for p in state.profiles.for_node_labels(state.nodes[node_name].metadata.labels)
            if p.name in serving_names
        ]
        if not models:
            unresolved = True
        for profile in models:
            found[profile.name] = profile

    if spec.node_name is not None:
        if spec.node_name in state.nodes:
            add_node(spec.node_name)
        else:
            unresolved = True
    else:
        for node_name, node in state.nodes.items():
            if _node_offers(state, node_name, resource, serving) and node_admitted(spec, node):
                add_node(node_name)
        for label_key, value in named_label_values(spec, state.profiles.label_keys):
            named = state.profiles.for_label_value(label_key, value)
            if named is None:
                unresolved = True
            elif named.name in serving_names:
                found[named.name] = named
        if not found and resource.startswith(_CLAIM) and serving:
            found = {p.name: p for p in serving}  # no node known yet: the class's worst model
        elif not found:
            unresolved = True
    result = _Candidates(tuple(found.values()), unresolved)
    if len(state.selection_cache) >= SELECTION_CACHE_LIMIT:
        state.selection_cache.clear()  # bounded: selectors are user input in a long-lived webhook
    state.selection_cache[key] = result
    return result


def _use(
    resource: str, count: Fraction, profile: ResolvedProfile, resolved: bool, state: ClusterState
) -> AcceleratorUse:
    slices = profile.spec.mig_compute_slices
    mig = _MIG.match(resource) if slices else None
    if mig and slices:
        count = count * Fraction(int(mig.group(1)), slices)  # g of the chip's compute slices
    return AcceleratorUse(
        resource=resource,
        profile=profile.name,
        model=f"{profile.spec.vendor} {profile.spec.model}",
        count=float(count),
        tpp_per_chip=profile.spec.tpp,
        band=profile.band,
        controlled=profile.band in state.policy.controlled_bands,
        resolved=resolved,
    )


def _claim_requests(spec: PodSpec, namespace: str, state: ClusterState) -> dict[str, Fraction]:
    """Devices asked for through resource claims, keyed by the pseudo-resource of their class."""
    if not spec.resource_claims:
        return {}
    asks: dict[str, Fraction] = defaultdict(Fraction)
    for pod_claim in spec.resource_claims:
        claim_spec = None
        if pod_claim.resource_claim_name:
            claim = state.claims.get((namespace, pod_claim.resource_claim_name))
            claim_spec = claim.spec if claim else None
        elif pod_claim.resource_claim_template_name:
            template = state.claim_templates.get((namespace, pod_claim.resource_claim_template_name))
            claim_spec = template.spec.spec if template else None
        if claim_spec is None:
            asks[_CLAIM] += 1  # a claim we cannot see yet: one device of an unknown class
            continue
        for request in claim_spec.devices.requests:
            exact = request.exact
            if exact is None:
                asks[_CLAIM] += 1
            elif exact.allocation_mode == "All":
                asks[_CLAIM + exact.device_class_name] += _largest_node_count(state, exact.device_class_name)
            else:
                asks[_CLAIM + exact.device_class_name] += exact.count
    return {resource: count for resource, count in asks.items() if count > 0}


def _largest_node_count(state: ClusterState, device_class: str) -> Fraction:
    resources = {
        r for p in state.profiles.by_device_class.get(device_class, []) for r in p.spec.resource_names
    }
    counts = [n.status.capacity.get(r, Fraction(0)) for n in state.nodes.values() for r in resources]
    return max([Fraction(1), *counts])


def pod_uses(
    state: ClusterState, spec: PodSpec, namespace: str, multiplier: int = 1, *, tenant: Tenant | None = None
) -> list[AcceleratorUse]:
    """The accelerators one pod asks for, each resolved to the model that counts (the worst case
    for ``tenant``, the tenant whose use it is)."""
    worst_case = _worst_case_key(state, tenant)
    uses = []
    asks = effective_requests(spec, state)
    if spec.resource_claims:
        asks.update(_claim_requests(spec, namespace, state))
    for resource, count in sorted(asks.items()):
        candidates = _candidates(state, spec, resource)
        worst = max(candidates.profiles, key=worst_case, default=None)
        resolved = not candidates.unresolved
        if not resolved and state.policy.unknown_accelerator is UnknownAcceleratorAction.ASSUME_MOST_CAPABLE:
            serving = _profiles_for_resource(resource, state)
            pool = serving or list(state.profiles.by_name.values())
            worst = max([*pool, *candidates.profiles], key=worst_case, default=None)
        if worst is None:
            worst = state.profiles.most_capable
        if worst is None:
            continue  # no profile at all: nothing can be resolved or assumed
        total = count if multiplier == 1 else count * multiplier
        uses.append(_use(_display_resource(resource), total, worst, resolved, state))
    return uses


def _worst_case_key(
    state: ClusterState, tenant: Tenant | None
) -> Callable[[ResolvedProfile], tuple[bool, float, str]]:
    """Which candidate model counts: one controlled for the tenant before one that is not, then
    the highest TPP. By TPP alone, an uncontrolled chip with more TPP (an RTX 4090 D) would hide
    a covered one with less (an H20) on the nodes a pod may land on."""
    policy = state.policy
    controls = policy.bandwidth_controls if tenant is not None else ()

    def key(profile: ResolvedProfile) -> tuple[bool, float, str]:
        controlled = profile.band in policy.controlled_bands or (
            bool(controls)
            and tenant is not None
            and bool(coverages(policy, profile.name, profile.spec, tenant.spec))
        )
        return (controlled, profile.spec.tpp, profile.name)

    return key


def _display_resource(resource: str) -> str:
    return resource.replace(_CLAIM, "resourceclaim/", 1) if resource.startswith(_CLAIM) else resource


def workload_pods(state: ClusterState, workload: Workload) -> list[tuple[PodSpec, int]]:
    """The pods a workload makes, as (pod spec, how many), DESIGN.md step 1."""
    if isinstance(workload, Pod):
        return [(workload.spec, 1)]
    return _controller_pods(state, workload)


def _controller_pods(state: ClusterState, controller: Controller) -> list[tuple[PodSpec, int]]:
    spec = controller.spec
    match controller.kind:
        case "Deployment" | "ReplicaSet" | "StatefulSet":
            template = spec.template
            count = 1 if spec.replicas is None else spec.replicas
        case "Job":
            template = spec.template
            count = 1 if spec.parallelism is None else spec.parallelism
        case "CronJob":
            job = spec.job_template.spec if spec.job_template else None
            template = job.template if job else None
            count = 1 if job is None or job.parallelism is None else job.parallelism
        case "DaemonSet":
            template = spec.template
            if template is None:
                return []
            return _daemonset_pods(state, template.spec, controller.metadata.namespace or "")
    if template is None or count == 0:
        return []
    return [(template.spec, count)]


def _daemonset_pods(state: ClusterState, spec: PodSpec, namespace: str) -> list[tuple[PodSpec, int]]:
    asks = {**effective_requests(spec, state), **_claim_requests(spec, namespace, state)}
    serving = {resource: _profiles_for_resource(resource, state) for resource in asks}

    def offers(node_name: str, resource: str) -> bool:
        if resource.startswith(_CLAIM) and not serving[resource]:
            return True  # a device of a class no profile names (or a claim not seen yet): anywhere
        return _node_offers(state, node_name, resource, serving[resource])

    pods = []
    for node_name, node in state.nodes.items():
        if any(offers(node_name, resource) for resource in asks) and node_admitted(spec, node):
            pods.append((spec.model_copy(update={"node_name": node_name}), 1))
    return pods
