"""Of which model, and so how much compute, a workload's accelerators are (DESIGN.md steps 1-3):
each of a pod's asks (``asks``) resolved to the candidate model that counts, the pods a
controller makes, and the placement pin of an admitted pod.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction

from computegate.engine.asks import (
    CLAIM_RESOURCE,
    DEVICE_ACCESS_RESOURCE,
    claim_requests,
    device_access,
    effective_requests,
    node_accelerators,
    pod_asks,
)
from computegate.engine.bandwidth import coverages
from computegate.engine.indexes import ResolvedProfile
from computegate.engine.selection import named_label_values, node_admitted, selector_key
from computegate.engine.sharing import SHARED_CHIP_RESOURCE, SHARING
from computegate.engine.state import ClusterState
from computegate.engine.verdict import AcceleratorUse
from computegate.models.kube import Controller, Pod, PodSpec, Workload
from computegate.models.resources import DeviceAccessAction, Tenant, UnknownAcceleratorAction

_MIG = re.compile(r"^nvidia\.com/mig-(\d+)g\.")
_DEVICE_CLASS_RESOURCE = "deviceclass.resource.kubernetes.io/"
_FULL_GPU = "nvidia.com/gpu"


@dataclass(frozen=True)
class _Candidates:
    profiles: tuple[ResolvedProfile, ...]
    unresolved: bool


def _profiles_for_resource(resource: str, state: ClusterState) -> list[ResolvedProfile]:
    """Profiles that can serve a resource (a MIG slice: the MIG-capable full-GPU profiles)."""
    index = state.profiles
    if resource in SHARING:
        return index.by_resource.get(SHARED_CHIP_RESOURCE, [])
    if resource == DEVICE_ACCESS_RESOURCE:
        return list(index.by_name.values())
    if _MIG.match(resource):
        return [p for p in index.by_resource.get(_FULL_GPU, []) if p.spec.mig_compute_slices]
    if resource in index.by_resource:
        return index.by_resource[resource]
    if resource == "nvidia.com/gpu.shared":
        return index.by_resource.get(_FULL_GPU, [])  # a time-slice may be the whole chip
    if resource.startswith(_DEVICE_CLASS_RESOURCE):
        return index.by_device_class.get(resource.removeprefix(_DEVICE_CLASS_RESOURCE), [])
    if resource.startswith(CLAIM_RESOURCE):
        return index.by_device_class.get(resource.removeprefix(CLAIM_RESOURCE), [])
    return []


def _node_offers(
    state: ClusterState, node_name: str, resource: str, candidates: list[ResolvedProfile]
) -> bool:
    node = state.nodes[node_name]
    if resource.startswith(CLAIM_RESOURCE):  # DRA devices are not in node capacity; the node's model says it
        names = {p.name for p in candidates}
        return any(p.name in names for p in state.profiles.for_node_labels(node.metadata.labels))
    if resource == DEVICE_ACCESS_RESOURCE:
        return node_accelerators(state, node_name) > 0
    capacity = node.status.capacity
    if (
        resource in SHARING
        and SHARING[resource].scheme == SHARED_CHIP_RESOURCE
        and capacity.get(SHARED_CHIP_RESOURCE, Fraction(0)) > 0
    ):
        return True  # HAMi advertises its shares under nvidia.com/gpu
    return capacity.get(resource, Fraction(0)) > 0


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
        if not found and resource.startswith(CLAIM_RESOURCE) and serving:
            found = {p.name: p for p in serving}  # no node known yet: the class's worst model
        elif not found:
            unresolved = True
    result = _Candidates(tuple(found.values()), unresolved)
    state.selection_cache.put(key, result)  # bounded in bytes: selectors are user input
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


def pod_uses(
    state: ClusterState,
    spec: PodSpec,
    namespace: str,
    multiplier: int = 1,
    *,
    tenant: Tenant | None = None,
    annotations: Mapping[str, str] = {},
) -> list[AcceleratorUse]:
    """The accelerators one pod asks for, each resolved to the model that counts (the worst case
    for ``tenant``, the tenant whose use it is)."""
    worst_case = _worst_case_key(state, tenant)
    uses = []
    for resource, count in sorted(pod_asks(state, spec, namespace, annotations).items()):
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


def considered_models(
    state: ClusterState,
    spec: PodSpec,
    namespace: str,
    annotations: Mapping[str, str] = {},
) -> tuple[ResolvedProfile, ...] | None:
    """Every model a pod's decision considered (DESIGN.md step 8), or None when one was assumed
    (a candidate node with no recognised label, a product value no profile knows, no candidate)."""
    found: dict[str, ResolvedProfile] = {}
    for resource in pod_asks(state, spec, namespace, annotations):
        candidates = _candidates(state, spec, resource)
        if candidates.unresolved or not candidates.profiles:
            return None
        found.update((profile.name, profile) for profile in candidates.profiles)
    return tuple(found.values())


def placement_pin(state: ClusterState, pod: Pod) -> tuple[str, tuple[str, ...]] | None:
    """The required node affinity that pins an admitted pod to the models its decision considered
    (DESIGN.md step 8): a product-label key and exactly the values that name those models (their
    profiles' values and the values known nodes of those models carry, GFD suffixes included).

    None: not pinned. A bound pod cannot move; a decision that assumed a model (a node with no
    recognised label, a named value no profile knows) judged the most capable model anyway; and
    models told apart by different label keys cannot be pinned with one requirement.
    """
    spec = pod.spec
    if spec.node_name is not None:
        return None
    models = considered_models(state, spec, pod.metadata.namespace or "", pod.metadata.annotations)
    if not models:
        return None
    keys = {key for profile in models for key in profile.spec.product_labels}
    if len(keys) != 1:
        return None
    (key,) = keys
    names = {profile.name for profile in models}
    values = {value for profile in models for value in profile.spec.product_labels[key]}
    for node in state.nodes.values():
        value = node.metadata.labels.get(key)
        if value is not None and value not in values:
            named = state.profiles.for_label_value(key, value)
            if named is not None and named.name in names:
                values.add(value)
    return key, tuple(sorted(values))


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
    if resource == DEVICE_ACCESS_RESOURCE:
        return "device access without a request"
    return (
        resource.replace(CLAIM_RESOURCE, "resourceclaim/", 1)
        if resource.startswith(CLAIM_RESOURCE)
        else resource
    )


def pod_annotations(workload: Workload) -> dict[str, str]:
    """The annotations its pods carry: a Pod's own, a controller's pod template's."""
    if isinstance(workload, Pod):
        return workload.metadata.annotations
    spec = workload.spec
    if workload.kind == "CronJob":
        job = spec.job_template.spec if spec.job_template else None
        return job.template.metadata.annotations if job else {}
    return spec.template.metadata.annotations if spec.template else {}


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
            return _daemonset_pods(
                state, template.spec, controller.metadata.namespace or "", template.metadata.annotations
            )
    if template is None or count == 0:
        return []
    return [(template.spec, count)]


def _daemonset_pods(
    state: ClusterState, spec: PodSpec, namespace: str, annotations: Mapping[str, str]
) -> list[tuple[PodSpec, int]]:
    asks = {**effective_requests(spec, state), **claim_requests(spec, namespace, state)}
    if state.policy.device_access is DeviceAccessAction.JUDGE and device_access(spec, annotations):
        asks[DEVICE_ACCESS_RESOURCE] = Fraction(1)  # one pod on each node that has accelerators
    serving = {resource: _profiles_for_resource(resource, state) for resource in asks}

    def offers(node_name: str, resource: str) -> bool:
        if resource.startswith(CLAIM_RESOURCE) and not serving[resource]:
            return True  # a device of a class no profile names (or a claim not seen yet): anywhere
        return _node_offers(state, node_name, resource, serving[resource])

    pods = []
    for node_name, node in state.nodes.items():
        if any(offers(node_name, resource) for resource in asks) and node_admitted(spec, node):
            pods.append((spec.model_copy(update={"node_name": node_name}), 1))
    return pods
