"""openreports.io ``Report`` objects (``openreports.io/v1alpha1``, the shape Kyverno writes): one
per judged pod (every running pod a decision stamped), named after and owned by it, so the
pod's deletion takes it away: ``fail`` (a violation) or ``warn`` (Audit) per code, or ``pass``.

Written by the elected replica (``computegate.webhook.compliance.Compliance.publish``) only
while the Report CRD is served: it is not ComputeGate's, and another tool may install it, so
it is looked up in discovery (every minute while served; while not, at every pass that has
findings to report). The write load is bounded: a Report is written only when its result
changes (a new leader lists the Reports once to learn what they say), at most
``writes_per_second`` (findings first; the rest at the next passes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from computegate.engine.compliance import Finding
from computegate.models.kube import Pod
from computegate.vocabulary import CODE_ANNOTATION, LICENSE_ANNOTATION
from computegate.webhook.budget import TokenBucket
from computegate.webhook.kube import Conflict, Kube
from computegate.webhook.observe import EVENT_SOURCE

logger = logging.getLogger(__name__)

REPORTS_API = "/apis/openreports.io/v1alpha1"
REPORT_POLICY = "computegate-export-controls"
MANAGED_BY = {"app.kubernetes.io/managed-by": "computegate"}


def number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 6)


@dataclass
class Reports:
    kube: Kube
    clock: Callable[[], datetime]
    recheck_seconds: float = 60.0
    writes_per_second: float = 20.0  # also the burst: a pass writes at most this many at once
    _written: dict[str, str] = field(default_factory=dict)  # pod uid → what its Report says
    _listed: bool = False  # the Reports in the cluster read in this term
    _served: tuple[bool, float] | None = None  # (served, when checked)

    def __post_init__(self) -> None:
        self.budget = TokenBucket(self.writes_per_second, self.writes_per_second)

    def resign(self) -> None:
        """Another replica may write Reports meanwhile: what this one wrote is no guide then."""
        self._written.clear()
        self._listed = False

    async def write(self, findings: Sequence[Finding], judged: Sequence[Pod]) -> None:
        """A Report for every ``judged`` pod: its findings, or ``pass``; written when that
        changes, findings first, at most ``writes_per_second``."""
        if not await self._available(bool(findings)):
            return
        if not self._listed:
            await self._read_written()
        now = self.clock()
        by_uid = {f.uid: f for f in findings if f.uid}
        due: list[tuple[str, str, str, str, list[dict[str, Any]]]] = []  # uid, says, where, results
        for finding in by_uid.values():
            says = f"{'fail' if finding.enforced else 'warn'}:{finding.code.value}"
            if self._written.get(finding.uid) != says:
                due.append((finding.uid, says, finding.namespace, finding.name, report_results(finding, now)))
        for pod in judged:
            uid = pod.metadata.uid or ""
            if uid and uid not in by_uid and self._written.get(uid) != "pass":
                results = [pass_result(pod, now)]
                due.append((uid, "pass", pod.metadata.namespace or "", pod.metadata.name, results))
        for uid, says, namespace, name, results in due:
            if not self.budget.take(now):
                break  # the rest at the next passes
            if await self._put(namespace, name, uid, results):
                self._written[uid] = says
        judged_uids = {pod.metadata.uid for pod in judged}
        self._written = {uid: says for uid, says in self._written.items() if uid in judged_uids}

    async def _read_written(self) -> None:
        """At the start of a term: what the Reports in the cluster say, so only changes are
        written (a Report per running pod, not one per pod at every change of leader)."""
        selector = ",".join(f"{key}={value}" for key, value in MANAGED_BY.items())
        async for page in self.kube.pages(f"{REPORTS_API}/reports", selector=selector):
            for item in page:
                uid = str((item.get("metadata") or {}).get("name"))
                self._written[uid] = _says(list(item.get("results") or []))
        self._listed = True

    async def _available(self, findings: bool) -> bool:
        now = self.clock().timestamp()
        # Looked up again every minute while served; while not, at every pass that has findings
        # to report (a CRD just installed is used at once), else every half minute.
        served_before = self._served is not None and self._served[0]
        recheck = self.recheck_seconds if served_before else (0.0 if findings else 30.0)
        if self._served is None or now - self._served[1] > recheck:
            try:
                found = await self.kube.get(REPORTS_API, urgent=False)
                served = found is not None and any(
                    r.get("name") == "reports" for r in found.get("resources") or []
                )
            except Exception:
                served = False
            self._served = (served, now)
        return self._served[0]

    async def _put(self, namespace: str, pod: str, uid: str, results: list[dict[str, Any]]) -> bool:
        body = report(namespace, pod, uid, results)
        path = f"{REPORTS_API}/namespaces/{namespace}/reports"
        try:
            try:
                await self.kube.post(path, body, urgent=False)
            except Conflict:
                existing = await self.kube.get(f"{path}/{uid}", urgent=False)
                if existing is None:
                    return False
                meta = {**body["metadata"], "resourceVersion": existing["metadata"]["resourceVersion"]}
                await self.kube.put(f"{path}/{uid}", {**body, "metadata": meta}, urgent=False)
        except Exception as error:
            logger.warning("Could not write the Report of pod %s/%s: %s", namespace, pod, error)
            return False
        return True


def _says(results: list[dict[str, Any]]) -> str:
    """What a Report says, to compare with what it should say: ``pass``, or the first result
    and its rule (the code)."""
    failing = [r for r in results if r.get("result") != "pass"]
    return f"{failing[0].get('result')}:{failing[0].get('rule')}" if failing else "pass"


def report_results(finding: Finding, at: datetime) -> list[dict[str, Any]]:
    properties = {
        "code": finding.code.value,
        "controlledTPP": str(number(finding.controlled_tpp)),
        "controlledAccelerators": str(number(finding.controlled_accelerators)),
    }
    if finding.tenant:
        properties["tenant"] = finding.tenant
    if finding.license:
        properties["license"] = finding.license
    return [
        {
            "source": EVENT_SOURCE,
            "policy": REPORT_POLICY,
            "rule": finding.code.value,
            "category": "Export controls",
            "severity": "high",
            "result": "fail" if finding.enforced else "warn",
            "scored": True,
            "message": finding.message,
            "properties": properties,
            "timestamp": {"seconds": int(at.timestamp()), "nanos": 0},
        }
    ]


def pass_result(pod: Pod, at: datetime) -> dict[str, Any]:
    """A judged pod that would be admitted now; its properties say how it was admitted."""
    annotations = pod.metadata.annotations
    properties = {"code": annotations.get(CODE_ANNOTATION, "")}
    if annotations.get(LICENSE_ANNOTATION):
        properties["license"] = annotations[LICENSE_ANNOTATION]
    return {
        "source": EVENT_SOURCE,
        "policy": REPORT_POLICY,
        "rule": "Rejudge",
        "category": "Export controls",
        "severity": "high",
        "result": "pass",
        "scored": True,
        "message": "the running pod would be admitted now",
        "properties": properties,
        "timestamp": {"seconds": int(at.timestamp()), "nanos": 0},
    }


def report(namespace: str, pod: str, uid: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """An openreports.io Report for one pod, named after and owned by it (as Kyverno writes its
    per-resource reports), so it goes when the pod goes."""
    summary = {
        key: sum(1 for r in results if r["result"] == key)
        for key in ("pass", "fail", "warn", "error", "skip")
    }
    return {
        "apiVersion": "openreports.io/v1alpha1",
        "kind": "Report",
        "metadata": {
            "name": uid,
            "namespace": namespace,
            "labels": {**MANAGED_BY, "computegate.io/pod-uid": uid},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": pod, "uid": uid}],
        },
        "scope": {"apiVersion": "v1", "kind": "Pod", "namespace": namespace, "name": pod, "uid": uid},
        "summary": summary,
        "results": results,
    }


__all__ = ["REPORTS_API", "Reports", "number", "pass_result", "report", "report_results"]
