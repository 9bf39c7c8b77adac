"""The usage record's writer (docs/compliance.md): per tenant and period (a day by default),
controlled TPP-hours and accelerator-hours per license, admissions and denials by code.

Every replica follows the pods' run intervals from its own view (``observe``, after every
change), so a replica that becomes the leader knows what ran before it led. Only the elected
replica writes (``flush``): once a period has closed, one ``UsageRecord`` per tenant that used
controlled compute or was judged in it, chained by hash (``computegate.engine.usage``). The
chain's head goes into the Lease's annotation, every replica reads it there, and the admission
answers carry it as an audit annotation, so the API server's audit log holds a copy that an
admin of the cluster cannot rewrite silently; ``computegate verify`` checks both. Records older
than the retention are deleted by the same writer (export them first: ``computegate usage
export``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from computegate.engine import ClusterState
from computegate.engine.compliance import running_pods
from computegate.engine.footprint import pod_uses
from computegate.engine.usage import (
    GENESIS,
    Interval,
    chain_record,
    heads_in_audit_log,
    parse_head,
    usage_by_license,
)
from computegate.models.resources import GROUP, VERSION
from computegate.vocabulary import CODE_ANNOTATION, LICENSE_ANNOTATION
from computegate.webhook.kube import Conflict, Kube

logger = logging.getLogger(__name__)

RECORDS = f"/apis/{GROUP}/{VERSION}/usagerecords"
HEAD_ANNOTATION = "computegate.io/usage-chain-head"  # "<sequence>:<sha256>" (also an audit annotation)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def period_of(at: datetime, period: timedelta) -> datetime:
    """The start of the period holding ``at`` (periods are aligned on the Unix epoch, so a day
    is a UTC calendar day)."""
    steps = (at - EPOCH) // period
    return EPOCH + steps * period


def record_name(tenant: str, start: datetime, period: timedelta) -> str:
    when = start.strftime("%Y-%m-%d") if period == timedelta(days=1) else start.strftime("%Y%m%dt%H%M%S")
    return f"{tenant}.{when}"[:253]


@dataclass
class UsageRecorder:
    kube: Kube
    state: ClusterState
    period: timedelta = timedelta(days=1)
    retention: timedelta = timedelta(days=35)
    clock: Any = _now
    intervals: dict[str, Interval] = field(default_factory=dict)  # pod uid → its run
    admissions: dict[tuple[str, datetime], Counter[str]] = field(default_factory=dict)
    denials: dict[tuple[str, datetime], Counter[str]] = field(default_factory=dict)
    head: tuple[int, str] | None = None  # the chain's head as last read or written
    _seen: set[str] = field(default_factory=set)
    _written_until: datetime | None = None

    # ----- every replica -----

    def observe(self) -> None:
        """Open an interval for every licensed pod that runs, close those that ended."""
        now = self.clock()
        running: set[str] = set()
        for pod in running_pods(self.state):
            uid = pod.metadata.uid or ""
            if not uid:
                continue
            if uid not in self._seen:
                self._seen.add(uid)
                created = pod.metadata.creation_timestamp or now
                tenant = self.state.tenant_for_namespace(pod.metadata.namespace or "").tenant
                if tenant is not None:
                    code = pod.metadata.annotations.get(CODE_ANNOTATION, "")
                    key = (tenant.metadata.name, period_of(created, self.period))
                    self.admissions.setdefault(key, Counter())[code] += 1
            license_name = pod.metadata.annotations.get(LICENSE_ANNOTATION)
            if not license_name or pod.status.start_time is None:
                continue
            running.add(uid)
            if uid in self.intervals and self.intervals[uid].end is None:
                continue
            namespace = pod.metadata.namespace or ""
            tenant = self.state.tenant_for_namespace(namespace).tenant
            if tenant is None:
                continue
            uses = [u for u in pod_uses(self.state, pod.spec, namespace, tenant=tenant) if u.controlled]
            self.intervals[uid] = Interval(
                uid=uid,
                tenant=tenant.metadata.name,
                license=license_name,
                tpp=sum(u.tpp for u in uses),
                accelerators=sum(u.count for u in uses),
                start=pod.status.start_time,
            )
        self._seen &= self.state.known_pod_uids()  # a pod once gone never comes back
        for uid, interval in list(self.intervals.items()):
            if interval.end is None and uid not in running:
                self.intervals[uid] = dataclasses.replace(interval, end=now)

    def denied(self, tenant: str | None, code: str) -> None:
        """A denial this replica answered (the record holds the elected replica's own)."""
        if tenant:
            key = (tenant, period_of(self.clock(), self.period))
            self.denials.setdefault(key, Counter())[code] += 1

    async def read_head(self, lease: dict[str, Any] | None) -> None:
        value = ((lease or {}).get("metadata") or {}).get("annotations", {}).get(HEAD_ANNOTATION)
        parsed = parse_head(value)
        if parsed is not None and (self.head is None or parsed[0] >= self.head[0]):
            self.head = parsed

    def audit_annotations(self) -> dict[str, str]:
        if self.head is None:
            return {}
        return {"usage-chain-head": f"{self.head[0]}:{self.head[1]}"}

    # ----- the elected writer -----

    async def flush(self) -> None:
        """Write the records of every period that has closed since the last one written."""
        now = self.clock()
        current = period_of(now, self.period)
        if self._written_until is None:
            self._written_until = await self._resume(current)
        if self._written_until >= current:
            return
        while self._written_until < current:
            start = self._written_until
            end = start + self.period
            await self._write_period(start, end)
            self._written_until = end
        self._forget_before(current)
        await self._retain(now)

    def next_flush(self) -> datetime:
        return period_of(self.clock(), self.period) + self.period

    async def _resume(self, current: datetime) -> datetime:
        """Continue the chain where the records end (after a restart or a change of leader)."""
        listed = await self.kube.get(RECORDS, urgent=False)
        items = (listed or {}).get("items") or []
        last_end: datetime | None = None
        for item in items:
            spec = item.get("spec") or {}
            sequence = int(spec.get("sequence", -1))
            if self.head is None or sequence > self.head[0]:
                self.head = (sequence, str(spec.get("hash")))
            end = datetime.fromisoformat(str(spec.get("periodEnd")).replace("Z", "+00:00"))
            last_end = end if last_end is None or end > last_end else last_end
        if last_end is not None:
            return max(last_end, current - self.period * 2)
        # Nothing written yet: start with the period now running (what came before is unknown).
        return current

    async def _write_period(self, start: datetime, end: datetime) -> None:
        tenants = {i.tenant for i in self.intervals.values() if i.seconds_within(start, end) > 0}
        tenants |= {t for t, p in self.admissions if p == start}
        tenants |= {t for t, p in self.denials if p == start}
        for tenant in sorted(tenants):
            licenses = usage_by_license(self.intervals.values(), tenant, start, end)
            content = {
                "tenant": tenant,
                "periodStart": stamp(start),
                "periodEnd": stamp(end),
                "licenses": {
                    name: {key: f"{value:.6f}" for key, value in figures.items()}
                    for name, figures in licenses.items()
                },
                "admissions": dict(sorted(self.admissions.get((tenant, start), Counter()).items())),
                "denials": dict(sorted(self.denials.get((tenant, start), Counter()).items())),
            }
            sequence, previous = (self.head[0] + 1, self.head[1]) if self.head else (0, GENESIS)
            record = chain_record(content, sequence=sequence, previous=previous)
            name = record_name(tenant, start, self.period)
            body: dict[str, Any] = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "UsageRecord",
                "metadata": {
                    "name": name,
                    "labels": {"computegate.io/tenant": tenant[:63]},
                },
                "spec": record,
            }
            try:
                await self.kube.post(RECORDS, body, urgent=False)
            except Conflict:
                logger.warning("UsageRecord %s exists already: not written again", name)
                continue
            self.head = (sequence, record["hash"])
            logger.info("Usage record %d: %s %s", sequence, tenant, stamp(start))

    def _forget_before(self, current: datetime) -> None:
        for uid, interval in list(self.intervals.items()):
            if interval.end is not None and interval.end < current:
                del self.intervals[uid]
        for counts in (self.admissions, self.denials):
            for key in [key for key in counts if key[1] < current]:
                del counts[key]

    async def _retain(self, now: datetime) -> None:
        listed = await self.kube.get(RECORDS, urgent=False)
        for item in (listed or {}).get("items") or []:
            end = datetime.fromisoformat(
                str((item.get("spec") or {}).get("periodEnd")).replace("Z", "+00:00")
            )
            if end < now - self.retention:
                await self.kube.delete(f"{RECORDS}/{item['metadata']['name']}")


__all__ = ["HEAD_ANNOTATION", "UsageRecorder", "heads_in_audit_log", "period_of"]
