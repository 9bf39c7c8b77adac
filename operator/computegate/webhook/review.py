"""One admission request in, one ``Outcome`` out: the webhook's translation around the engine.

No I/O and no Kopf here, so every rule of the wire (stamps, the tenant-label guard, scale and
claims) is testable without a server. The engine makes the decision; this module only turns
wire dicts into models (with one-line field errors), picks ``decide`` or ``decide_update``,
and says which annotations to stamp and what the user reads.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from computegate.engine import ClusterState, Code, Verdict, decide, decide_update
from computegate.engine.asks import device_access
from computegate.engine.footprint import placement_pin
from computegate.engine.selection import MAX_SELECTOR_SIZE, selector_size
from computegate.models.kube import Controller, Pod, ResourceClaim, ResourceClaimTemplate, Workload
from computegate.models.resources import DeviceAccessAction, Enforcement
from computegate.statefiles import describe_validation_error
from computegate.vocabulary import (
    CODE_ANNOTATION,
    DECISION_ANNOTATION,
    DECISION_ID_ANNOTATION,
    LICENSE_ANNOTATION,
    PROTECTED_ANNOTATIONS,
    TENANT_LABEL,
    TPP_ANNOTATION,
    WORKLOAD_BY_PLURAL,
)
from computegate.webhook.admission import AdmissionRequest

ADMITTED = "Admitted"
DENIED = "Denied"  # marked by the mutating webhook on a CREATE it would refuse
AUDIT = "Audit"  # admitted only because the policy's enforcement is Audit

# Codes of our own, beside the engine's: they are about the request, not about compute.
INVALID_OBJECT = "InvalidObject"
PROTECTED_STAMPS = "ProtectedAnnotations"
TENANT_LABEL_PROTECTED = "TenantLabelProtected"
NOT_JUDGED = "NotJudged"  # e.g. an UPDATE that cannot change what a claim delivers
LEDGER_UNAVAILABLE = "LedgerUnavailable"  # the license ledger could not be settled: retry
NOT_READY = "NotReady"  # this replica has not listed the cluster's state yet: retry
TOO_COMPLEX = "TooComplex"  # beyond the documented complexity limits: refused, never judged or cached
NAMESPACE_RESERVED = "NamespaceReserved"  # a non-admin may not create a Tenant's or an exempt namespace

_MAX_INT = 2**63  # nothing in a Kubernetes object is larger; bigger numbers are hostile
_MAX_QUANTITY_TEXT = 40

Annotations = dict[str, str | None]  # a merge patch: None removes the key


@dataclass(frozen=True)
class Request:
    """What a handler knows about one admission request, whatever the transport."""

    webhook: str
    plural: str
    operation: str
    body: Mapping[str, Any]
    old: Mapping[str, Any] | None = None
    dry_run: bool = False
    user: str = ""
    groups: tuple[str, ...] = ()
    subresource: str | None = None
    uid: str = ""

    @classmethod
    def of(cls, webhook: str, request: AdmissionRequest) -> Request:
        """A view of the parsed review: the bodies are the review's own dicts, not copies."""
        return cls(
            webhook=webhook,
            plural=request.resource.resource,
            operation=request.operation,
            body=request.object if request.object is not None else request.old_object or {},
            old=request.old_object if request.object is not None else None,
            dry_run=request.dry_run,
            user=request.user_info.username,
            groups=tuple(request.user_info.groups),
            subresource=request.sub_resource,
            uid=request.uid,
        )


