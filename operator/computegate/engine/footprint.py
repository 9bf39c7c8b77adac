"""How much accelerator compute a workload asks for, and of which model (DESIGN.md steps 1-3)."""

from __future__ import annotations

import posixpath
import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction

from computegate.engine.bandwidth import coverages
from computegate.engine.selection import named_label_values, node_admitted, selector_key
from computegate.engine.sharing import SHARED_CHIP_RESOURCE, SHARING, shared_asks
from computegate.engine.state import ClusterState, ResolvedProfile
from computegate.engine.verdict import AcceleratorUse
from computegate.models.kube import Container, Controller, Pod, PodSpec, Workload
from computegate.models.resources import DeviceAccessAction, Tenant, UnknownAcceleratorAction

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
_DEVICE_ACCESS = "device-access:"  # every accelerator of the node, asked for without a request

# Device access without a request (DESIGN.md step 2). The environment variables that container
# runtimes read to choose the devices they give a container, and the values that select none.
DEVICE_ENV_VARS = frozenset(
    {
        "NVIDIA_VISIBLE_DEVICES",  # NVIDIA container toolkit
        "AMD_VISIBLE_DEVICES",  # AMD container toolkit
        "HABANA_VISIBLE_DEVICES",  # Intel Gaudi (habana-container-runtime)
        "HABANA_VISIBLE_MODULES",
        "ASCEND_VISIBLE_DEVICES",  # Huawei Ascend docker runtime
    }
)
_NO_DEVICES = frozenset({"", "void", "none"})
# A RuntimeClass name that says it is a GPU runtime (nvidia, nvidia-cdi, nvidia-legacy, ...).
GPU_RUNTIME_CLASS = re.compile(r"nvidia|gpu|cuda|habana|gaudi|rocm|amd|ascend|neuron|tpu", re.IGNORECASE)
CDI_ANNOTATION_PREFIX = "cdi.k8s.io/"


def is_accelerator_resource(name: str, state: ClusterState) -> bool:
    known = state.profiles.accelerator_resources  # memo: a decision asks about the same few names
    answer = known.get(name)
    if answer is None:
        answer = (
            name in ACCELERATOR_NAMES
            or name in SHARING
            or name.startswith(ACCELERATOR_PREFIXES)
            or name in state.profiles.by_resource
        )
        if len(known) < _RESOURCE_MEMO_LIMIT:  # bounded: resource names are user input
            known[name] = answer
    return answer


_RESOURCE_MEMO_LIMIT = 4096  # names of at most 316 bytes each (the API server's limit): ~1.5 MB


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
    return shared_asks(ask)


def _container_reaches_devices(container: Container) -> str | None:
    if container.security_context is not None and container.security_context.privileged:
        return f"container {container.name} is privileged"
    for env in container.env:
        if env.name in DEVICE_ENV_VARS and (env.value or "").strip().lower() not in _NO_DEVICES:
            return f"container {container.name} sets {env.name}={env.value}"
    return None


def _device_path(path: str) -> bool:
    normal = posixpath.normpath("/" + path.lstrip("/")) if path else ""
    return normal in ("/", "/dev") or normal.startswith("/dev/")


def device_access(spec: PodSpec, annotations: Mapping[str, str] = {}) -> tuple[str, ...]:
    """Why a pod's containers can reach accelerators without asking for them (DESIGN.md step 2):
    empty when they cannot. Every container kind counts, ephemeral containers included."""
    found = [
        reason
        for container in (*spec.init_containers, *spec.containers, *spec.ephemeral_containers)
        if (reason := _container_reaches_devices(container)) is not None
    ]
    if spec.runtime_class_name and GPU_RUNTIME_CLASS.search(spec.runtime_class_name):
        found.append(f"runtimeClassName {spec.runtime_class_name} is a GPU runtime")
    found += [
        f"volume {volume.name} mounts the host's {volume.host_path.path}"
        for volume in spec.volumes
        if volume.host_path is not None and _device_path(volume.host_path.path)
    ]
    found += [
        f"annotation {key} asks for CDI devices"
        for key in annotations
        if key.startswith(CDI_ANNOTATION_PREFIX)
    ]
    return tuple(found)


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
    if resource in SHARING:
        return index.by_resource.get(SHARED_CHIP_RESOURCE, [])
    if resource == _DEVICE_ACCESS:
        return list(index.by_name.values())
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
    if resource == _DEVICE_ACCESS:
        return _node_accelerators(state, node_name) > 0
    capacity = node.status.capacity
    if (
        resource in SHARING
        and SHARING[resource].scheme == SHARED_CHIP_RESOURCE
        and capacity.get(SHARED_CHIP_RESOURCE, Fraction(0)) > 0
    ):
        return True  # HAMi advertises its shares under nvidia.com/gpu
    return capacity.get(resource, Fraction(0)) > 0


