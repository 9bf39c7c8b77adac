"""The running operator's parts in one object: state, reviewer, observers and API access.

The webhook server hands it each parsed review (``admit``); it asks the ``Reviewer``, answers
(deny, warn, patch) and observes (metric, log line, Event). Our own LISTs and WATCHes
(``watch.Watches``) feed its state (``watched``, ``listed``). It owns no decision logic of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf

from computegate.engine import ClusterState, Code
from computegate.engine.asks import CDI_ANNOTATION_PREFIX, DEVICE_ENV_VARS
from computegate.engine.ledger import ReserveRequest, exact
from computegate.statefiles import Document, InputError, parse_state_object
from computegate.vocabulary import (
    CODE_ANNOTATION,
    CONTROLLERS,
    SCALABLE,
    STATE_KINDS,
    WORKLOAD_BY_PLURAL,
)
from computegate.webhook.admission import AdmissionRequest, affinity_patch, annotations_patch, answer
from computegate.webhook.configuration import (
    MUTATE_WORKLOADS,
    SUBRESOURCES,
    VALIDATE_NAMESPACES,
    VALIDATE_RESOURCE_CLAIMS,
    VALIDATE_SCALE,
    VALIDATE_SUBRESOURCES,
    VALIDATE_WORKLOADS,
)
from computegate.webhook.kube import Kube
from computegate.webhook.ledger import LedgerWriter
from computegate.webhook.observe import Metrics, event_for, log_decision
from computegate.webhook.outcome import NOT_READY, Outcome, Request
from computegate.webhook.review import Reviewer
from computegate.webhook.server import WebhookServer
from computegate.webhook.usage import UsageRecorder
from computegate.webhook.watch import object_key

logger = logging.getLogger(__name__)
_WATCH = Path("<watch>")


@dataclass
class Runtime:
    state: ClusterState
    reviewer: Reviewer
    metrics: Metrics
    decisions: logging.Logger
    kube: Kube
    server: WebhookServer
    ledger: LedgerWriter | None  # None only to measure what the ledger costs
    usage: UsageRecorder | None = None  # the usage record: its chain head goes in audit annotations
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    _synced_kinds: set[str] = field(default_factory=set)
    licenses_changed: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def ready(self) -> bool:
        return self.synced.is_set() and self.server.listening.is_set()

    def configure(self, settings: kopf.OperatorSettings) -> None:
        settings.admission.server = None  # admission is served by our own server (``admit``)
        settings.admission.managed = None  # we register our own configuration (matchConditions &c.)
        settings.posting.enabled = False  # we post our own Events, one per denial
        settings.scanning.disabled = True  # Kopf watches nothing: no CRD to notice (``watch``)
        settings.networking.error_backoffs = [1, 2, 5, 10]

    # ----- the state, from our own LISTs and WATCHes (``watch.Watches``) -----

    def watched(self, kind: str, event_type: str, body: Mapping[str, Any]) -> None:
        """An object from a LIST ("ADDED") or a WATCH event."""
        if event_type == "DELETED":
            self._remove(kind, *object_key(body))
        else:
            self.upsert(kind, body)

    def listed(self, kind: str, keys: set[tuple[str, str]]) -> None:
        """After a complete LIST of ``kind``: what is kept that it did not return is gone."""
        for namespace, name in [key for key in self._kept(kind) if key not in keys]:
            self._remove(kind, namespace, name)
        self._synced_kinds.add(kind)
        # Ready only once every kind has been read whole: a partial view must not judge.
        if self.synced.is_set() or not {k.kind for k in STATE_KINDS} <= self._synced_kinds:
            return
        self.synced.set()
        self.metrics.synced.set(1)
        logger.info(
            "State synced: %d tenants, %d licenses, %d nodes, %d pods kept",
            len(self.state.tenants),
            len(self.state.licenses),
            len(self.state.nodes),
            len(self.state.pods),
        )

    def upsert(self, kind: str, body: Mapping[str, Any]) -> None:
        if kind == "Pod" and not self._judged_after_admission(body):
            if object_key(body) in self.state.pods:
                self._remove(kind, *object_key(body))
            return
        data = {**dict(body), "kind": kind}
        try:
            obj = parse_state_object(Document(_WATCH, 1, data))
        except InputError as error:
            # Forget an object we cannot read: a stale Tenant or license must not keep admitting.
            logger.warning("Ignoring an unreadable %s: %s", kind, error)
            namespace, name = object_key(body)
            self.state.remove(kind, name, namespace or None)
        else:
            self.state.upsert(obj)
        # What a license's consumption, or a running pod's judgement, depends on.
        if kind in {
            "ExportLicense",
            "Pod",
            "CompliancePolicy",
            "AcceleratorProfile",
            "Node",
            "Tenant",
            "Namespace",
        }:
            self.licenses_changed.set()

    def _judged_after_admission(self, pod: Mapping[str, Any]) -> bool:
        """Which pods the operator keeps: those a decision stamped (a license's consumption, and
        every one judged again after admission), and unstamped pods that may use accelerators,
        which ran before ComputeGate was installed or while its webhooks were away, so that they
        are judged after all. CPU-only pods, and pods of the namespaces the registration exempts,
        are neither parsed nor kept."""
        meta = pod.get("metadata") or {}
        if CODE_ANNOTATION in (meta.get("annotations") or {}):
            return True
        if meta.get("namespace") in self.reviewer.exempt_namespaces:
            return False
        return may_use_accelerators(pod)

    def _remove(self, kind: str, namespace: str, name: str) -> None:
        self.state.remove(kind, name, namespace or None)
        if kind in {"ExportLicense", "Pod", "Tenant", "Namespace", "CompliancePolicy"}:
            self.licenses_changed.set()

    def _kept(self, kind: str) -> list[tuple[str, str]]:
        """The (namespace or "", name) of every object of ``kind`` in the state."""
        state = self.state
        by_namespace: dict[str, Mapping[tuple[str, str], object]] = {
            "Pod": state.pods,
            "ResourceClaim": state.claims,
            "ResourceClaimTemplate": state.claim_templates,
        }
        if kind in by_namespace:
            return list(by_namespace[kind])
        if kind == "CompliancePolicy":
            return [("", state.policy_object.metadata.name)] if state.policy_object is not None else []
        by_name: dict[str, Mapping[str, object]] = {
            "Tenant": state.tenants,
            "ExportLicense": state.licenses,
            "AcceleratorProfile": state.cluster_profiles,
            "Namespace": state.namespaces,
            "Node": state.nodes,
            "DeviceClass": state.device_classes,
        }
        return [("", name) for name in by_name[kind]]

    # ----- admission -----

    async def admit(self, webhook: str, review: AdmissionRequest) -> bytes:
        """One parsed review in, the answer's bytes out. ``LookupError``: not ours to judge."""
        started = time.perf_counter()
        request = Request.of(webhook, review)
        _check_served(webhook, request)
        if not self.synced.is_set():
            # A partial view (no policy, no licenses yet) must not judge: refuse, retryably.
            if webhook == MUTATE_WORKLOADS:
                return answer(review.uid, allowed=True)  # the validating webhook refuses it
            message = (
                f"[{NOT_READY}] ComputeGate has not finished reading the cluster's tenants, licenses "
                "and policy since it started; retry in a few seconds."
            )
            return answer(review.uid, allowed=False, message=message, code=503)
        if webhook == MUTATE_WORKLOADS:
            return self._mutate(request)
        if webhook == VALIDATE_NAMESPACES:
            outcome = self.reviewer.validate_namespace(request)
        elif webhook == VALIDATE_RESOURCE_CLAIMS:
            outcome = self.reviewer.validate_claim(request)
        elif webhook == VALIDATE_SUBRESOURCES:
            outcome = self.reviewer.validate_subresource(request)
        elif webhook == VALIDATE_SCALE:
            outcome = self.reviewer.validate_scale(request, await self._controller_of(request))
        else:
            outcome = await self._reserved(self.reviewer.validate_workload(request))
        self._observe(outcome, time.perf_counter() - started)
        return answer(
            review.uid,
            allowed=outcome.allowed,
            message=outcome.message,
            code=outcome.http_code,
            warnings=outcome.warnings,
            # The usage record's chain head, into the API server's audit log (docs/compliance.md).
            audit_annotations=self.usage.audit_annotations() if self.usage is not None else None,
        )

    async def _reserved(self, outcome: Outcome) -> Outcome:
        """An admitted licensed pod is charged to its license's ledger before it is admitted
        (DESIGN.md step 7); dry runs and admissions only Audit allowed reserve nothing."""
        verdict, request = outcome.verdict, outcome.request
        if (
            self.ledger is None
            or verdict is None
            or not outcome.allowed
            or verdict.audit
            or verdict.license is None
            or verdict.code is not Code.LICENSED
            or request.dry_run
            or request.operation != "CREATE"
            or request.plural != "pods"
        ):
            return outcome
        meta = request.body.get("metadata") or {}
        reservation = ReserveRequest(
            uid=str(meta.get("uid") or request.uid),
            pod=f"{meta.get('namespace') or ''}/{meta.get('name') or meta.get('generateName') or ''}",
            tpp=exact(verdict.controlled_tpp),
            accelerators=exact(verdict.controlled_accelerators),
        )
        settled = await self.ledger.reserve(verdict.license, reservation)
        if settled.reserved:
            return outcome
        return self.reviewer.not_reserved(
            outcome,
            committed_tpp=float(settled.committed_tpp),
            max_tpp=float(settled.max_tpp),
            retryable=settled.reserved is None,
            reason=settled.reason,
        )

    def _mutate(self, request: Request) -> bytes:
        outcome = self.reviewer.mutate_workload(request)
        patch = annotations_patch(request.body, (), outcome.annotations)
        if outcome.template_annotations:
            at = WORKLOAD_BY_PLURAL[request.plural].template_path
            patch += annotations_patch(request.body, at, outcome.template_annotations)
        if outcome.pin is not None:
            patch += affinity_patch(request.body, *outcome.pin)
        return answer(request.uid, allowed=True, patch=patch)

    async def _controller_of(self, request: Request) -> Mapping[str, Any] | None:
        meta = request.body.get("metadata") or {}
        try:
            return await self.kube.read_controller(
                request.plural, str(meta.get("namespace") or ""), str(meta.get("name") or "")
            )
        except Exception as error:  # the pods a scale-up makes are still judged on CREATE
            logger.warning(
                "Could not read %s %s for a scale request: %s", request.plural, meta.get("name"), error
            )
            return None

    def _observe(self, outcome: Outcome, seconds: float) -> None:
        self.metrics.record(outcome, seconds)
        if self.usage is not None and not outcome.allowed and not outcome.request.dry_run:
            self.usage.denied(outcome.verdict.tenant if outcome.verdict else None, outcome.code)
        log_decision(self.decisions, outcome, seconds)
        event = event_for(outcome)
        if event is not None:
            # After the response: an Event never delays or changes the decision.
            self.spawn(self.kube.post_event(event))

    def spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


