"""openreports.io ``Report`` objects (``openreports.io/v1alpha1``, the shape Kyverno writes): one
per judged pod, named after and owned by it, so the pod's deletion takes it away.

Written by the elected replica (``computegate.webhook.compliance.Compliance.publish``) only
while the Report CRD is served: it is not ComputeGate's, and another tool may install it, so
it is looked up in discovery (every minute while served; while not, at every pass that has
findings to report).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from computegate.engine.compliance import Finding
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
    _written: dict[str, str] = field(default_factory=dict)  # pod uid → result last written
    _pods: dict[str, tuple[str, str]] = field(default_factory=dict)  # uid → (namespace, name)
    _served: tuple[bool, float] | None = None  # (served, when checked)

    def resign(self) -> None:
        """Another replica may write Reports meanwhile: what this one wrote is no guide then."""
        self._written.clear()
        self._pods.clear()

    async def write(self, findings: Sequence[Finding], present: Callable[[str, str], bool]) -> None:
        """A Report for every finding; a pod no longer in violation (and ``present``) gets a
        passing one."""
        if not await self._available(bool(findings)):
            return
        now = self.clock()
        current = {f.uid: f for f in findings if f.uid}
        for uid, finding in current.items():
            result = "fail" if finding.enforced else "warn"
            if self._written.get(uid) == f"{result}:{finding.code.value}":
                continue
            await self._put(finding.namespace, finding.name, uid, report_results(finding, now))
            self._written[uid] = f"{result}:{finding.code.value}"
            self._pods[uid] = (finding.namespace, finding.name)
        # A pod no longer in violation: its report says so (the pod's deletion removes it).
        for uid in [uid for uid in self._written if uid not in current]:
            namespace, name = self._pods[uid]
            if present(namespace, name):
                await self._put(namespace, name, uid, [_pass_result(now)])
            del self._written[uid]
            del self._pods[uid]

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

    async def _put(self, namespace: str, pod: str, uid: str, results: list[dict[str, Any]]) -> None:
        body = report(namespace, pod, uid, results)
        path = f"{REPORTS_API}/namespaces/{namespace}/reports"
        try:
            try:
                await self.kube.post(path, body, urgent=False)
            except Conflict:
                existing = await self.kube.get(f"{path}/{uid}", urgent=False)
                if existing is None:
                    return
                meta = {**body["metadata"], "resourceVersion": existing["metadata"]["resourceVersion"]}
                await self.kube.put(f"{path}/{uid}", {**body, "metadata": meta}, urgent=False)
        except Exception as error:
            logger.warning("Could not write the Report of pod %s/%s: %s", namespace, pod, error)


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


def _pass_result(at: datetime) -> dict[str, Any]:
    return {
        "source": EVENT_SOURCE,
        "policy": REPORT_POLICY,
        "rule": "Rejudge",
        "category": "Export controls",
        "severity": "high",
        "result": "pass",
        "scored": True,
        "message": "the running pod would be admitted now",
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


__all__ = ["REPORTS_API", "Reports", "number", "report", "report_results"]