def _node_accelerators(state: ClusterState, node_name: str) -> Fraction:
    """How many accelerators a container that reaches every device of the node gets: the most of
    any accelerator resource in its capacity, at least one where its labels name a model."""
    node = state.nodes[node_name]
    counts = [
        amount
        for resource, amount in node.status.capacity.items()
        if amount > 0 and is_accelerator_resource(resource, state) and resource not in SHARING
    ]
    if not counts and state.profiles.for_node_labels(node.metadata.labels):
        counts = [Fraction(1)]
    return max(counts, default=Fraction(0))


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
            if request.first_available:
                # The scheduler may give any alternative: the most capable one counts.
                alternatives = [
                    (
                        alt.device_class_name,
                        _device_count(state, alt.device_class_name, alt.allocation_mode, alt.count),
                    )
                    for alt in request.first_available
                ]
                device_class, count = max(alternatives, key=lambda alt: _alternative_tpp(state, *alt))
                asks[_CLAIM + device_class] += count
                continue
            exact = request.exact
            if exact is None:
                asks[_CLAIM] += 1
            else:
                asks[_CLAIM + exact.device_class_name] += _device_count(
                    state, exact.device_class_name, exact.allocation_mode, exact.count
                )
    return {resource: count for resource, count in asks.items() if count > 0}


def _device_count(state: ClusterState, device_class: str, mode: str, count: int) -> Fraction:
    return _largest_node_count(state, device_class) if mode == "All" else Fraction(count)


def _alternative_tpp(state: ClusterState, device_class: str, count: Fraction) -> tuple[bool, Fraction, str]:
    """How much an alternative may deliver: controlled before not, then count x the class's
    highest TPP (a class no profile names may be any model: the most capable)."""
    profiles = state.profiles.by_device_class.get(device_class) or [
        p for p in [state.profiles.most_capable] if p is not None
    ]
    controlled = any(p.band in state.policy.controlled_bands for p in profiles)
    tpp = max((Fraction(p.spec.tpp) for p in profiles), default=Fraction(0))
    return controlled, count * tpp, device_class


def _largest_node_count(state: ClusterState, device_class: str) -> Fraction:
    resources = {
        r for p in state.profiles.by_device_class.get(device_class, []) for r in p.spec.resource_names
    }
    counts = [n.status.capacity.get(r, Fraction(0)) for n in state.nodes.values() for r in resources]
    return max([Fraction(1), *counts])


def _device_access_count(state: ClusterState, spec: PodSpec) -> Fraction:
    """Every accelerator of the pod's node: the most over the nodes it may land on (none when it
    can land on no node with accelerators; one where it names a known model no node has yet)."""
    if spec.node_name is not None:
        return _node_accelerators(state, spec.node_name) if spec.node_name in state.nodes else Fraction(1)
    count = max(
        (_node_accelerators(state, name) for name, node in state.nodes.items() if node_admitted(spec, node)),
        default=Fraction(0),
    )
    if not count and any(
        state.profiles.for_label_value(key, value) is not None
        for key, value in named_label_values(spec, state.profiles.label_keys)
    ):
        count = Fraction(1)
    return count


def _asks(
    state: ClusterState, spec: PodSpec, namespace: str, annotations: Mapping[str, str]
) -> dict[str, Fraction]:
    asks = effective_requests(spec, state)
    if spec.resource_claims:
        asks.update(_claim_requests(spec, namespace, state))
    if state.policy.device_access is DeviceAccessAction.JUDGE and device_access(spec, annotations):
        # A container that reaches every device of its node gets what the pod did not ask for.
        extra = _device_access_count(state, spec) - sum(
            (count for resource, count in asks.items() if not resource.startswith(_CLAIM)), Fraction(0)
        )
        if extra > 0:
            asks[_DEVICE_ACCESS] = extra
    return asks


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
    for resource, count in sorted(_asks(state, spec, namespace, annotations).items()):
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
    for resource in _asks(state, spec, namespace, annotations):
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
    if resource == _DEVICE_ACCESS:
        return "device access without a request"
    return resource.replace(_CLAIM, "resourceclaim/", 1) if resource.startswith(_CLAIM) else resource


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
    asks = {**effective_requests(spec, state), **_claim_requests(spec, namespace, state)}
    if state.policy.device_access is DeviceAccessAction.JUDGE and device_access(spec, annotations):
        asks[_DEVICE_ACCESS] = Fraction(1)  # one pod on each node that has accelerators
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
