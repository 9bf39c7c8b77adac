"""One admission request for a workload in, one ``Outcome`` out: the webhook's translation around
the engine.

No I/O and no Kopf here, so every rule of the wire (stamps, scale, the ledger's refusals) is
testable without a server. The engine makes the decision; this module only picks ``decide`` or
``decide_update``, says which annotations to stamp and what the user reads. The requests that
are not workloads (claims, subresources, namespaces) are judged by ``guards``; ``Reviewer`` is
the one entry point for both.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from computegate.engine import ClusterState, Code, Verdict, decide, decide_update
from computegate.engine.footprint import placement_pin
from computegate.models.kube import Pod
from computegate.models.resources import Enforcement
from computegate.vocabulary import (
    CODE_ANNOTATION,
    DECISION_ANNOTATION,
    DECISION_ID_ANNOTATION,
    LICENSE_ANNOTATION,
    PROTECTED_ANNOTATIONS,
    WORKLOAD_BY_PLURAL,
)
from computegate.webhook import guards
from computegate.webhook.outcome import (
    DENIED,
    LEDGER_UNAVAILABLE,
    NOT_JUDGED,
    PROTECTED_STAMPS,
    Annotations,
    InvalidObject,
    Outcome,
    Request,
    annotations_of,
    format_number,
    parse_replicas,
    parse_workload,
    stamps,
)


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
    return annotations_of(template) if isinstance(template, Mapping) else {}


@dataclass
class Reviewer:
    """Judges requests against a live ``ClusterState`` (kept current by the watches), never writing it."""

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
        stamped = annotations_of(request.body).get(LICENSE_ANNOTATION) if keep_stamped_license else None
        return decide(self.state, new, at=self.clock(), prefer_license=stamped)

    def expected_stamps(self, request: Request, verdict: Verdict, decision_id: str) -> dict[str, str]:
        """What the protected annotations must be once the mutating webhook has run."""
        old = annotations_of(request.old) if request.operation == "UPDATE" else {}
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
            return Outcome.invalid(request, error, decision_id)  # the validator denies it
        current = annotations_of(request.body)
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
        current = annotations_of(request.body)
        decision_id = current.get(DECISION_ID_ANNOTATION) or self.new_id()
        try:
            verdict = self._verdict(request, keep_stamped_license=True)
        except InvalidObject as error:
            return Outcome.invalid(request, error, decision_id)
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
                f"ExportLicense {verdict.license} has committed {format_number(committed_tpp)} of its "
                f"{format_number(max_tpp)} TPP, counting what every webhook replica has admitted"
            )
            message = (
                f"[{code}] {what} asks for {format_number(verdict.controlled_tpp)} controlled TPP, but "
                f"{detail}, so it no longer fits. Free capacity (delete or scale down workloads under the "
                "license) or ask a cluster admin for a larger license; a retry chooses a license again."
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
            new_replicas = parse_replicas(request.body)
            old_replicas = parse_replicas(request.old) if request.old is not None else None
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
            return Outcome.invalid(request, error, decision_id)
        return Outcome.of(scale, verdict, decision_id)

    # ----- claims, subresources and namespaces: the guards -----

    def validate_claim(self, request: Request) -> Outcome:
        return guards.validate_claim(self.state, request, self.new_id(), at=self.clock())

    def validate_subresource(self, request: Request) -> Outcome:
        return guards.validate_subresource(self.state, request, self.new_id(), at=self.clock())

    def is_admin(self, user: str, groups: Iterable[str]) -> bool:
        return user in self.admin_users or not self.admin_groups.isdisjoint(groups)

    def validate_namespace(self, request: Request) -> Outcome:
        return guards.validate_namespace(
            self.state,
            request,
            self.new_id(),
            admin=self.is_admin(request.user, request.groups),
            admin_groups=self.admin_groups,
            exempt_namespaces=self.exempt_namespaces,
        )


__all__ = ["Reviewer"]
