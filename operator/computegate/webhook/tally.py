"""Every replica's denials, for the usage record (docs/compliance.md).

A denial leaves no object behind, so the elected writer cannot count another replica's from
the cluster. Each replica keeps its own tally in a ConfigMap of the release namespace
(``computegate-denials-<identity>``): per period, tenant and code, the number of denials it
answered. The counts are absolute, not increments, and only the replica writes its own, so a
write retried after a lost answer cannot count a denial twice. The elected writer adds every
tally's counts of a period when it writes the period's records (``fold``), a little after the
period closed; a replica that died leaves its tally behind, and it is folded all the same. Once
no period it holds can be written any more, the writer deletes it (``collect``).

What a replica had not written yet when it died (at most ``batch_seconds`` of denials), and a
write that reaches the API server after the period's records were written, are missing from
the record; the metric ``computegate_admission_decisions_total`` of each replica has them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException

from computegate.webhook.kube import Kube

logger = logging.getLogger(__name__)

TALLY_KEY = "denials.json"
REPLICA_ANNOTATION = "computegate.io/replica"  # who wrote it; its name is made from it
COMPONENT = "denial-tally"
LABELS = {"app.kubernetes.io/managed-by": "computegate", "app.kubernetes.io/component": COMPONENT}
SELECTOR = f"app.kubernetes.io/component={COMPONENT}"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Counts = dict[str, Counter[str]]  # tenant → code → denials


def _now() -> datetime:
    return datetime.now(UTC)


def period_of(at: datetime, period: timedelta) -> datetime:
    """The start of the period holding ``at`` (periods are aligned on the Unix epoch, so a day
    is a UTC calendar day)."""
    return EPOCH + ((at - EPOCH) // period) * period


def period_key(start: datetime) -> str:
    return start.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def tally_name(identity: str) -> str:
    cleaned = re.sub(r"[^a-z0-9-]+", "-", identity.lower()).strip("-")
    return f"computegate-denials-{cleaned}"[:253].rstrip("-")


@dataclass
class DenialTally:
    kube: Kube
    namespace: str
    identity: str  # the replica's, as in the leader election
    period: timedelta = timedelta(days=1)
    clock: Any = _now
    batch_seconds: float = 1.0
    counts: dict[datetime, Counts] = field(default_factory=dict)  # period start → this replica's
    _dirty: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def name(self) -> str:
        return tally_name(self.identity)

    @property
    def path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/configmaps"

    def count(self, tenant: str, code: str) -> None:
        start = period_of(self.clock(), self.period)
        self.counts.setdefault(start, {}).setdefault(tenant, Counter())[code] += 1
        self._dirty.set()

    def oldest_kept(self) -> datetime:
        """Periods before this are no longer written (``UsageRecorder`` writes up to two periods
        before the last one closed), so no tally needs to hold them."""
        return period_of(self.clock(), self.period) - 3 * self.period

    async def run(self) -> None:
        """Write this replica's tally after each batch of denials, until cancelled."""
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.batch_seconds)
            self._dirty.clear()
            try:
                await self.write()
            except Exception as error:  # the API server is unavailable: the counts stay, retry
                logger.warning("Could not write the denial tally %s: %s", self.name, error)
                self._dirty.set()
                await asyncio.sleep(5)

    async def write(self) -> None:
        for start in [s for s in self.counts if s < self.oldest_kept()]:
            del self.counts[start]
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {
                    "app.kubernetes.io/managed-by": "computegate",
                    "app.kubernetes.io/component": COMPONENT,
                },
                "annotations": {REPLICA_ANNOTATION: self.identity},
            },
            "data": {TALLY_KEY: json.dumps(_encode(self.counts), sort_keys=True)},
        }
        # Only this replica writes its tally: a plain replace, or a create when there is none
        # (its first denial, or the writer collected it while it held nothing).
        try:
            await self.kube.put(f"{self.path}/{self.name}", body, urgent=False)
        except ApiException as error:
            if error.status != 404:
                raise
            await self.kube.post(self.path, body, urgent=False)

    # ----- the elected writer -----

    async def fold(self, start: datetime) -> Counts:
        """Every replica's denials in the period starting at ``start``: the tallies in the
        cluster, this replica's own from memory (it may not have written its last ones yet)."""
        totals: Counts = {}
        key = period_key(start)
        async for page in self.kube.pages(self.path, selector=SELECTOR):
            for item in page:
                if (item.get("metadata") or {}).get("name") == self.name:
                    continue
                for tenant, codes in _decode(item).get(key, {}).items():
                    totals.setdefault(tenant, Counter()).update(codes)
        for tenant, codes in self.counts.get(start, {}).items():
            totals.setdefault(tenant, Counter()).update(codes)
        return totals

    async def collect(self) -> None:
        """Delete the tallies that hold no period still to be written (replicas gone, or idle:
        an idle one writes its tally again at its next denial)."""
        oldest = period_key(self.oldest_kept())
        async for page in self.kube.pages(self.path, selector=SELECTOR):
            for item in page:
                name = str((item.get("metadata") or {}).get("name"))
                if name != self.name and all(key < oldest for key in _decode(item)):
                    await self.kube.delete(f"{self.path}/{name}")


def _encode(counts: dict[datetime, Counts]) -> dict[str, dict[str, dict[str, int]]]:
    return {
        period_key(start): {tenant: dict(codes) for tenant, codes in tenants.items()}
        for start, tenants in counts.items()
    }


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"a count must be a whole number of 0 or more, not {value!r}")
    return value


def _decode(item: dict[str, Any]) -> dict[str, dict[str, Counter[str]]]:
    """A tally's counts by period key; an unreadable tally, or a ConfigMap with the label that is
    not named after the replica it says wrote it, counts nothing (and is logged)."""
    meta = item.get("metadata") or {}
    try:
        identity = str((meta.get("annotations") or {}).get(REPLICA_ANNOTATION) or "")
        if not identity or meta.get("name") != tally_name(identity):
            raise ValueError(f"not the tally of a replica (annotation {REPLICA_ANNOTATION}: {identity!r})")
        raw = json.loads(((item.get("data") or {}).get(TALLY_KEY)) or "{}")
        return {
            str(key): {
                str(t): Counter({str(c): _count(n) for c, n in codes.items()}) for t, codes in tenants.items()
            }
            for key, tenants in raw.items()
        }
    except (ValueError, TypeError, AttributeError) as error:
        logger.warning(
            "Ignoring the unreadable denial tally %s: %s", (item.get("metadata") or {}).get("name"), error
        )
        return {}


__all__ = ["DenialTally", "period_key", "period_of", "tally_name"]
