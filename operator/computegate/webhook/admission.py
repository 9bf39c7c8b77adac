"""AdmissionReview request and response (``admission.k8s.io/v1``) as pydantic models, defined once.

The server checks every body against ``AdmissionReview`` before Kopf sees it, so a malformed
review gets a clear HTTP 400 instead of an error deep inside a handler; tests build requests
and read responses with the same models.
"""

from __future__ import annotations

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


def parse_review(data: object) -> AdmissionReviewRequest:
    """Check a decoded JSON body; raise ``BadReview`` with a one-line reason."""
    if not isinstance(data, dict):
        raise BadReview(f"expected an AdmissionReview object, got a JSON {type(data).__name__}")
    try:
        return AdmissionReviewRequest.model_validate(data)
    except ValidationError as error:
        raise BadReview(f"not an {API_VERSION} AdmissionReview: {describe_validation_error(error)}") from None
