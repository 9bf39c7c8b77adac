"""The guards around the workload review: resource claims and claim templates judged as a pod that
uses them would be, subresource writes that would change the stamps or add an ephemeral container
that reaches devices, and who may create a namespace or change its tenant label.

No I/O: each guard reads a ``ClusterState`` and never writes it (a claim is judged against
``ClusterState.with_claim``, a view). ``review.Reviewer`` calls them with its clock, its new
decision id and its administrators.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from computegate.engine import ClusterState, Code, decide
from computegate.engine.asks import device_access
from computegate.models.kube import Pod, ResourceClaim, ResourceClaimTemplate
from computegate.models.resources import DeviceAccessAction, Enforcement
from computegate.statefiles import describe_validation_error
from computegate.vocabulary import PROTECTED_ANNOTATIONS, TENANT_LABEL
from computegate.webhook.outcome import (
    ADMITTED,
    NAMESPACE_RESERVED,
    NOT_JUDGED,
    PROTECTED_STAMPS,
    TENANT_LABEL_PROTECTED,
    InvalidObject,
    Outcome,
    Request,
    annotations_of,
    check_sizes,
    labels_of,
    metadata_of,
    parse_workload,
)

# ----- resource claims and claim templates -----


def validate_claim(state: ClusterState, request: Request, decision_id: str, *, at: datetime) -> Outcome:
    """A ResourceClaim or ResourceClaimTemplate judged as a pod that uses it would be, whenever
    it is created or its request changes, whoever owns it: a claim created after its pod (or a
    template after the pod that names it) asks for devices the pod's decision did not see."""
    template = request.plural == "resourceclaimtemplates"
    kind = "ResourceClaimTemplate" if template else "ResourceClaim"
    try:
        check_sizes(request.body)
        model = ResourceClaimTemplate if template else ResourceClaim
        claim = model.model_validate({**request.body, "kind": kind})
        old = model.model_validate({**request.old, "kind": kind}) if request.old is not None else None
    except InvalidObject as error:
        return Outcome.invalid(request, error, decision_id)
    except ValidationError as error:
        return Outcome.invalid(request, InvalidObject(describe_validation_error(error)), decision_id)
    namespace = claim.metadata.namespace or ""
    name = claim.metadata.name or "claim"
    if request.operation == "UPDATE" and old is not None and old.spec == claim.spec:
        message = f"[{NOT_JUDGED}] the update does not change what the {kind} asks for"
        return Outcome(request, True, NOT_JUDGED, message, decision_id)
    if isinstance(claim, ResourceClaim) and _made_from_judged_template(state, request.body, claim):
        message = f"[{NOT_JUDGED}] made from the template its pod was judged with"
        return Outcome(request, True, NOT_JUDGED, message, decision_id)
    reference = {"resourceClaimTemplateName" if template else "resourceClaimName": name}
    pod = Pod.model_validate(
        {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"resourceClaims": [{"name": "claim", **reference}]},
        }
    )
    verdict = decide(state.with_claim(claim), pod, at=at)
    message = verdict.message.replace(f"Pod {namespace}/{name}", f"{kind} {namespace}/{name}")
    verdict = verdict.model_copy(update={"message": message})
    return Outcome(
        request,
        verdict.allowed,
        verdict.code.value,
        message,
        decision_id,
        verdict=verdict,
        warnings=verdict.warnings,
    )


def _made_from_judged_template(state: ClusterState, body: Mapping[str, Any], claim: ResourceClaim) -> bool:
    """A claim the resource claim controller made for a pod from a template that pod named and
    this view knows, asking for exactly what the template asks for: judged with the pod."""
    namespace = claim.metadata.namespace or ""
    owners = metadata_of(body).get("ownerReferences")
    for owner in owners if isinstance(owners, list) else []:
        if not isinstance(owner, Mapping) or owner.get("kind") != "Pod":
            continue
        pod = state.pods.get((namespace, str(owner.get("name") or "")))
        if pod is None or pod.metadata.uid != owner.get("uid"):
            continue
        for reference in pod.spec.resource_claims:
            template = state.claim_templates.get((namespace, reference.resource_claim_template_name or ""))
            if template is not None and template.spec.spec == claim.spec:
                return True
    return False


# ----- subresources: the stamps, and ephemeral containers -----


def validate_subresource(state: ClusterState, request: Request, decision_id: str, *, at: datetime) -> Outcome:
    """A status (or other subresource) write that changes the stamps is refused: a pod's
    ``computegate.io/license`` is what its consumption is counted under. A new ephemeral
    container that reaches devices is judged (DESIGN.md step 2)."""
    current, before = annotations_of(request.body), annotations_of(request.old)
    changed = sorted(key for key in PROTECTED_ANNOTATIONS if current.get(key) != before.get(key))
    what = f"{request.plural}/{request.subresource} of {metadata_of(request.body).get('name', '')}"
    if changed:
        message = (
            f"[{PROTECTED_STAMPS}] The annotations {', '.join(changed)} are set only by ComputeGate's "
            f"mutating webhook and cannot be changed through {request.plural}/{request.subresource}."
        )
        return Outcome(request, False, PROTECTED_STAMPS, message, decision_id)
    if request.plural == "pods" and request.subresource == "ephemeralcontainers":
        return _ephemeral_containers(state, request, decision_id, at=at)
    return Outcome(request, True, NOT_JUDGED, f"[{NOT_JUDGED}] {what}: the stamps do not change", decision_id)