@dataclass(frozen=True)
class Outcome:
    """Everything the adapters need: the response, the stamps, the Event, the log line, the metric."""

    request: Request
    allowed: bool
    code: str
    message: str
    decision_id: str
    verdict: Verdict | None = None
    http_code: int = 403
    warnings: tuple[str, ...] = ()
    annotations: Annotations = field(default_factory=dict)
    template_annotations: Annotations = field(default_factory=dict)
    pin: tuple[str, tuple[str, ...]] | None = None  # the node affinity the mutating webhook adds

    @property
    def kind(self) -> str:
        workload = WORKLOAD_BY_PLURAL.get(self.request.plural)
        return str(self.request.body.get("kind") or (workload.kind if workload else self.request.plural))

    @property
    def namespace(self) -> str:
        return str(_metadata(self.request.body).get("namespace") or "")

    @property
    def name(self) -> str:
        meta = _metadata(self.request.body)
        return str(meta.get("name") or meta.get("generateName") or "")

    @classmethod
    def of(cls, request: Request, verdict: Verdict, decision_id: str) -> Outcome:
        """The outcome the verdict alone gives: its answer, code, message and warnings."""
        return cls(
            request,
            verdict.allowed,
            verdict.code.value,
            verdict.message,
            decision_id,
            verdict=verdict,
            warnings=verdict.warnings,
        )

    @property
    def would_deny(self) -> bool:
        """Denied, or admitted only because of Audit: what gets an Event."""
        return not self.allowed or bool(self.verdict and self.verdict.audit)


class InvalidObject(ValueError):
    """The object cannot be read: denied with HTTP 400 and the field that is wrong."""

    code = INVALID_OBJECT


class TooComplex(InvalidObject):
    """The object is beyond the complexity limits: denied with HTTP 400 before it is judged."""

    code = TOO_COMPLEX


def _metadata(body: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = body.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _annotations(body: Mapping[str, Any] | None) -> dict[str, str]:
    found = _metadata(body or {}).get("annotations")
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, Mapping) else {}


