"""The license ledger's writers (DESIGN.md step 7): reservations at admission, one reconciler.

- ``LedgerWriter``: every replica. The validating webhook reserves an admitted pod's controlled
  TPP and accelerators under its stamped license. Requests waiting for the same license are
  settled together: one read of the license, one compare-and-swap of its status on
  ``resourceVersion``, as the API server's ResourceQuota evaluator batches quota charges, so a
  burst of admissions costs a few swaps instead of a storm of conflicts. What cannot be
  settled within ``settle_within`` seconds is refused as retryable, never admitted unaccounted.
- ``Election``: a ``coordination.k8s.io`` Lease makes one replica the reconciler.
- ``Reconciler``: the elected replica lowers what licenses have committed (recomputed from the
  pods it sees plus the reservations whose pods it has not seen), drops reservations whose pod
  never appeared after the TTL, and writes the status fields people read.

The arithmetic is ``computegate.engine.ledger``'s; this module only reads and writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

from computegate.engine import ClusterState, consumption
from computegate.engine.compliance import Finding, next_change
from computegate.engine.ledger import LEDGER_KEY, Ledger, ReserveRequest, exact, expired, reconcile, reserve
from computegate.models.resources import GROUP, VERSION
from computegate.webhook import licenses
from computegate.webhook.compliance import Compliance
from computegate.webhook.kube import Conflict, Kube
from computegate.webhook.observe import Metrics
from computegate.webhook.usage import HEAD_ANNOTATION, UsageRecorder

logger = logging.getLogger(__name__)

LICENSES = f"/apis/{GROUP}/{VERSION}/exportlicenses"
Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Settled:
    """How a reservation ended: ``reserved`` True (charged), False (over the cap) or None
    (not settled: retry), with the license's figures as they were when it was decided."""

    reserved: bool | None
    committed_tpp: Fraction = Fraction(0)
    max_tpp: Fraction = Fraction(0)
    reason: str = ""


@dataclass
class _Waiting:
    request: ReserveRequest
    future: asyncio.Future[Settled]
    deadline: float


@dataclass
class LedgerWriter:
    kube: Kube
    state: ClusterState
    metrics: Metrics
    settle_within: float = 3.0
    clock: Clock = _now
    _waiting: dict[str, list[_Waiting]] = field(default_factory=dict)
    _workers: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    async def reserve(self, license_name: str, request: ReserveRequest) -> Settled:
        loop = asyncio.get_running_loop()
        waiting = _Waiting(request, loop.create_future(), loop.time() + self.settle_within)
        self._waiting.setdefault(license_name, []).append(waiting)
        if license_name not in self._workers:
            worker = asyncio.ensure_future(self._settle(license_name))
            self._workers[license_name] = worker
            worker.add_done_callback(lambda _: self._workers.pop(license_name, None))
        return await waiting.future

    async def _settle(self, name: str) -> None:
        """Settle everything waiting for one license, one swap per round, until none waits."""
        loop = asyncio.get_running_loop()
        batch: list[_Waiting] = []
        delay = 0.0
        while True:
            batch += self._waiting.pop(name, [])
            now = loop.time()
            for late in [w for w in batch if w.deadline <= now]:
                late.future.set_result(Settled(None, reason="the license ledger did not settle in time"))
            batch = [w for w in batch if w.deadline > now and not w.future.done()]
            if not batch:
                return
            if delay:
                await asyncio.sleep(delay)
            try:
                settled = await self._swap(name, [w.request for w in batch])
            except Conflict:
                self.metrics.ledger_conflicts.inc()
                delay = 0.0  # someone else swapped: read again at once
                continue
            except Exception as error:  # the API server is unavailable: retry until the deadline
                logger.warning("Could not reserve under ExportLicense %s (retrying): %s", name, error)
                delay = min(max(delay * 2, 0.05), 0.5)
                continue
            self.metrics.ledger_swaps.inc()
            for waiting, result in zip(batch, settled, strict=True):
                waiting.future.set_result(result)
            batch, delay = [], 0.0

    async def _swap(self, name: str, requests: list[ReserveRequest]) -> list[Settled]:
        obj = await self.kube.get(f"{LICENSES}/{name}")
        if obj is None:
            return [Settled(False, reason=f"ExportLicense {name} no longer exists")] * len(requests)
        spec = obj.get("spec") or {}
        status = dict(obj.get("status") or {})
        max_tpp = exact(spec.get("maxTPP", 0))
        max_count = spec.get("maxAccelerators")
        ledger = Ledger.from_status(status) or self._first_ledger(name)
        new, results = reserve(
            ledger,
            requests,
            max_tpp=max_tpp,
            max_accelerators=None if max_count is None else exact(max_count),
            at=self.clock(),
        )
        if new != ledger:
            body = {**obj, "status": {**status, LEDGER_KEY: new.to_status()}}
            await self.kube.put(f"{LICENSES}/{name}/status", body)
        full = "the license's ledger holds as many in-flight reservations as it may; retry in a few seconds"
        return [
            Settled(result, ledger.committed_tpp, max_tpp, full if result is None else "")
            for result in results
        ]

    def _first_ledger(self, name: str) -> Ledger:
        # No ledger yet (a license made before this version ran): start from the pods counted now.
        live = consumption.live(self.state, name)
        return Ledger(exact(live.tpp), exact(live.accelerators))


