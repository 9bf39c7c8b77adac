"""What a review works with: the request, the outcome, our codes beside the engine's, a wire dict
read into models (or refused with the field that is wrong), and the stamps of an admitted
workload. No I/O; ``review`` (workloads) and ``guards`` (claims, subresources, namespaces) judge.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from computegate.engine import Verdict
from computegate.engine.selection import MAX_SELECTOR_SIZE, selector_size
from computegate.models.kube import Controller, Pod, Workload
from computegate.statefiles import describe_validation_error
from computegate.vocabulary import (
    CODE_ANNOTATION,
    DECISION_ANNOTATION,
    DECISION_ID_ANNOTATION,
    LICENSE_ANNOTATION,
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


class InvalidObject(ValueError):
    """The object cannot be read: denied with HTTP 400 and the field that is wrong."""

    code = INVALID_OBJECT


class TooComplex(InvalidObject):
    """The object is beyond the complexity limits: denied with HTTP 400 before it is judged."""

    code = TOO_COMPLEX


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
        return str(metadata_of(self.request.body).get("namespace") or "")

    @property
    def name(self) -> str:
        meta = metadata_of(self.request.body)
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

    @classmethod
    def invalid(cls, request: Request, error: InvalidObject, decision_id: str) -> Outcome:
        """The object could not be read (or is too complex to judge): HTTP 400, the reason."""
        what = "judge" if isinstance(error, TooComplex) else "read"
        message = f"[{error.code}] ComputeGate cannot {what} this object: {error}"
        return cls(request, False, error.code, message, decision_id, http_code=400)

    @property
    def would_deny(self) -> bool:
        """Denied, or admitted only because of Audit: what gets an Event."""
        return not self.allowed or bool(self.verdict and self.verdict.audit)


def metadata_of(body: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = body.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def annotations_of(body: Mapping[str, Any] | None) -> dict[str, str]:
    found = metadata_of(body or {}).get("annotations")
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, Mapping) else {}


def labels_of(body: Mapping[str, Any] | None) -> dict[str, str]:
    found = metadata_of(body or {}).get("labels")
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, Mapping) else {}


# ----- the wire dict read into models -----


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


def parse_replicas(scale: Mapping[str, Any] | None) -> int:
    """``spec.replicas`` of a Scale."""
    spec = (scale or {}).get("spec")
    value = spec.get("replicas", 0) if isinstance(spec, Mapping) else 0
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < _MAX_INT:
        raise InvalidObject(f"spec.replicas: expected a non-negative integer, got {value!r}")
    return value


# ----- the stamps -----


def format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def stamps(verdict: Verdict, decision_id: str) -> dict[str, str]:
    """The annotations of an admitted accelerator workload (DESIGN.md, the webhook on the wire)."""
    out = {
        DECISION_ANNOTATION: AUDIT if verdict.audit else ADMITTED,
        CODE_ANNOTATION: verdict.code.value,
        # The TPP the decision counted: all accelerators, the worst-case model where assumed.
        TPP_ANNOTATION: format_number(sum(use.tpp for use in verdict.uses)),
        DECISION_ID_ANNOTATION: decision_id,
    }
    # Only a license that admitted the workload is consumed; an Audit would-be denial is not.
    if verdict.license and verdict.allowed and not verdict.audit:
        out[LICENSE_ANNOTATION] = verdict.license
    return out
