"""What a pod asks for, in accelerator resources, before any model is chosen (DESIGN.md step 2):
its containers' requests and limits (sidecars included), its DRA claims' device requests, and
every device of its node where a container reaches devices without asking. ``footprint`` then
resolves each ask to the model that counts.
"""

from __future__ import annotations

import posixpath
import re
from collections import defaultdict
from collections.abc import Mapping
from fractions import Fraction

from computegate.engine.selection import named_label_values, node_admitted
from computegate.engine.sharing import SHARING, shared_asks
from computegate.engine.state import ClusterState
from computegate.models.kube import Container, PodSpec
from computegate.models.resources import DeviceAccessAction

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
CLAIM_RESOURCE = "resourceclaim:"  # the pseudo-resource a DRA device request stands for
DEVICE_ACCESS_RESOURCE = "device-access:"  # every accelerator of the node, asked for without a request

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


def node_accelerators(state: ClusterState, node_name: str) -> Fraction:
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


def claim_requests(spec: PodSpec, namespace: str, state: ClusterState) -> dict[str, Fraction]:
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
            asks[CLAIM_RESOURCE] += 1  # a claim we cannot see yet: one device of an unknown class
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
                asks[CLAIM_RESOURCE + device_class] += count
                continue
            exact = request.exact
            if exact is None:
                asks[CLAIM_RESOURCE] += 1
            else:
                asks[CLAIM_RESOURCE + exact.device_class_name] += _device_count(
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
        return node_accelerators(state, spec.node_name) if spec.node_name in state.nodes else Fraction(1)
    count = max(
        (node_accelerators(state, name) for name, node in state.nodes.items() if node_admitted(spec, node)),
        default=Fraction(0),
    )
    if not count and any(
        state.profiles.for_label_value(key, value) is not None
        for key, value in named_label_values(spec, state.profiles.label_keys)
    ):
        count = Fraction(1)
    return count


def pod_asks(
    state: ClusterState, spec: PodSpec, namespace: str, annotations: Mapping[str, str]
) -> dict[str, Fraction]:
    """How many of each accelerator resource the pod asks for; its claims' devices and device
    access without a request under pseudo-resources (``CLAIM_RESOURCE``, ``DEVICE_ACCESS_RESOURCE``)."""
    asks = effective_requests(spec, state)
    if spec.resource_claims:
        asks.update(claim_requests(spec, namespace, state))
    if state.policy.device_access is DeviceAccessAction.JUDGE and device_access(spec, annotations):
        # A container that reaches every device of its node gets what the pod did not ask for.
        extra = _device_access_count(state, spec) - sum(
            (count for resource, count in asks.items() if not resource.startswith(CLAIM_RESOURCE)),
            Fraction(0),
        )
        if extra > 0:
            asks[DEVICE_ACCESS_RESOURCE] = extra
    return asks
