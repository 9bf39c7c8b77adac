"""The usage record's writer (docs/compliance.md): per tenant and period (a day by default),
controlled TPP-hours and accelerator-hours per license, admissions and denials by code.

Every replica follows the pods' run intervals and admissions from its own view (``observe``,
after every change) and counts the denials it answers in its own tally
(``computegate.webhook.tally``). Only the elected replica writes (``flush``):

- once a period has closed (and ``settle`` has passed, so the replicas' last denials are in
  their tallies), one ``UsageRecord`` per tenant that used controlled compute, was admitted,
  denied or found in violation in it, chained by hash (``computegate.engine.usage``), with each
  license's lowest cap of the period, labelled with its tenant and its day; records older than
  the retention are deleted by that label, in one request. A leader that died partway through
  a period's records leaves the rest to the next one: it writes the tenants of the newest
  period that have no record yet (the records present are the marker of what is done);
- every ``checkpoint_every``, a checkpoint of the open period (the runs that ended and the pods
  created so far) in a ConfigMap of the release namespace, so a new leader that did not watch
  the whole period continues from it instead of losing the runs that ended before it started.

The chain's head goes into the Lease's annotation, every replica reads it there, and the
admission answers carry it as an audit annotation, so the API server's audit log holds a copy
that an admin of the cluster cannot rewrite silently; ``computegate verify`` checks both.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException

from computegate.engine import ClusterState
from computegate.engine.compliance import Finding, running_pods
from computegate.engine.footprint import pod_uses
from computegate.engine.usage import (
    GENESIS,
    Admission,
    Checkpoint,
    Interval,
    TenantCount,
    chain_record,
    count_period,
    heads_in_audit_log,
    parse_head,
    record_content,
)
from computegate.models.resources import GROUP, VERSION
from computegate.vocabulary import CODE_ANNOTATION, LICENSE_ANNOTATION
from computegate.webhook.kube import Conflict, Kube
from computegate.webhook.tally import DenialTally, period_of

logger = logging.getLogger(__name__)

RECORDS = f"/apis/{GROUP}/{VERSION}/usagerecords"
HEAD_ANNOTATION = "computegate.io/usage-chain-head"  # "<sequence>:<sha256>" (also an audit annotation)
TENANT_LABEL = "computegate.io/tenant"
DAY_LABEL = "computegate.io/day"  # the UTC date the record's period starts on: retention deletes by it
CHECKPOINT = "computegate-usage-checkpoint"
CHECKPOINT_KEY = "checkpoint.json.gz"
# A checkpoint counts what is final this long before it is written: by then every replica's view
# holds the pods created before it, so a new leader counts each of them once.
CHECKPOINT_LAG = timedelta(seconds=5)
DAY = timedelta(days=1)


def _now() -> datetime:
    return datetime.now(UTC)


def stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def record_name(tenant: str, start: datetime, period: timedelta) -> str:
    when = start.strftime("%Y-%m-%d") if period == DAY else start.strftime("%Y%m%dt%H%M%S")
    return f"{_fit(tenant, 252 - len(when))}.{when}"


def tenant_label(tenant: str) -> str:
    return _fit(tenant, 63)


def _fit(name: str, length: int) -> str:
    """``name``, or when longer than ``length`` its start and a digest of the whole, so that two
    long names never meet and the result still starts and ends with a letter or digit."""
    if len(name) <= length:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: length - 11].rstrip('-.')}-{digest}"


def day_of(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d")


def days_between(first: datetime, last: datetime) -> list[str]:
    """The UTC dates from ``first``'s to ``last``'s, both included."""
    start = period_of(first, DAY)
    return [day_of(start + k * DAY) for k in range((period_of(last, DAY) - start) // DAY + 1)]


@dataclass
class UsageRecorder:
    kube: Kube
    state: ClusterState
    tally: DenialTally  # this replica's denials; the elected writer folds every replica's
    period: timedelta = timedelta(days=1)
    retention: timedelta = timedelta(days=35)
    clock: Any = _now
    intervals: dict[str, Interval] = field(default_factory=dict)  # pod uid → its run
    admitted: dict[str, Admission] = field(default_factory=dict)  # pod uid → its admission
    # Period start → tenant → the caps and violations seen in it (a count of nothing else).
    sighted: dict[datetime, dict[str, TenantCount]] = field(default_factory=dict)
    head: tuple[int, str] | None = None  # the chain's head as last read or written
    # What the elected writer knows of its term; ``resign`` forgets it.
    _written_until: datetime | None = None
    _adopted: Checkpoint | None = None  # the checkpoint found at the start of the term
    _present: tuple[datetime, set[str]] | None = None  # a period's tenants whose record exists
    _checkpoint_read: bool = False
    _checkpoint_version: str | None = None  # its resourceVersion: checkpoints are swapped on it
    _checkpointed: tuple[datetime, dict[str, Any]] | None = None  # when, and what, last written

    @property
    def settle(self) -> timedelta:
        """How long after a period closes its records are written: the replicas write their
        tallies within a second or two of a denial."""
        return min(timedelta(seconds=30), self.period / 4)

    @property
    def checkpoint_every(self) -> timedelta:
        return min(timedelta(seconds=60), self.period / 10)

    @property
    def checkpoints(self) -> str:
        return f"/api/v1/namespaces/{self.tally.namespace}/configmaps"

    # ----- every replica -----

    def observe(self, findings: Sequence[Finding] = ()) -> None:
        """Count every stamped pod once, open an interval for every licensed pod that runs, close
        those that ended, note every license's cap and the violations (``findings``, as the
        compliance reconciler judged them), and forget what no period still to be written needs."""
        now = self.clock()
        self._sight(now, findings)
        running: set[str] = set()
        for pod in running_pods(self.state):
            if CODE_ANNOTATION not in pod.metadata.annotations:
                continue  # not admitted by ComputeGate: judged, not counted as an admission
            uid = pod.metadata.uid or ""
            namespace = pod.metadata.namespace or ""
            tenant = self.state.tenant_for_namespace(namespace).tenant
            if not uid or tenant is None:
                continue
            if uid not in self.admitted:
                code = pod.metadata.annotations.get(CODE_ANNOTATION, "")
                created = pod.metadata.creation_timestamp or now
                self.admitted[uid] = Admission(uid, tenant.metadata.name, code, created)
            license_name = pod.metadata.annotations.get(LICENSE_ANNOTATION)
            if not license_name or pod.status.start_time is None:
                continue
            running.add(uid)
            if uid in self.intervals and self.intervals[uid].end is None:
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
        for uid, interval in list(self.intervals.items()):
            if interval.end is None and uid not in running:
                self.intervals[uid] = dataclasses.replace(interval, end=now)
        oldest = self.tally.oldest_kept()
        known = self.state.known_pod_uids()
        self.intervals = {u: i for u, i in self.intervals.items() if i.end is None or i.end >= oldest}
        # A pod still there stays counted (it must not be counted again); a gone one, while the
        # period it was created in can still be written.
        self.admitted = {u: a for u, a in self.admitted.items() if u in known or a.created >= oldest}
        self.sighted = {p: s for p, s in self.sighted.items() if p + self.period > oldest}

    def _sight(self, now: datetime, findings: Sequence[Finding]) -> None:
        seen = self.sighted.setdefault(period_of(now, self.period), {})
        for lic in self.state.licenses.values():
            spec = lic.spec
            count = seen.get(spec.tenant) or seen.setdefault(spec.tenant, TenantCount())
            count.sight(lic.metadata.name, spec.max_tpp, spec.max_accelerators)
        for finding in findings:
            if finding.enforced and finding.tenant:  # a would-be violation (Audit) is not one
                count = seen.get(finding.tenant) or seen.setdefault(finding.tenant, TenantCount())
                count.violations[finding.code.value].add(finding.uid)

    def denied(self, tenant: str | None, code: str) -> None:
        """A denial this replica answered: into its tally, which the elected writer folds."""
        if tenant:
            self.tally.count(tenant, code)

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

    def resign(self) -> None:
        """No longer the writer: the next term starts from what is in the cluster then."""
        self._written_until = None
        self._adopted = None
        self._present = None
        self._checkpoint_read = False
        self._checkpoint_version = None
        self._checkpointed = None

    async def flush(self) -> None:
        """Write the records of every period that closed (``settle`` ago) since the last one
        written, then the open period's checkpoint when it is due."""
        now = self.clock()
        closed = period_of(now - self.settle, self.period)  # every period before it is to be written
        if not self._checkpoint_read:
            await self._adopt()
        if self._written_until is None:
            self._written_until = await self._resume(closed)
        wrote = self._written_until < closed
        while self._written_until < closed:
            start = self._written_until
            await self._write_period(start, start + self.period)
            self._written_until = start + self.period
        if wrote:
            await self._retain(now)
            await self.tally.collect()
        # Not while a closed period waits for its records: its checkpoint is still needed.
        if closed == period_of(now, self.period):
            await self._checkpoint(now)

    def next_flush(self) -> datetime:
        return period_of(self.clock() - self.settle, self.period) + self.period + self.settle

    async def _adopt(self) -> None:
        """At the start of a term: the checkpoint the last writer left."""
        found = await self.kube.get(f"{self.checkpoints}/{CHECKPOINT}", urgent=False)
        self._adopted, self._checkpoint_version = None, None
        if found is not None:
            self._checkpoint_version = str((found.get("metadata") or {}).get("resourceVersion"))
            try:
                packed = base64.b64decode((found.get("binaryData") or {})[CHECKPOINT_KEY])
                self._adopted = Checkpoint.from_dict(json.loads(gzip.decompress(packed)))
            except (KeyError, ValueError, TypeError, OSError) as error:
                logger.warning("Ignoring the unreadable usage checkpoint: %s", error)
        self._checkpoint_read = True

    def _adopted_for(self, start: datetime) -> Checkpoint | None:
        return self._adopted if self._adopted is not None and self._adopted.start == start else None

    async def _checkpoint(self, now: datetime) -> None:
        if self._checkpointed is not None and now - self._checkpointed[0] < self.checkpoint_every:
            return
        start = period_of(now, self.period)
        until = max(start, now - CHECKPOINT_LAG)
        counts = count_period(
            self.intervals.values(),
            self.admitted.values(),
            start,
            start + self.period,
            adopted=self._adopted_for(start),
            until=until,
            sighted=self.sighted.get(start),
        )
        content = Checkpoint(start, until, counts).to_dict()
        unchanged = {**content, "until": None}
        if self._checkpointed is not None and self._checkpointed[1] == unchanged:
            return  # nothing ended and nobody was admitted since: the last one holds
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": CHECKPOINT,
                "namespace": self.tally.namespace,
                "labels": {"app.kubernetes.io/managed-by": "computegate"},
            },
            "binaryData": {
                CHECKPOINT_KEY: base64.b64encode(gzip.compress(json.dumps(content).encode())).decode()
            },
        }
        try:
            if self._checkpoint_version is None:
                written = await self.kube.post(self.checkpoints, body, urgent=False)
            else:
                body["metadata"]["resourceVersion"] = self._checkpoint_version
                written = await self.kube.put(f"{self.checkpoints}/{CHECKPOINT}", body, urgent=False)
        except Conflict:
            self._checkpoint_read = False  # another writer's checkpoint: continue from it
            return
        except ApiException as error:  # refused (too large, say): try again at the next one due
            logger.warning("Could not write the usage checkpoint: %s %s", error.status, error.reason)
            if error.status == 404:
                self._checkpoint_version = None  # deleted: the next one is created again
            self._checkpointed = (now, {})
            return
        self._checkpoint_version = str(written["metadata"]["resourceVersion"])
        self._checkpointed = (now, unchanged)

    async def _resume(self, closed: datetime) -> datetime:
        """Continue the chain where the records end (after a restart or a change of leader):
        with the newest period that has records, whose tenants without one are written then (a
        leader may have died partway through its records), so none is written twice. Only the
        records of the last periods are listed, by their day label: the newest ones are there,
        and any older head is on the Lease already."""
        window = days_between(closed - 2 * self.period, closed)
        newest = await self._newest(selector=f"{DAY_LABEL} in ({','.join(window)})")
        if newest is None and self.head is None:
            newest = await self._newest(selector="")  # no head anywhere: is there a chain at all?
        if newest is None and self.head is None:
            return closed  # nothing written yet: start with the period now open
        earliest = closed - self.period * 2
        if newest is None or newest[0] < earliest:
            return earliest
        self._present = newest
        return newest[0]

    async def _newest(self, *, selector: str) -> tuple[datetime, set[str]] | None:
        """The newest period with records, and the tenants that have one in it."""
        newest: tuple[datetime, set[str]] | None = None
        async for page in self.kube.pages(RECORDS, selector=selector):
            for item in page:
                spec = item.get("spec") or {}
                self._advance_head(spec)
                start = datetime.fromisoformat(str(spec.get("periodStart")).replace("Z", "+00:00"))
                if newest is None or start > newest[0]:
                    newest = (start, set())
                if start == newest[0]:
                    newest[1].add(str(spec.get("tenant")))
        return newest

    def _advance_head(self, spec: Mapping[str, Any]) -> None:
        sequence = int(spec.get("sequence", -1))
        if self.head is None or sequence > self.head[0]:
            self.head = (sequence, str(spec.get("hash")))

    async def _write_period(self, start: datetime, end: datetime) -> None:
        counts = count_period(
            self.intervals.values(),
            self.admitted.values(),
            start,
            end,
            adopted=self._adopted_for(start),
            sighted=self.sighted.get(start),
        )
        denials = await self.tally.fold(start)
        written = self._present[1] if self._present is not None and self._present[0] == start else set()
        for tenant in sorted({t for t, count in counts.items() if count.active} | set(denials)):
            if tenant in written:
                continue  # written by an earlier leader that died before the rest
            count = counts.get(tenant, TenantCount())
            content = record_content(tenant, stamp(start), stamp(end), count, denials.get(tenant, {}))
            sequence, previous = (self.head[0] + 1, self.head[1]) if self.head else (0, GENESIS)
            record = chain_record(content, sequence=sequence, previous=previous)
            name = record_name(tenant, start, self.period)
            body: dict[str, Any] = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "UsageRecord",
                "metadata": {
                    "name": name,
                    "labels": {TENANT_LABEL: tenant_label(tenant), DAY_LABEL: day_of(start)},
                },
                "spec": record,
            }
            try:
                await self.kube.post(RECORDS, body, urgent=False)
            except Conflict:
                # Written after the listing (by a leader that lost its lease meanwhile): the chain
                # continues from it.
                logger.warning("UsageRecord %s exists already: not written again", name)
                selector = f"{TENANT_LABEL}={tenant_label(tenant)},{DAY_LABEL}={day_of(start)}"
                async for page in self.kube.pages(RECORDS, selector=selector):
                    for item in page:
                        self._advance_head(item.get("spec") or {})
                continue
            self.head = (sequence, record["hash"])
            logger.info("Usage record %d: %s %s", sequence, tenant, stamp(start))

    async def _retain(self, now: datetime) -> None:
        """Delete, in one request, the records of every day the retention no longer keeps."""
        kept = days_between(now - self.retention, now + DAY)
        await self.kube.delete_collection(
            RECORDS, selector=f"{DAY_LABEL},{DAY_LABEL} notin ({','.join(kept)})"
        )


__all__ = ["DAY_LABEL", "HEAD_ANNOTATION", "UsageRecorder", "heads_in_audit_log", "period_of"]
