"""After admission (DESIGN.md "After admission"): where a violation shows, and what is done.

``Compliance.judge`` asks the engine (``computegate.engine.compliance.rejudge``) which running
pods would be refused now; every replica does, for its metric. Only the elected reconciler
(``computegate.webhook.ledger.Reconciler``) calls ``publish``, so there is one writer of:

- a Warning Event per violating pod and code, named after the pod, the code and the pod's uid,
  so a second writer (a new leader, a restart) finds it exists and does not post it again;
- each Tenant's status (namespaces resolved, conflicts, licenses, consumption, violations);
- an openreports.io ``Report`` per judged pod, owned by it (written only while the Report CRD
  is served);
- with ``onViolation: Evict``, the eviction of an enforced violation (never of a code that can
  come from missing state) once it has lasted ``evictionGracePeriod``, through the Eviction
  API so PodDisruptionBudgets hold, at most ``evictions_per_minute``; a PDB that blocks it is
  reported as ``EvictionBlocked``.

The license status (``Violations`` condition and count) is written by the reconciler itself,
in its one write of each license's status.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from prometheus_client import Counter as CounterMetric
from prometheus_client import Gauge

from computegate.engine import ClusterState, consumption
from computegate.engine.compliance import Finding, rejudge
from computegate.models.resources import GROUP, VERSION, OnViolation
from computegate.vocabulary import TENANT_LABEL
from computegate.webhook.kube import Conflict, Kube
from computegate.webhook.licenses import comparable, with_transition_times
from computegate.webhook.observe import EVENT_SOURCE, Metrics

logger = logging.getLogger(__name__)

TENANTS = f"/apis/{GROUP}/{VERSION}/tenants"
REPORTS_API = "/apis/openreports.io/v1alpha1"
REPORT_POLICY = "computegate-export-controls"
MANAGED_BY = {"app.kubernetes.io/managed-by": "computegate"}


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(at: datetime) -> str:
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 6)


@dataclass
class Compliance:
    kube: Kube
    state: ClusterState
    metrics: Metrics
    clock: Any = _now
    evictions_per_minute: float = 10.0
    reports_recheck_seconds: float = 60.0
    findings: list[Finding] = field(default_factory=list)
    _events: set[str] = field(default_factory=set)  # Event names posted (or found) already
    _tenant_status: dict[str, dict[str, Any]] = field(default_factory=dict)  # last written
    _reports: dict[str, str] = field(default_factory=dict)  # pod uid → result last written
    _report_pods: dict[str, tuple[str, str]] = field(default_factory=dict)  # uid → (ns, name)
    _reports_served: tuple[bool, float] | None = None  # (served, when checked)
    _violating_since: dict[tuple[str, str], datetime] = field(default_factory=dict)  # (uid, code)
    _tokens: float = 0.0
    _tokens_at: datetime | None = None
    _gauged: set[tuple[str, str, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.violations = Gauge(
            "computegate_running_violations",
            "Running pods the engine would refuse now, by tenant, reason code and mode "
            "(enforce: a violation; audit: a would-be violation under Audit enforcement).",
            ["tenant", "code", "mode"],
            registry=self.metrics.registry,
        )
        self.evictions = CounterMetric(
            "computegate_violation_evictions",
            "Evictions of violating pods (onViolation: Evict), by result (evicted, blocked, failed).",
            ["result"],
            registry=self.metrics.registry,
        )

    # ----- every replica -----

    def judge(self) -> list[Finding]:
        self.findings = rejudge(self.state, at=self.clock())
        counts = Counter(
            (f.tenant or "", f.code.value, "enforce" if f.enforced else "audit") for f in self.findings
        )
        for labels, count in counts.items():
            self.violations.labels(*labels).set(count)
        for labels in self._gauged - set(counts):
            self.violations.remove(*labels)
        self._gauged = set(counts)
        return self.findings

    def by_license(self) -> dict[str, list[Finding]]:
        out: dict[str, list[Finding]] = defaultdict(list)
        for finding in self.findings:
            if finding.license:
                out[finding.license].append(finding)
        return out

    # ----- the elected writer -----

    async def publish(self, *, synced: bool = True) -> None:
        findings = self.findings
        for finding in findings:
            await self._event(
                finding, finding.code.value, _violation_message(finding), audit=not finding.enforced
            )
        await self._write_tenants(findings)
        await self._write_reports(findings)
        if synced and self.state.policy.spec.on_violation is OnViolation.EVICT:
            await self._evict(findings)
        current = {(f.uid, f.code.value) for f in findings}
        for key in set(self._violating_since) - current:
            del self._violating_since[key]
        # Forget what no longer applies (an Event name ends with its pod's uid prefix); a finding
        # that comes back finds its Event in place (409) and posts no second one.
        uids = {f.uid[:8] for f in findings}
        self._events = {name for name in self._events if name[-8:] in uids}
        for name in set(self._tenant_status) - set(self.state.tenants):
            del self._tenant_status[name]

    # Events

    async def _event(
        self, finding: Finding, reason: str, message: str, *, action: str = "Rejudge", audit: bool = False
    ) -> None:
        # One per pod, code and mode: a would-be violation (Audit) that becomes a violation
        # (Enforce) gets an Event of its own.
        mode = "-audit" if audit else ""
        name = f"{finding.name[:190]}.cg-{reason.lower()}{mode}-{finding.uid[:8]}"
        if name in self._events:
            return
        now = self.clock().isoformat(timespec="microseconds").replace("+00:00", "Z")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": finding.namespace},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "namespace": finding.namespace,
                "name": finding.name,
                "uid": finding.uid,
            },
            "type": "Warning",
            "reason": reason,
            "message": message[:1024],
            "source": {"component": EVENT_SOURCE},
            "reportingComponent": EVENT_SOURCE,
            "reportingInstance": EVENT_SOURCE,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "action": action,
        }
        try:
            await self.kube.post(f"/api/v1/namespaces/{finding.namespace}/events", body, urgent=False)
        except Conflict:
            pass  # posted before (by us, or by an earlier leader): one Event per pod and code
        except Exception as error:
            logger.warning("Could not post the Event %s/%s: %s", finding.namespace, name, error)
            return
        self._events.add(name)

    # Tenant status

    async def _write_tenants(self, findings: Sequence[Finding]) -> None:
        now = self.clock()
        by_tenant: dict[str, list[Finding]] = defaultdict(list)
        for finding in findings:
            if finding.tenant:
                by_tenant[finding.tenant].append(finding)
        labelled: dict[str, set[str]] = defaultdict(set)
        for namespace in self.state.namespaces.values():
            owner = namespace.metadata.labels.get(TENANT_LABEL)
            if owner:
                labelled[owner].add(namespace.metadata.name)
        for name in sorted(self.state.tenants):
            wanted = tenant_status(self.state, name, labelled.get(name, set()), by_tenant.get(name, []))
            if comparable(wanted) == comparable(self._tenant_status.get(name)):
                continue
            try:
                await self._put_tenant_status(name, wanted, now)
            except Conflict:
                continue  # the Tenant changed meanwhile: its watch event brings another pass
            except Exception as error:
                logger.warning("Could not write the status of Tenant %s: %s", name, error)

    async def _put_tenant_status(self, name: str, wanted: dict[str, Any], now: datetime) -> None:
        obj = await self.kube.get(f"{TENANTS}/{name}", urgent=False)
        if obj is None:
            return
        previous = obj.get("status") or {}
        if comparable(wanted) != comparable(previous):
            full = with_transition_times(wanted, previous, now)
            await self.kube.put(f"{TENANTS}/{name}/status", {**obj, "status": full}, urgent=False)
        self._tenant_status[name] = wanted

    # Reports

    async def _reports_available(self) -> bool:
        now = self.clock().timestamp()
        # Looked up again every minute while served; while not, at every pass that has findings
        # to report (a CRD just installed is used at once), else every half minute.
        served_before = self._reports_served is not None and self._reports_served[0]
        recheck = self.reports_recheck_seconds if served_before else (0.0 if self.findings else 30.0)
        if self._reports_served is None or now - self._reports_served[1] > recheck:
            try:
                found = await self.kube.get(REPORTS_API, urgent=False)
                served = found is not None and any(
                    r.get("name") == "reports" for r in found.get("resources") or []
                )
            except Exception:
                served = False
            self._reports_served = (served, now)
        return self._reports_served[0]

    async def _write_reports(self, findings: Sequence[Finding]) -> None:
        if not await self._reports_available():
            return
        now = self.clock()
        current = {f.uid: f for f in findings if f.uid}
        for uid, finding in current.items():
            result = "fail" if finding.enforced else "warn"
            if self._reports.get(uid) == f"{result}:{finding.code.value}":
                continue
            await self._put_report(finding.namespace, finding.name, uid, report_results(finding, now))
            self._reports[uid] = f"{result}:{finding.code.value}"
            self._report_pods[uid] = (finding.namespace, finding.name)
        # A pod no longer in violation: its report says so (the pod's deletion removes it).
        for uid in [uid for uid in self._reports if uid not in current]:
            namespace, name = self._report_pods[uid]
            if (namespace, name) in self.state.pods:
                await self._put_report(namespace, name, uid, [_pass_result(now)])
            del self._reports[uid]
            del self._report_pods[uid]

    async def _put_report(self, namespace: str, pod: str, uid: str, results: list[dict[str, Any]]) -> None:
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

    # Evictions

    async def _evict(self, findings: Sequence[Finding]) -> None:
        now = self.clock()
        grace = self.state.policy.spec.grace_seconds
        for finding in findings:
            if not finding.evictable:
                continue
            since = self._violating_since.setdefault((finding.uid, finding.code.value), now)
            if (now - since).total_seconds() < grace or not self._take_token(now):
                continue
            await self._evict_one(finding)

    def _take_token(self, now: datetime) -> bool:
        if self._tokens_at is None:
            self._tokens = self.evictions_per_minute
        else:
            refill = (now - self._tokens_at).total_seconds() * self.evictions_per_minute / 60
            self._tokens = min(self.evictions_per_minute, self._tokens + refill)
        self._tokens_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    async def _evict_one(self, finding: Finding) -> None:
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": finding.name, "namespace": finding.namespace},
        }
        path = f"/api/v1/namespaces/{finding.namespace}/pods/{finding.name}/eviction"
        try:
            await self.kube.post(path, body, urgent=False)
        except ApiException as error:
            if error.status == 429:  # a PodDisruptionBudget does not allow it now: try again later
                self.evictions.labels("blocked").inc()
                await self._event(
                    finding,
                    "EvictionBlocked",
                    f"ComputeGate could not evict this pod ({finding.code.value}): a PodDisruptionBudget "
                    f"does not allow it now; it is tried again. {error.body or ''}".strip(),
                    action="Evict",
                )
                return
            if error.status != 404:
                self.evictions.labels("failed").inc()
                logger.warning("Could not evict %s/%s: %s", finding.namespace, finding.name, error.reason)
            return
        except Exception as error:
            self.evictions.labels("failed").inc()
            logger.warning("Could not evict %s/%s: %s", finding.namespace, finding.name, error)
            return
        self.evictions.labels("evicted").inc()
        logger.info("Evicted %s/%s (%s)", finding.namespace, finding.name, finding.code.value)
        await self._event(
            finding,
            "Evicted",
            f"ComputeGate evicted this pod (CompliancePolicy onViolation: Evict): {finding.message}",
            action="Evict",
        )


def _violation_message(finding: Finding) -> str:
    if finding.enforced:
        return f"This running pod would be refused now, so it is a violation: {finding.message}"
    return f"This running pod would be refused now (not enforced: the tenant is in Audit): {finding.message}"


def tenant_status(
    state: ClusterState, name: str, labelled: set[str], findings: Sequence[Finding]
) -> dict[str, Any]:
    """A Tenant's status: its namespaces (resolved, and those in conflict), licenses, what they
    consume, and its running pods that the engine would refuse now."""
    tenant = state.tenants[name]
    resolved: list[str] = []
    conflicts: list[dict[str, Any]] = []
    for namespace in sorted({*tenant.spec.namespaces, *labelled}):
        claimants = state.tenants_claiming(namespace)
        if claimants == {name}:
            resolved.append(namespace)
        else:
            conflicts.append({"namespace": namespace, "tenants": sorted(claimants)})
    licenses = state.licenses_of(name)
    used_tpp = used_count = 0.0
    for lic in licenses:
        used = consumption.committed(state, lic.metadata.name)
        used_tpp += used.tpp
        used_count += used.accelerators
    enforced = [f for f in findings if f.enforced]
    by_code = Counter(f.code.value for f in enforced)
    status: dict[str, Any] = {
        "namespaces": resolved,
        "conflicts": conflicts,
        "licenses": [lic.metadata.name for lic in licenses],
        "consumedTPP": _number(used_tpp),
        "consumedAccelerators": _number(used_count),
        "violations": len(enforced),
        "auditFindings": len(findings) - len(enforced),
        "violationsByCode": dict(sorted(by_code.items())),
    }
    compliant: dict[str, Any] = (
        {
            "type": "Compliant",
            "status": "True",
            "reason": "NoViolations",
            "message": "no running pod would be refused now",
        }
        if not enforced
        else {
            "type": "Compliant",
            "status": "False",
            "reason": next(iter(by_code)) if len(by_code) == 1 else "Several",
            "message": f"{len(enforced)} running pod(s) would be refused now: "
            + ", ".join(f"{code} {count}" for code, count in sorted(by_code.items())),
        }
    )
    since = [f.since for f in enforced if f.since is not None]
    if enforced and len(since) == len(enforced):
        compliant["lastTransitionTime"] = _stamp(min(since))
    conflict: dict[str, Any] = (
        {
            "type": "NamespaceConflict",
            "status": "True",
            "reason": "ClaimedByAnother",
            "message": "; ".join(
                f"namespace {c['namespace']} is claimed by {', '.join(c['tenants'])}: it has no tenant until "
                "an admin fixes it"
                for c in conflicts
            ),
        }
        if conflicts
        else {"type": "NamespaceConflict", "status": "False", "reason": "NoConflict", "message": "none"}
    )
    status["conditions"] = [compliant, conflict]
    return status


def report_results(finding: Finding, at: datetime) -> list[dict[str, Any]]:
    properties = {
        "code": finding.code.value,
        "controlledTPP": str(_number(finding.controlled_tpp)),
        "controlledAccelerators": str(_number(finding.controlled_accelerators)),
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


__all__ = ["Compliance", "report", "tenant_status"]