def _ephemeral_containers(
    state: ClusterState, request: Request, decision_id: str, *, at: datetime
) -> Outcome:
    try:
        pod = parse_workload("pods", request.body)
        old = parse_workload("pods", request.old) if request.old is not None else None
    except InvalidObject as error:
        return Outcome.invalid(request, error, decision_id)
    assert isinstance(pod, Pod)
    known = {c.name for c in old.spec.ephemeral_containers} if isinstance(old, Pod) else set()
    added = [c for c in pod.spec.ephemeral_containers if c.name not in known]
    access = device_access(pod.spec.model_copy(update={"containers": added, "init_containers": []}))
    access = tuple(reason for reason in access if reason.startswith("container "))
    if not access or state.policy.device_access is DeviceAccessAction.ALLOW:
        message = f"[{NOT_JUDGED}] no new ephemeral container reaches devices"
        return Outcome(request, True, NOT_JUDGED, message, decision_id)
    # Judged as the pod would be if created with it. A licensed pod's use was charged when it
    # was admitted and cannot grow: an ephemeral container that reaches more is refused.
    verdict = decide(state, pod, at=at)
    if verdict.code is not Code.LICENSED:
        return Outcome.of(request, verdict, decision_id)
    code = Code.DEVICE_ACCESS_WITHOUT_REQUEST
    message = (
        f"[{code.value}] An ephemeral container of Pod {pod.metadata.namespace}/{pod.metadata.name} "
        f"would reach accelerators without asking for them ({'; '.join(access)}). Its accelerators "
        "cannot be charged to a license after the pod was admitted; debug without device access."
    )
    if state.policy.enforcement is Enforcement.AUDIT:
        audited = verdict.model_copy(update={"audit": True, "code": code, "license": None})
        warning = f"Audit mode, would deny: {message}"
        return Outcome(request, True, code.value, message, decision_id, verdict=audited, warnings=(warning,))
    denied = verdict.model_copy(update={"allowed": False, "code": code, "message": message})
    return Outcome(request, False, code.value, message, decision_id, verdict=denied)


# ----- namespaces: the tenant-label guard and who may create which -----


def validate_namespace(
    state: ClusterState,
    request: Request,
    decision_id: str,
    *,
    admin: bool,
    admin_groups: frozenset[str],
    exempt_namespaces: frozenset[str],
) -> Outcome:
    """Only administrators (``admin``) may create a namespace a Tenant lists or that is exempt
    (here or by the policy), or set, change or remove a namespace's tenant label."""
    name = str(metadata_of(request.body).get("name") or "")
    admins = ", ".join(sorted(admin_groups)) or "none"
    if request.operation == "CREATE" and not admin and request.subresource is None:
        reserved = _reserved_namespace(state, name, exempt_namespaces)
        if reserved is not None:
            message = (
                f"[{NAMESPACE_RESERVED}] Namespace {name} is {reserved}: only ComputeGate administrators "
                "may create it, so that no one takes a tenant's licenses, or an exemption, by choosing "
                f"a name. Choose another name, or ask a cluster administrator (groups: {admins})."
            )
            return Outcome(request, False, NAMESPACE_RESERVED, message, decision_id)
    new_label = labels_of(request.body).get(TENANT_LABEL)
    old_label = labels_of(request.old).get(TENANT_LABEL) if request.old is not None else None
    if new_label == old_label:
        return Outcome(request, True, NOT_JUDGED, "the tenant label does not change", decision_id)
    if admin:
        message = f"{request.user} may set the tenant label of namespace {name}"
        return Outcome(request, True, ADMITTED, message, decision_id)
    message = (
        f"[{TENANT_LABEL_PROTECTED}] Only ComputeGate administrators may set, change or remove the "
        f"{TENANT_LABEL} label of namespace {name}: it decides which tenant's jurisdiction and "
        f"licenses apply to the namespace's workloads. Ask a cluster administrator (groups: {admins})."
    )
    return Outcome(request, False, TENANT_LABEL_PROTECTED, message, decision_id)


def _reserved_namespace(state: ClusterState, name: str, exempt_namespaces: frozenset[str]) -> str | None:
    if name in exempt_namespaces or name in state.policy.exempt_namespaces:
        return "exempt from ComputeGate"
    if state.tenants_listing(name):
        return "listed by a Tenant"
    return None
