"""AdmissionReview request and response (``admission.k8s.io/v1``) as pydantic models, defined once.

A body is parsed once, from its bytes, into ``AdmissionReviewRequest``: anything that is not a
review we can answer is a ``BadReview`` (HTTP 400 with a one-line reason), so nothing reaches
the review that it cannot read. Every answer is written by ``answer``; tests build requests and
read responses with the same models.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from computegate.statefiles import describe_validation_error

API_VERSION: Final = "admission.k8s.io/v1"
KIND: Final = "AdmissionReview"

Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class GroupVersionKind(_Wire):
    group: str = ""
    version: str
    kind: str


class GroupVersionResource(_Wire):
    group: str = ""
    version: str
    resource: str


class UserInfo(_Wire):
    username: str = ""
    uid: str | None = None
    groups: list[str] = Field(default_factory=list)
    extra: dict[str, list[str]] = Field(default_factory=dict)


class AdmissionRequest(_Wire):
    uid: str = Field(min_length=1, max_length=256)
    kind: GroupVersionKind
    resource: GroupVersionResource
    sub_resource: str | None = None
    name: str = ""
    namespace: str | None = None
    operation: Operation
    user_info: UserInfo
    object: dict[str, Any] | None = None
    old_object: dict[str, Any] | None = None
    dry_run: bool = False
    options: dict[str, Any] | None = None


class AdmissionReviewRequest(_Wire):
    """What the API server posts."""

    api_version: Literal["admission.k8s.io/v1"]
    kind: Literal["AdmissionReview"]
    request: AdmissionRequest


class Status(_Wire):
    code: int | None = None
    message: str = ""
    reason: str | None = None


class AdmissionResponse(_Wire):
    uid: str
    allowed: bool
    status: Status | None = None
    patch: str | None = None
    patch_type: Literal["JSONPatch"] | None = None
    warnings: list[str] = Field(default_factory=list)
    audit_annotations: dict[str, str] = Field(default_factory=dict)


class AdmissionReviewResponse(_Wire):
    """What the webhook answers."""

    api_version: Literal["admission.k8s.io/v1"] = API_VERSION
    kind: Literal["AdmissionReview"] = KIND
    response: AdmissionResponse


class BadReview(ValueError):
    """The body is not an AdmissionReview we can answer: the API server gets HTTP 400."""


_JSON_TYPES = {dict: "object", list: "list", str: "string", int: "number", float: "number", bool: "boolean"}


def parse_review(raw: bytes) -> AdmissionReviewRequest:
    """The review in a request body; raise ``BadReview`` with a one-line reason.

    pydantic's JSON parser reads the bytes once, straight into the models, and refuses nesting
    deeper than its recursion limit (a few hundred levels) as invalid JSON.
    """
    try:
        review = AdmissionReviewRequest.model_validate_json(raw)
    except ValidationError as error:
        first = error.errors()[0]
        if first["type"] == "json_invalid":
            raise BadReview(f"the body is not JSON: {first['msg']}") from None
        if first["type"] == "model_type" and not first["loc"]:
            found = _JSON_TYPES.get(type(first["input"]), "null")
            raise BadReview(f"expected an AdmissionReview object, got a JSON {found}") from None
        raise BadReview(f"not an {API_VERSION} AdmissionReview: {describe_validation_error(error)}") from None
    request = review.request
    if request.object is None and request.old_object is None:
        raise BadReview("request.object is missing: nothing to judge")
    return review


_REASONS: Final = {
    400: "BadRequest",
    403: "Forbidden",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


def answer(
    uid: str,
    *,
    allowed: bool,
    message: str = "",
    code: int = 403,
    warnings: Sequence[str] = (),
    patch: Sequence[Mapping[str, Any]] = (),
    audit_annotations: Mapping[str, str] | None = None,
) -> bytes:
    """The one place a review's answer is written: the AdmissionReview response as JSON bytes.

    A denial carries the HTTP-style ``code`` and its reason, so ``kubectl`` says
    ``Error from server (Forbidden): ...``; an admission may carry a JSON patch.
    """
    response: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed:
        response["status"] = {"code": code, "message": message, "reason": _REASONS.get(code, "")}
    if warnings:
        response["warnings"] = list(warnings)
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(list(patch), separators=(",", ":")).encode()).decode()
    if audit_annotations:
        response["auditAnnotations"] = dict(audit_annotations)
    return json.dumps(
        {"apiVersion": API_VERSION, "kind": KIND, "response": response}, separators=(",", ":")
    ).encode()


def _pointer(keys: Iterable[str]) -> str:
    return "".join("/" + key.replace("~", "~0").replace("/", "~1") for key in keys)


def annotations_patch(
    obj: Mapping[str, Any], at: Sequence[str], changes: Mapping[str, str | None]
) -> list[dict[str, Any]]:
    """JSON patch operations that apply ``changes`` (``None`` removes a key) to the annotations of
    the object found at keys ``at`` inside ``obj``, reading ``obj`` and copying nothing of it."""
    if not changes:
        return []
    node: Any = obj
    for key in at:
        node = node.get(key) if isinstance(node, Mapping) else None
    metadata = node.get("metadata") if isinstance(node, Mapping) else None
    current = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    additions = {key: value for key, value in changes.items() if value is not None}
    if not isinstance(current, Mapping):
        if not additions:
            return []
        if not isinstance(metadata, Mapping):
            return [{"op": "add", "path": _pointer([*at, "metadata"]), "value": {"annotations": additions}}]
        return [{"op": "add", "path": _pointer([*at, "metadata", "annotations"]), "value": additions}]
    operations: list[dict[str, Any]] = []
    for key, value in changes.items():
        path = _pointer([*at, "metadata", "annotations", key])
        if value is None:
            if key in current:
                operations.append({"op": "remove", "path": path})
        else:
            operations.append({"op": "replace" if key in current else "add", "path": path, "value": value})
    return operations


_REQUIRED = ("spec", "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution")


def affinity_patch(pod: Mapping[str, Any], key: str, values: Sequence[str]) -> list[dict[str, Any]]:
    """JSON patch operations that AND ``key In values`` into every required node selector term of
    the pod (adding the affinity where there is none), reading ``pod`` and copying nothing of it.
    A term that already holds that requirement is left alone (reinvocation adds nothing)."""
    requirement = {"key": key, "operator": "In", "values": list(values)}
    node: Any = pod
    for depth, field in enumerate(_REQUIRED):
        child = node.get(field) if isinstance(node, Mapping) else None
        if not isinstance(child, Mapping):
            value: dict[str, Any] = {"nodeSelectorTerms": [{"matchExpressions": [requirement]}]}
            for outer in reversed(_REQUIRED[depth + 1 :]):
                value = {outer: value}
            return [{"op": "add", "path": _pointer(_REQUIRED[: depth + 1]), "value": value}]
        node = child
    terms = node.get("nodeSelectorTerms")
    if not isinstance(terms, list) or not terms:
        path = _pointer([*_REQUIRED, "nodeSelectorTerms"])
        return [{"op": "add", "path": path, "value": [{"matchExpressions": [requirement]}]}]
    operations: list[dict[str, Any]] = []
    for index, term in enumerate(terms):
        expressions = term.get("matchExpressions") if isinstance(term, Mapping) else None
        at = [*_REQUIRED, "nodeSelectorTerms", str(index), "matchExpressions"]
        if not isinstance(expressions, list):
            operations.append({"op": "add", "path": _pointer(at), "value": [requirement]})
        elif requirement not in expressions:
            operations.append({"op": "add", "path": _pointer([*at, "-"]), "value": requirement})
    return operations