@dataclass
class Election:
    """Leader election on a Lease, as client-go's leaderelection does it (without its client)."""

    kube: Kube
    namespace: str
    name: str = "computegate-ledger"
    identity: str = field(
        default_factory=lambda: f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    )
    lease_seconds: int = 15
    renew_every: float = 5.0
    clock: Clock = _now
    leading: asyncio.Event = field(default_factory=asyncio.Event)
    # The usage record's chain head rides on the Lease: the leader writes it as an annotation,
    # every replica reads it there (``computegate.webhook.usage``).
    usage: UsageRecorder | None = None
    _renewed: datetime | None = None

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{self.name}"

    @property
    def is_leader(self) -> bool:
        fresh = self._renewed is not None and self.clock() - self._renewed < timedelta(
            seconds=self.lease_seconds
        )
        if self.leading.is_set() and not fresh:
            self.leading.clear()  # could not renew in time: another replica may lead now
        return self.leading.is_set()

    async def run(self) -> None:
        while True:
            try:
                await self._try()
            except Exception as error:
                logger.warning("Lease %s/%s: %s", self.namespace, self.name, error)
            _ = self.is_leader
            await asyncio.sleep(self.renew_every)

    async def _try(self) -> None:
        now = self.clock()
        stamp = now.isoformat(timespec="microseconds").replace("+00:00", "Z")
        lease = await self.kube.get(self.path)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": self.lease_seconds,
                    "acquireTime": stamp,
                    "renewTime": stamp,
                    "leaseTransitions": 0,
                },
            }
            with contextlib.suppress(Conflict):  # another replica made it first
                await self.kube.post(f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases", body)
                self._lead(now)
            return
        if self.usage is not None:
            await self.usage.read_head(lease)
        spec = dict(lease.get("spec") or {})
        holder = spec.get("holderIdentity")
        renewed = spec.get("renewTime")
        duration = int(spec.get("leaseDurationSeconds") or self.lease_seconds)
        expired_lease = renewed is None or (
            now - datetime.fromisoformat(str(renewed).replace("Z", "+00:00")) > timedelta(seconds=duration)
        )
        if holder != self.identity and not expired_lease:
            self.leading.clear()
            return
        if holder != self.identity:
            spec["acquireTime"] = stamp
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
            logger.info("Taking the lease %s/%s from %s", self.namespace, self.name, holder or "nobody")
        spec.update(holderIdentity=self.identity, renewTime=stamp, leaseDurationSeconds=self.lease_seconds)
        metadata = dict(lease.get("metadata") or {})
        if self.usage is not None and self.usage.head is not None:
            head = f"{self.usage.head[0]}:{self.usage.head[1]}"
            metadata["annotations"] = {**(metadata.get("annotations") or {}), HEAD_ANNOTATION: head}
        try:
            await self.kube.put(self.path, {**lease, "metadata": metadata, "spec": spec})
        except Conflict:
            return  # someone else renewed or took it between our read and our write
        self._lead(now)

    def _lead(self, at: datetime) -> None:
        if not self.leading.is_set():
            logger.info(
                "Leading the license ledger's reconciliation (lease %s/%s)", self.namespace, self.name
            )
        self._renewed = at
        self.leading.set()


@dataclass
class Reconciler:
    kube: Kube
    state: ClusterState
    metrics: Metrics
    election: Election
    ttl: timedelta = timedelta(seconds=120)
    clock: Clock = _now
    compliance: Compliance | None = None  # running pods judged again (DESIGN.md "After admission")
    usage: UsageRecorder | None = None  # the usage record (docs/compliance.md)
    _gauged: set[tuple[str, str]] = field(default_factory=set)

    async def run(self, changed: asyncio.Event, *, interval: float) -> None:
        """Reconcile after every change (debounced), at least every ``interval`` seconds, and at
        the instant a license's validity changes on its own (its validFrom or validUntil)."""
        while True:
            changed.clear()
            findings = self.compliance.judge() if self.compliance is not None else []
            by_license: dict[str, list[Finding]] = {}
            for finding in findings:
                if finding.license:
                    by_license.setdefault(finding.license, []).append(finding)
            if self.election.is_leader:
                for name in sorted(self.state.licenses):
                    try:
                        await self.reconcile_one(name, findings=by_license.get(name, ()))
                    except Conflict:
                        changed.set()  # an admission swapped in between: look again soon
                    except Exception as error:
                        logger.warning("Could not reconcile ExportLicense %s: %s", name, error)
                if self.compliance is not None:
                    try:
                        await self.compliance.publish()
                    except Exception as error:
                        logger.warning("Could not publish the compliance findings: %s", error)
            elif self.compliance is not None:
                self.compliance.resign()
            if self.usage is not None:
                self.usage.observe(findings)
                if self.election.is_leader:
                    try:
                        await self.usage.flush()
                    except Exception as error:
                        logger.warning("Could not write the usage record: %s", error)
                else:
                    self.usage.resign()  # a later term starts from what is in the cluster then
            self.refresh_gauges()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=self._until_next(interval))
            await asyncio.sleep(0.2)  # a burst of pod events becomes one pass

    def _until_next(self, interval: float) -> float:
        now = self.clock()
        moments = [next_change(self.state, after=now)]
        if self.usage is not None:
            moments.append(self.usage.next_flush())
        soonest = min((m for m in moments if m is not None), default=None)
        if soonest is None:
            return interval
        return max(0.0, min(interval, (soonest - now).total_seconds()))

    async def reconcile_one(
        self,
        name: str,
        *,
        fresh: Mapping[str, Any] | None = None,
        findings: Sequence[Finding] = (),
    ) -> None:
        cached = self.state.licenses.get(name)
        if cached is None:
            return
        now = self.clock()
        live = consumption.live(self.state, name)
        seen = self.state.known_pod_uids()
        obj = fresh if fresh is not None else await self.kube.get(f"{LICENSES}/{name}")
        if obj is None:
            return
        status = dict(obj.get("status") or {})
        ledger = Ledger.from_status(status) or Ledger()
        pending: set[str] = set()
        for uid, pod in expired(ledger, seen_uids=seen, at=now, ttl=self.ttl):
            namespace, _, pod_name = pod.partition("/")
            found = await self.kube.get(f"/api/v1/namespaces/{namespace}/pods/{pod_name}")
            if found is not None and (found.get("metadata") or {}).get("uid") == uid:
                pending.add(uid)  # it exists; this view has not caught up with it yet
        new = reconcile(
            ledger,
            live_tpp=exact(live.tpp),
            live_accelerators=exact(live.accelerators),
            seen_uids=seen,
            still_pending=pending,
            at=now,
            ttl=self.ttl,
        )
        wanted = {**licenses.license_status(cached, new, now, findings), LEDGER_KEY: new.to_status()}
        if licenses.comparable(wanted) == licenses.comparable(status):
            return
        dropped = set(ledger.reservations) - set(new.reservations) - seen
        if dropped:
            logger.info(
                "ExportLicense %s: dropped %d reservation(s) whose pods never appeared", name, len(dropped)
            )
            self.metrics.ledger_expired.inc(len(dropped))
        full = licenses.with_transition_times(wanted, status, now)
        await self.kube.put(f"{LICENSES}/{name}/status", {**obj, "status": full})

    def refresh_gauges(self) -> None:
        """Every replica exports what its view of the ledger says, leader or not."""
        current: set[tuple[str, str]] = set()
        for name, lic in self.state.licenses.items():
            used = consumption.committed(self.state, name)
            tenant = lic.spec.tenant
            current.add((name, tenant))
            self.metrics.consumed_tpp.labels(name, tenant).set(used.tpp)
            self.metrics.consumed_accelerators.labels(name, tenant).set(used.accelerators)
            self.metrics.headroom_tpp.labels(name, tenant).set(lic.spec.max_tpp - used.tpp)
            self.metrics.max_tpp.labels(name, tenant).set(lic.spec.max_tpp)
            self.metrics.valid_until.labels(name, tenant).set(lic.spec.valid_until.timestamp())
        for name, tenant in self._gauged - current:
            self.metrics.forget_license(name, tenant)
        self._gauged = current


__all__ = ["Election", "LedgerWriter", "Reconciler", "Settled"]
