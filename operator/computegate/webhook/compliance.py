"""After admission (DESIGN.md "After admission"): where a violation shows, and what is done.

``Compliance.judge`` asks the engine (``computegate.engine.compliance.rejudge``) which running
pods would be refused now; every replica does, for its metric. Only the elected reconciler
(``computegate.webhook.ledger.Reconciler``) calls ``publish``, so there is one writer of:

- a Warning Event per violating pod and code, named after the pod, the code and the pod's uid,
  so a second writer (a new leader, a restart) finds it exists and does not post it again;
- each Tenant's status (namespaces resolved, conflicts, licenses, consumption, violations, and
  the violating pods with the instant each was first seen in violation);
- an openreports.io ``Report`` per judged pod, owned by it (``computegate.webhook.reports``);
- with ``onViolation: Evict``, the eviction of an enforced violation (never of a code that can
  come from missing state) once it has lasted ``evictionGracePeriod``, through the Eviction
  API so PodDisruptionBudgets hold, at most ``evictions_per_minute``; a PDB that blocks it is
  reported as ``EvictionBlocked``.

The grace period survives a change of leader: when a violation was first seen is kept in the
Tenant's status (``violatingPods``), which only admins and the operator can write, and a new
leader reads each Tenant once at the start of its term and continues the count from there.

The license status (``Violations`` condition and count) is written by the reconciler itself,
in its one write of each license's status.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from prometheus_client import Counter as CounterMetric
from prometheus_client import Gauge

from computegate.engine import ClusterState, consumption
from computegate.engine.compliance import Finding, rejudge, running_pods
from computegate.models.resources import GROUP, VERSION, OnViolation
from computegate.vocabulary import TENANT_LABEL
from computegate.webhook.budget import TokenBucket
from computegate.webhook.kube import Conflict, Kube
from computegate.webhook.licenses import comparable, with_transition_times
from computegate.webhook.observe import EVENT_SOURCE, Metrics
from computegate.webhook.reports import Reports, number

logger = logging.getLogger(__name__)

TENANTS = f"/apis/{GROUP}/{VERSION}/tenants"
# Violating pods listed in a Tenant's status, oldest first (Gatekeeper lists 20 per constraint);
# beyond them the counts stay exact, and only the newest violations' grace periods would start
# again under a new leader.
VIOLATING_PODS_LISTED = 500
Since = Mapping[tuple[str, str], datetime]  # (pod uid, code) → first seen in violation


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(at: datetime) -> str:
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse(stamp: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass
class Compliance:
    kube: Kube
    state: ClusterState
    metrics: Metrics
    clock: Any = _now
    evictions_per_minute: float = 10.0
    findings: list[Finding] = field(default_factory=list)
    _events: set[str] = field(default_factory=set)  # Event names posted (or found) already
    # What this replica knows in its term as the writer; ``resign`` forgets it.
    _tenant_status: dict[str, dict[str, Any]] = field(default_factory=dict)  # last read or written
    _violating_since: dict[tuple[str, str], datetime] = field(default_factory=dict)  # (uid, code)
    _blocked: set[str] = field(default_factory=set)  # uids of pods a PodDisruptionBudget kept
    _gauged: set[tuple[str, str, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.reports = Reports(self.kube, lambda: self.clock())
        self.eviction_budget = TokenBucket(self.evictions_per_minute / 60, self.evictions_per_minute)
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

    def resign(self) -> None:
        """No longer the writer: a later term reads the Tenants' statuses again (another leader
        may have written them meanwhile)."""
        self._tenant_status.clear()
        self._violating_since.clear()
        self._blocked.clear()
        self.reports.resign()

    async def publish(self, *, synced: bool = True) -> None:
        findings = self.findings
        for finding in findings:
            await self._event(
                finding, finding.code.value, _violation_message(finding), audit=not finding.enforced
            )
        await self._write_tenants(findings)
        await self.reports.write(findings, running_pods(self.state))
        if synced and self.state.policy.spec.on_violation is OnViolation.EVICT:
            await self._evict(findings)
        current = {(f.uid, f.code.value) for f in findings if f.enforced}
        for key in set(self._violating_since) - current:
            del self._violating_since[key]
        self._blocked &= {uid for uid, _ in current}
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
            mine = by_tenant.get(name, [])
            try:
                if name not in self._tenant_status and not await self._read_tenant(name):
                    continue
                for finding in mine:
                    if finding.enforced:
                        self._violating_since.setdefault((finding.uid, finding.code.value), now)
                wanted = tenant_status(
                    self.state, name, labelled.get(name, set()), mine, since=self._violating_since
                )
                if comparable(wanted) != comparable(self._tenant_status[name]):
                    await self._put_tenant_status(name, wanted, now)
            except Conflict:
                self._tenant_status.pop(name, None)  # changed meanwhile: read again next pass
            except Exception as error:
                logger.warning("Could not write the status of Tenant %s: %s", name, error)

    async def _read_tenant(self, name: str) -> bool:
        """The first look at a Tenant in this term: continue the grace periods its status holds
        (when an earlier leader first saw each violation)."""
        obj = await self.kube.get(f"{TENANTS}/{name}", urgent=False)
        if obj is None:
            return False
        status = obj.get("status") or {}
        for entry in status.get("violatingPods") or []:
            since = _parse(entry.get("since"))
            key = (str(entry.get("uid")), str(entry.get("code")))
            if since is not None and (key not in self._violating_since or since < self._violating_since[key]):
                self._violating_since[key] = since
        self._tenant_status[name] = status
        return True

    async def _put_tenant_status(self, name: str, wanted: dict[str, Any], now: datetime) -> None:
        obj = await self.kube.get(f"{TENANTS}/{name}", urgent=False)
        if obj is None:
            return
        previous = obj.get("status") or {}
        if comparable(wanted) != comparable(previous):
            full = with_transition_times(wanted, previous, now)
            await self.kube.put(f"{TENANTS}/{name}/status", {**obj, "status": full}, urgent=False)
        self._tenant_status[name] = wanted

    # Evictions

    async def _evict(self, findings: Sequence[Finding]) -> None:
        now = self.clock()
        grace = self.state.policy.spec.grace_seconds
        # Pods a PodDisruptionBudget kept are tried after the others (oldest first within each):
        # each try takes from the same budget, and a pod that stays protected must not take it
        # all, pass after pass, from violations that can be evicted.
        for finding in sorted(findings, key=lambda f: f.uid in self._blocked):
            if not finding.evictable:
                continue
            # Unknown until the Tenant's status has been read in this term: no eviction before.
            since = self._violating_since.get((finding.uid, finding.code.value))
            if since is None or (now - since).total_seconds() < grace or not self.eviction_budget.take(now):
                continue
            await self._evict_one(finding)

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
                self._blocked.add(finding.uid)
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
    state: ClusterState, name: str, labelled: set[str], findings: Sequence[Finding], *, since: Since
) -> dict[str, Any]:
    """A Tenant's status: its namespaces (resolved, and those in conflict), licenses, what they
    consume, and its running pods that the engine would refuse now; the violations among them
    with when each was first seen (``since``), which a new leader continues from."""
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
        "consumedTPP": number(used_tpp),
        "consumedAccelerators": number(used_count),
        "violations": len(enforced),
        "auditFindings": len(findings) - len(enforced),
        "violationsByCode": dict(sorted(by_code.items())),
        "violatingPods": violating_pods(enforced, since),
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
    expired_at = [f.since for f in enforced if f.since is not None]
    if enforced and len(expired_at) == len(enforced):
        compliant["lastTransitionTime"] = _stamp(min(expired_at))
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


def violating_pods(enforced: Sequence[Finding], since: Since) -> list[dict[str, Any]]:
    """The enforced violations with when each was first seen, oldest first, at most
    ``VIOLATING_PODS_LISTED``."""
    dated = [(since[(f.uid, f.code.value)], f) for f in enforced if (f.uid, f.code.value) in since]
    dated.sort(key=lambda pair: (pair[0], pair[1].namespace, pair[1].name))
    return [
        {"namespace": f.namespace, "name": f.name, "uid": f.uid, "code": f.code.value, "since": _stamp(at)}
        for at, f in dated[:VIOLATING_PODS_LISTED]
    ]


__all__ = ["Compliance", "tenant_status", "violating_pods"]