def _walk_numbers(node: object, path: str = "") -> Iterator[tuple[str, object]]:
    stack: list[tuple[object, str]] = [(node, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, Mapping):
            stack.extend((value, f"{where}.{key}" if where else str(key)) for key, value in item.items())
        elif isinstance(item, list):
            stack.extend((value, f"{where}[{index}]") for index, value in enumerate(item))
        elif (isinstance(item, int | float) and not isinstance(item, bool)) or (
            isinstance(item, str)
            and (where.endswith(("requests", "limits")) or ".requests." in where or ".limits." in where)
        ):
            yield where, item


def check_sizes(body: Mapping[str, Any]) -> None:
    """Refuse numbers no Kubernetes object can hold before the models do arithmetic on them."""
    for where, value in _walk_numbers(body):
        if isinstance(value, str):
            if len(value) > _MAX_QUANTITY_TEXT or any(
                part.lstrip("+-").isdigit() and len(part.lstrip("+-")) > 2
                for part in value.lower().split("e")[1:]
            ):
                raise InvalidObject(f"{where}: {value[:60]!r} is not a quantity Kubernetes can hold")
        elif isinstance(value, float) and not (abs(value) < _MAX_INT):
            raise InvalidObject(f"{where}: {value!r} is out of range")
        elif isinstance(value, int) and abs(value) >= _MAX_INT:
            raise InvalidObject(f"{where}: the number is out of range")


def parse_workload(plural: str, body: Mapping[str, Any]) -> Workload:
    """A Pod or pod controller from a wire dict; the kind comes from the resource, not the body."""
    workload = WORKLOAD_BY_PLURAL.get(plural)
    if workload is None:
        raise InvalidObject(f"resource {plural!r} is not a workload ComputeGate judges")
    kind = workload.kind
    check_sizes(body)
    data = {**body, "kind": kind}
    try:
        parsed: Workload = Pod.model_validate(data) if kind == "Pod" else Controller.model_validate(data)
    except ValidationError as error:
        raise InvalidObject(describe_validation_error(error)) from None
    spec = parsed.spec if isinstance(parsed, Pod) else _template_spec(parsed)
    if spec is not None and (size := selector_size(spec)) > MAX_SELECTOR_SIZE:
        raise TooComplex(
            f"its nodeSelector and required node affinity hold {size} entries and values; ComputeGate "
            f"judges at most {MAX_SELECTOR_SIZE}. Simplify the placement constraints (e.g. label the nodes "
            "and select the label)"
        )
    return parsed


def _template_spec(controller: Controller) -> Any:
    spec = controller.spec
    if spec.job_template is not None:
        return spec.job_template.spec.template.spec
    return spec.template.spec if spec.template is not None else None


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def stamps(verdict: Verdict, decision_id: str) -> dict[str, str]:
    """The annotations of an admitted accelerator workload (DESIGN.md, the webhook on the wire)."""
    out = {
        DECISION_ANNOTATION: AUDIT if verdict.audit else ADMITTED,
        CODE_ANNOTATION: verdict.code.value,
        # The TPP the decision counted: all accelerators, the worst-case model where assumed.
        TPP_ANNOTATION: _fmt(sum(use.tpp for use in verdict.uses)),
        DECISION_ID_ANNOTATION: decision_id,
    }
    # Only a license that admitted the workload is consumed; an Audit would-be denial is not.
    if verdict.license and verdict.allowed and not verdict.audit:
        out[LICENSE_ANNOTATION] = verdict.license
    return out


def _stamped(verdict: Verdict) -> bool:
    return verdict.allowed and bool(verdict.uses)


def _comparable(annotations: Mapping[str, str]) -> dict[str, str]:
    return {
        k: v for k, v in annotations.items() if k in PROTECTED_ANNOTATIONS and k != DECISION_ID_ANNOTATION
    }


def _patch_to(current: Mapping[str, str], wanted: Mapping[str, str]) -> Annotations:
    patch: Annotations = {key: None for key in PROTECTED_ANNOTATIONS if key in current and key not in wanted}
    patch.update({key: value for key, value in wanted.items() if current.get(key) != value})
    return patch


def _template_annotations(plural: str, body: Mapping[str, Any]) -> dict[str, str]:
    template: Any = body
    for key in WORKLOAD_BY_PLURAL[plural].template_path:
        template = template.get(key) if isinstance(template, Mapping) else None
    return _annotations(template) if isinstance(template, Mapping) else {}


@dataclass
class Reviewer:
    """Judges requests against a live ``ClusterState`` (kept current by the watches)."""

    state: ClusterState
    admin_users: frozenset[str] = frozenset()
    admin_groups: frozenset[str] = frozenset({"system:masters"})
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    new_id: Callable[[], str] = lambda: str(uuid.uuid4())
    exempt_namespaces: frozenset[str] = frozenset()  # the registration's, beside the policy's

    # ----- workloads -----

    def _verdict(self, request: Request, *, keep_stamped_license: bool = False) -> Verdict:
        new = parse_workload(request.plural, request.body)
        if request.operation == "UPDATE" and request.old is not None:
            old = parse_workload(request.plural, request.old)
            return decide_update(self.state, old, new, at=self.clock())
        # The validating webhook judges the license the mutating webhook chose, if it still admits.
        stamped = _annotations(request.body).get(LICENSE_ANNOTATION) if keep_stamped_license else None
        return decide(self.state, new, at=self.clock(), prefer_license=stamped)

    def _invalid(self, request: Request, error: InvalidObject, decision_id: str) -> Outcome:
        what = "judge" if isinstance(error, TooComplex) else "read"
        message = f"[{error.code}] ComputeGate cannot {what} this object: {error}"
        return Outcome(request, False, error.code, message, decision_id, http_code=400)

    def expected_stamps(self, request: Request, verdict: Verdict, decision_id: str) -> dict[str, str]:
        """What the protected annotations must be once the mutating webhook has run."""
        old = _annotations(request.old) if request.operation == "UPDATE" else {}
        if request.operation == "UPDATE" and (
            request.plural == "pods" or any(key in old for key in PROTECTED_ANNOTATIONS)
        ):
            # Kept on UPDATE: a pod's license stamp is what its consumption is counted under.
            return {key: old[key] for key in PROTECTED_ANNOTATIONS if key in old}
        return stamps(verdict, decision_id) if _stamped(verdict) else {}

    def mutate_workload(self, request: Request) -> Outcome:
        """Stamp an admitted accelerator workload; drop hand-set stamps on CREATE, keep them on UPDATE."""
        decision_id = self.new_id()
        try:
            verdict = self._verdict(request)
        except InvalidObject as error:
            return self._invalid(request, error, decision_id)  # the validator denies it
        current = _annotations(request.body)
        wanted = self.expected_stamps(request, verdict, decision_id)
        if request.operation == "CREATE" and not verdict.allowed:
            # A mark for the validating webhook, which may run on a replica whose view differs
            # for a moment (a denied object is never stored, so the mark never outlives it).
            wanted = {DECISION_ANNOTATION: DENIED, CODE_ANNOTATION: verdict.code.value}
        template: Annotations = {}
        if request.operation == "CREATE" and request.plural != "pods":
            # Pods inherit template annotations; a forged stamp there is dropped here (on
            # CREATE only: changing a template on UPDATE would roll the workload out again).
            template = {
                key: None
                for key in _template_annotations(request.plural, request.body)
                if key in PROTECTED_ANNOTATIONS
            }
        pin = None
        if (
            request.operation == "CREATE"
            and request.plural == "pods"
            and verdict.allowed
            and verdict.uses
            and verdict.code is not Code.EXEMPT  # cluster components are not ComputeGate's to place
        ):
            pod = parse_workload(request.plural, request.body)
            assert isinstance(pod, Pod)
            pin = placement_pin(self.state, pod)
        return Outcome(
            request,
            True,
            verdict.code.value,
            verdict.message,
            wanted.get(DECISION_ID_ANNOTATION, decision_id),
            verdict=verdict,
            annotations=_patch_to(current, wanted),
            template_annotations=template,
            pin=pin,
        )

    def validate_workload(self, request: Request) -> Outcome:
        """The decision of record: the engine's verdict, then the stamps re-checked."""
        current = _annotations(request.body)
        decision_id = current.get(DECISION_ID_ANNOTATION) or self.new_id()
        try:
            verdict = self._verdict(request, keep_stamped_license=True)
        except InvalidObject as error:
            return self._invalid(request, error, decision_id)
        outcome = Outcome.of(request, verdict, decision_id)
        if not verdict.allowed:
            return outcome
        if request.operation == "CREATE" and (views_differ := self._views_differ(outcome, current)):
            return views_differ
        wanted = self.expected_stamps(request, verdict, decision_id)
        if _comparable(current) != _comparable(wanted) or (
            wanted and not current.get(DECISION_ID_ANNOTATION)
        ):
            changed = sorted(set(_comparable(current).items()) ^ set(_comparable(wanted).items()))
            keys = ", ".join(sorted({key for key, _ in changed})) or DECISION_ID_ANNOTATION
            message = (
                f"[{PROTECTED_STAMPS}] {verdict.message} But the annotations {keys} do not match this "
                "decision: they are set only by ComputeGate's mutating webhook and cannot be set or "
                "changed by hand (or by another webhook). Remove them and retry."
            )
            return Outcome(request, False, PROTECTED_STAMPS, message, decision_id, verdict=verdict)
        return outcome

    def _views_differ(self, outcome: Outcome, current: Mapping[str, str]) -> Outcome | None:
        """The mutating webhook judged this CREATE on a replica whose view differed a moment ago
        (it refused it, or chose a license of the tenant that this view finds full): refuse,
        retryably, with what the mutating webhook found. None when the stamps are ComputeGate's own
        for this verdict, or are not ComputeGate's at all (then the stamp check refuses them)."""
        verdict = outcome.verdict
        assert verdict is not None
        what = f"{outcome.kind} {outcome.namespace}/{outcome.name}"
        late = "replicas see what other replicas admit or free a moment late"
        if current.get(DECISION_ANNOTATION) == DENIED:
            code = current.get(CODE_ANNOTATION, "")
            if code not in {c.value for c in Code} or Code(code).admits:
                return None
            message = (
                f"[{code}] {what} was refused ([{code}]) when ComputeGate's mutating webhook judged it a "
                f"moment ago; this replica would now admit it ({late}). Retry: the next attempt is judged "
                "again (controllers retry by themselves)."
            )
            denied = verdict.model_copy(update={"allowed": False, "code": Code(code), "message": message})
            return Outcome(outcome.request, False, code, message, outcome.decision_id, verdict=denied)
        stamped = current.get(LICENSE_ANNOTATION)
        tenant_licenses = {lic.metadata.name for lic in self.state.licenses_of(verdict.tenant or "")}
        if verdict.code is Code.LICENSED and stamped != verdict.license and stamped in tenant_licenses:
            reason = (
                f"when ComputeGate's mutating webhook chose ExportLicense {stamped} a moment ago it had room "
                f"for it, and now it does not ({late})"
            )
            return self.not_reserved(outcome, committed_tpp=0.0, max_tpp=0.0, retryable=False, reason=reason)
        return None

    def not_reserved(
        self, outcome: Outcome, *, committed_tpp: float, max_tpp: float, retryable: bool, reason: str
    ) -> Outcome:
        """A licensed pod the ledger did not charge (DESIGN.md step 7): over the cap once every
        replica's admissions are counted, or the ledger could not be settled in time."""
        verdict = outcome.verdict
        assert verdict is not None and verdict.license is not None
        what = f"{outcome.kind} {outcome.namespace}/{outcome.name}"
        if retryable:
            code, http = LEDGER_UNAVAILABLE, 429
            message = (
                f"[{LEDGER_UNAVAILABLE}] {what} could not be charged to ExportLicense {verdict.license} now "
                f"({reason}). Nothing was admitted unaccounted; retry in a few seconds (controllers retry "
                "by themselves)."
            )
        else:
            code, http = Code.LICENSE_CAP_EXCEEDED.value, 403
            detail = reason or (
                f"ExportLicense {verdict.license} has committed {_fmt(committed_tpp)} of its "
                f"{_fmt(max_tpp)} TPP, counting what every webhook replica has admitted"
            )
            message = (
                f"[{code}] {what} asks for {_fmt(verdict.controlled_tpp)} controlled TPP, but {detail}, "
                "so it no longer fits. Free capacity (delete or scale down workloads under the license) "
                "or ask a cluster admin for a larger license; a retry chooses a license again."
            )
        if self.state.policy.enforcement_for(verdict.tenant) is Enforcement.AUDIT:
            audited = verdict.model_copy(update={"audit": True, "license": None})
            warning = f"Audit mode, would deny: {message}"
            return Outcome(
                outcome.request,
                True,
                code,
                message,
                outcome.decision_id,
                verdict=audited,
                warnings=(warning,),
            )
        denied = verdict.model_copy(update={"allowed": False, "message": message})
        return Outcome(
            outcome.request, False, code, message, outcome.decision_id, verdict=denied, http_code=http
        )

    # ----- scale subresource -----

    def validate_scale(self, request: Request, controller: Mapping[str, Any] | None) -> Outcome:
        """A ``scale`` UPDATE judged as the controller's UPDATE from the old to the new replicas."""
        decision_id = self.new_id()
        if controller is None:
            message = (
                f"[{NOT_JUDGED}] the {request.plural} object was not found; its pods are judged on CREATE"
            )
            return Outcome(request, True, NOT_JUDGED, message, decision_id)
        try:
            new_replicas = _replicas(request.body)
            old_replicas = _replicas(request.old) if request.old is not None else None
            base = dict(controller)
            spec = dict(base.get("spec") or {})
            new_body = {**base, "spec": {**spec, "replicas": new_replicas}}
            scale = Request(**{**request.__dict__, "body": new_body, "plural": request.plural})
            if old_replicas is None:
                verdict = decide(self.state, parse_workload(request.plural, new_body), at=self.clock())
            else:
                old_body = {**base, "spec": {**spec, "replicas": old_replicas}}
                verdict = decide_update(
                    self.state,
                    parse_workload(request.plural, old_body),
                    parse_workload(request.plural, new_body),
                    at=self.clock(),
                )
        except InvalidObject as error:
            return self._invalid(request, error, decision_id)
        return Outcome(
            scale,
            verdict.allowed,
            verdict.code.value,
            verdict.message,
            decision_id,
            verdict=verdict,
            warnings=verdict.warnings,
        )

    # ----- resource claims and claim templates -----

    def validate_claim(self, request: Request) -> Outcome:
        """A ResourceClaim or ResourceClaimTemplate judged as a pod that uses it would be, whenever
        it is created or its request changes, whoever owns it: a claim created after its pod (or a
        template after the pod that names it) asks for devices the pod's decision did not see."""
        decision_id = self.new_id()
        template = request.plural == "resourceclaimtemplates"
        kind = "ResourceClaimTemplate" if template else "ResourceClaim"
        try:
            check_sizes(request.body)
            model = ResourceClaimTemplate if template else ResourceClaim
            claim = model.model_validate({**request.body, "kind": kind})
            old = model.model_validate({**request.old, "kind": kind}) if request.old is not None else None
        except InvalidObject as error:
            return self._invalid(request, error, decision_id)
        except ValidationError as error:
            return self._invalid(request, InvalidObject(describe_validation_error(error)), decision_id)
        namespace = claim.metadata.namespace or ""
        name = claim.metadata.name or "claim"
        if request.operation == "UPDATE" and old is not None and old.spec == claim.spec:
            message = f"[{NOT_JUDGED}] the update does not change what the {kind} asks for"
            return Outcome(request, True, NOT_JUDGED, message, decision_id)
        if isinstance(claim, ResourceClaim) and self._made_from_judged_template(request.body, claim):
            message = f"[{NOT_JUDGED}] made from the template its pod was judged with"
            return Outcome(request, True, NOT_JUDGED, message, decision_id)
        reference = {"resourceClaimTemplateName" if template else "resourceClaimName": name}
        pod = Pod.model_validate(
            {
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"resourceClaims": [{"name": "claim", **reference}]},
            }
        )
        key = (namespace, name)
        store = self.state.claim_templates if template else self.state.claims
        previous = store.get(key)
        self.state.upsert(claim)
        try:
            verdict = decide(self.state, pod, at=self.clock())
        finally:
            if previous is not None:
                self.state.upsert(previous)
            else:
                self.state.remove(kind, name, namespace)
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

    def _made_from_judged_template(self, body: Mapping[str, Any], claim: ResourceClaim) -> bool:
        """A claim the resource claim controller made for a pod from a template that pod named and
        this view knows, asking for exactly what the template asks for: judged with the pod."""
        namespace = claim.metadata.namespace or ""
        owners = _metadata(body).get("ownerReferences")
        for owner in owners if isinstance(owners, list) else []:
            if not isinstance(owner, Mapping) or owner.get("kind") != "Pod":
                continue
            pod = self.state.pods.get((namespace, str(owner.get("name") or "")))
            if pod is None or pod.metadata.uid != owner.get("uid"):
                continue
            for reference in pod.spec.resource_claims:
                template = self.state.claim_templates.get(
                    (namespace, reference.resource_claim_template_name or "")
                )
                if template is not None and template.spec.spec == claim.spec:
                    return True
        return False

    # ----- subresources: the stamps, and ephemeral containers -----

    def validate_subresource(self, request: Request) -> Outcome:
        """A status (or other subresource) write that changes the stamps is refused: a pod's
        ``computegate.io/license`` is what its consumption is counted under. A new ephemeral
        container that reaches devices is judged (DESIGN.md step 2)."""
        decision_id = self.new_id()
        current, before = _annotations(request.body), _annotations(request.old)
        changed = sorted(key for key in PROTECTED_ANNOTATIONS if current.get(key) != before.get(key))
        what = f"{request.plural}/{request.subresource} of {_metadata(request.body).get('name', '')}"
        if changed:
            message = (
                f"[{PROTECTED_STAMPS}] The annotations {', '.join(changed)} are set only by ComputeGate's "
                f"mutating webhook and cannot be changed through {request.plural}/{request.subresource}."
            )
            return Outcome(request, False, PROTECTED_STAMPS, message, decision_id)
        if request.plural == "pods" and request.subresource == "ephemeralcontainers":
            return self._ephemeral_containers(request, decision_id)
        return Outcome(
            request, True, NOT_JUDGED, f"[{NOT_JUDGED}] {what}: the stamps do not change", decision_id
        )

    def _ephemeral_containers(self, request: Request, decision_id: str) -> Outcome:
        try:
            pod = parse_workload("pods", request.body)
            old = parse_workload("pods", request.old) if request.old is not None else None
        except InvalidObject as error:
            return self._invalid(request, error, decision_id)
        assert isinstance(pod, Pod)
        known = {c.name for c in old.spec.ephemeral_containers} if isinstance(old, Pod) else set()
        added = [c for c in pod.spec.ephemeral_containers if c.name not in known]
        access = device_access(pod.spec.model_copy(update={"containers": added, "init_containers": []}))
        access = tuple(reason for reason in access if reason.startswith("container "))
        if not access or self.state.policy.device_access is DeviceAccessAction.ALLOW:
            message = f"[{NOT_JUDGED}] no new ephemeral container reaches devices"
            return Outcome(request, True, NOT_JUDGED, message, decision_id)
        # Judged as the pod would be if created with it. A licensed pod's use was charged when it
        # was admitted and cannot grow: an ephemeral container that reaches more is refused.
        verdict = decide(self.state, pod, at=self.clock())
        if verdict.code is not Code.LICENSED:
            return Outcome.of(request, verdict, decision_id)
        code = Code.DEVICE_ACCESS_WITHOUT_REQUEST
        message = (
            f"[{code.value}] An ephemeral container of Pod {pod.metadata.namespace}/{pod.metadata.name} "
            f"would reach accelerators without asking for them ({'; '.join(access)}). Its accelerators "
            "cannot be charged to a license after the pod was admitted; debug without device access."
        )
        if self.state.policy.enforcement is Enforcement.AUDIT:
            audited = verdict.model_copy(update={"audit": True, "code": code, "license": None})
            warning = f"Audit mode, would deny: {message}"
            return Outcome(
                request, True, code.value, message, decision_id, verdict=audited, warnings=(warning,)
            )
        denied = verdict.model_copy(update={"allowed": False, "code": code, "message": message})
        return Outcome(request, False, code.value, message, decision_id, verdict=denied)

    # ----- namespaces: the tenant-label guard and who may create which -----

    def is_admin(self, user: str, groups: Iterable[str]) -> bool:
        return user in self.admin_users or not self.admin_groups.isdisjoint(groups)

    def validate_namespace(self, request: Request) -> Outcome:
        decision_id = self.new_id()
        name = str(_metadata(request.body).get("name") or "")
        admin = self.is_admin(request.user, request.groups)
        admins = ", ".join(sorted(self.admin_groups)) or "none"
        if request.operation == "CREATE" and not admin and request.subresource is None:
            reserved = self._reserved_namespace(name)
            if reserved is not None:
                message = (
                    f"[{NAMESPACE_RESERVED}] Namespace {name} is {reserved}: only ComputeGate administrators "
                    "may create it, so that no one takes a tenant's licenses, or an exemption, by choosing "
                    f"a name. Choose another name, or ask a cluster administrator (groups: {admins})."
                )
                return Outcome(request, False, NAMESPACE_RESERVED, message, decision_id)
        new_label = _labels(request.body).get(TENANT_LABEL)
        old_label = _labels(request.old).get(TENANT_LABEL) if request.old is not None else None
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

    def _reserved_namespace(self, name: str) -> str | None:
        if name in self.exempt_namespaces or name in self.state.policy.exempt_namespaces:
            return "exempt from ComputeGate"
        if self.state.tenants_listing(name):
            return "listed by a Tenant"
        return None


def _labels(body: Mapping[str, Any] | None) -> dict[str, str]:
    found = _metadata(body or {}).get("labels")
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, Mapping) else {}


def _replicas(scale: Mapping[str, Any] | None) -> int:
    spec = (scale or {}).get("spec")
    value = spec.get("replicas", 0) if isinstance(spec, Mapping) else 0
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < _MAX_INT:
        raise InvalidObject(f"spec.replicas: expected a non-negative integer, got {value!r}")
    return value


__all__ = [
    "PROTECTED_ANNOTATIONS",
    "Code",
    "InvalidObject",
    "Outcome",
    "Request",
    "Reviewer",
    "TooComplex",
    "parse_workload",
    "stamps",
]