_SCALABLE_PLURALS = frozenset(workload.plural for workload in SCALABLE)
_GUARDED_SUBRESOURCES = frozenset(
    [
        *(name for name, how in SUBRESOURCES.items() if name.startswith("pods/") and how == "webhook"),
        *(f"{workload.plural}/status" for workload in CONTROLLERS),
    ]
)


def _check_served(webhook: str, request: Request) -> None:
    """Each webhook judges the resources its configuration sends it, and nothing else."""
    if webhook in (VALIDATE_WORKLOADS, MUTATE_WORKLOADS):
        served = request.plural in WORKLOAD_BY_PLURAL and not request.subresource
    elif webhook == VALIDATE_SCALE:
        served = request.plural in _SCALABLE_PLURALS and request.subresource == "scale"
    elif webhook == VALIDATE_RESOURCE_CLAIMS:
        served = request.plural in ("resourceclaims", "resourceclaimtemplates") and not request.subresource
    elif webhook == VALIDATE_SUBRESOURCES:
        served = f"{request.plural}/{request.subresource}" in _GUARDED_SUBRESOURCES
    else:
        served = request.plural == "namespaces" and request.subresource in (None, "status", "finalize")
    if not served:
        what = request.plural + (f"/{request.subresource}" if request.subresource else "")
        raise LookupError(f"the webhook {webhook} does not judge {what}")


def may_use_accelerators(pod: Mapping[str, Any]) -> bool:
    """A raw pod that asks for an extended resource (every accelerator resource is one:
    ``vendor/name``), a resource claim, or devices without asking (a CDI annotation, a privileged
    container, a device variable, a host path, a runtime class): a coarse, cheap filter before
    any parsing; the engine decides whether it uses accelerators (``running_pods``)."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if any(str(key).startswith(CDI_ANNOTATION_PREFIX) for key in annotations):
        return True
    spec = pod.get("spec") or {}
    if spec.get("resourceClaims") or spec.get("runtimeClassName"):
        return True
    if any(volume.get("hostPath") for volume in spec.get("volumes") or [] if isinstance(volume, Mapping)):
        return True
    for part in ("containers", "initContainers", "ephemeralContainers"):
        for container in spec.get(part) or []:
            if not isinstance(container, Mapping):
                continue
            resources = container.get("resources") or {}
            for amounts in (resources.get("requests") or {}, resources.get("limits") or {}):
                if any("/" in str(name) for name in amounts):
                    return True
            if (container.get("securityContext") or {}).get("privileged"):
                return True
            if any(str((env or {}).get("name", "")) in DEVICE_ENV_VARS for env in container.get("env") or []):
                return True
    return False
