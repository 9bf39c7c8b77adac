"""After admission (DESIGN.md "After admission"): every running accelerator pod judged again.

``rejudge`` takes the state and an instant and returns a ``Finding`` for every running pod that
the same engine would refuse now: each pod is judged as already running (``judge_running``:
its own use is not counted twice), and the caps are checked over all running pods at once,
oldest first, so when a cap falls below what is in use the newest pods beyond it are the
violations and the oldest keep their place. Pure: no I/O, no clock (the caller passes ``at``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from computegate.engine.decide import footprint, judge_running
from computegate.engine.indexes import NO_USAGE, Usage
from computegate.engine.state import TERMINAL_PHASES, ClusterState
from computegate.engine.verdict import Code, Verdict
from computegate.models.kube import Pod
from computegate.models.resources import Enforcement
from computegate.vocabulary import CODE_ANNOTATION, LICENSE_ANNOTATION

__all__ = ["NEVER_EVICTED", "Finding", "next_change", "rejudge", "running_pods"]

# Codes that can come from state the operator lacks (a namespace or tenant it has not read, a
# model no profile resolves, a license it does not see): reported, never acted upon for a pod
# ComputeGate admitted. A pod no decision stamped never had a license to lose: its NoLicense is
# acted upon.
NEVER_EVICTED = frozenset({Code.UNKNOWN_TENANT, Code.UNKNOWN_ACCELERATOR, Code.NO_LICENSE})

_EPSILON = 1e-9  # fractional MIG shares must not fail a cap they exactly meet


@dataclass(frozen=True)
class Finding:
    """A running pod that would be refused now."""

    namespace: str
    name: str
    uid: str
    tenant: str | None
    license: str | None  # the license the pod is counted under (its stamp), if any
    code: Code
    message: str
    enforced: bool  # False: the tenant's enforcement is Audit, so this is a would-be violation
    controlled_tpp: float
    controlled_accelerators: float
    since: datetime | None = None  # when it became so, when the state itself says (validUntil)
    admitted: bool = True  # False: no decision stamped it (it ran while the webhooks were away)

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def evictable(self) -> bool:
        if not self.enforced:
            return False
        return self.code not in NEVER_EVICTED or (self.code is Code.NO_LICENSE and not self.admitted)


def running_pods(state: ClusterState) -> list[Pod]:
    """The accelerator pods that have not finished, oldest first (ties by name): those a
    decision stamped, and those that ran without one (created before ComputeGate was installed,
    or while its webhooks were away) and ask for accelerators or reach devices, which are judged
    as if created now."""
    found = [
        pod
        for pod in state.pods.values()
        if pod.status.phase not in TERMINAL_PHASES and (_admitted(pod) or _uses_accelerators(state, pod))
    ]
    return sorted(found, key=_age_order)


def _admitted(pod: Pod) -> bool:
    return CODE_ANNOTATION in pod.metadata.annotations


def _uses_accelerators(state: ClusterState, pod: Pod) -> bool:
    fp = footprint(state, pod)
    return bool(fp.uses or fp.device_access)


def _age_order(pod: Pod) -> tuple[float, str, str]:
    created = pod.metadata.creation_timestamp
    return (created.timestamp() if created else float("inf"), pod.metadata.namespace or "", pod.metadata.name)


def rejudge(state: ClusterState, *, at: datetime) -> list[Finding]:
    """Every running pod that the engine would refuse now, in age order (oldest first)."""
    findings: list[Finding] = []
    used: dict[str, Usage] = {}
    for pod in running_pods(state):
        verdict = judge_running(state, pod, at=at)
        if verdict.would_deny:
            findings.append(_finding(state, pod, verdict, verdict.code, verdict.message))
            continue
        if verdict.code is not Code.LICENSED or verdict.license is None or not _admitted(pod):
            continue  # a pod no decision stamped consumes no license: only a stamp charges one
        lic = state.licenses[verdict.license]
        mine = Usage(verdict.controlled_tpp, verdict.controlled_accelerators)
        before = used.get(lic.metadata.name, NO_USAGE)
        after = before + mine
        max_count = lic.spec.max_accelerators
        if after.tpp > lic.spec.max_tpp + _EPSILON or (
            max_count is not None and after.accelerators > max_count + _EPSILON
        ):
            message = (
                f"[{Code.LICENSE_CAP_EXCEEDED.value}] Pod {pod.metadata.namespace}/{pod.metadata.name} uses "
                f"{_fmt(mine.tpp)} controlled TPP under ExportLicense {lic.metadata.name}, whose cap is now "
                f"{_fmt(lic.spec.max_tpp)} TPP"
                + ("" if max_count is None else f" and {_fmt(max_count)} accelerators")
                + f"; the older pods under it already use {_fmt(before.tpp)} TPP, so this pod is beyond "
                "the cap (the newest pods beyond a cap are the violations). "
                "Scale down, or ask for a larger license."
            )
            findings.append(_finding(state, pod, verdict, Code.LICENSE_CAP_EXCEEDED, message))
            continue
        used[lic.metadata.name] = after
    return findings


def _finding(state: ClusterState, pod: Pod, verdict: Verdict, code: Code, message: str) -> Finding:
    stamped = pod.metadata.annotations.get(LICENSE_ANNOTATION)
    since = None
    if code is Code.LICENSE_EXPIRED and verdict.license in state.licenses:
        since = state.licenses[verdict.license].spec.valid_until
    enforced = state.policy.enforcement_for(verdict.tenant) is Enforcement.ENFORCE
    return Finding(
        namespace=pod.metadata.namespace or "",
        name=pod.metadata.name,
        uid=pod.metadata.uid or "",
        tenant=verdict.tenant,
        license=stamped or verdict.license,
        code=code,
        message=message,
        enforced=enforced,
        controlled_tpp=verdict.controlled_tpp,
        controlled_accelerators=verdict.controlled_accelerators,
        since=since,
        admitted=_admitted(pod),
    )


def next_change(state: ClusterState, *, after: datetime) -> datetime | None:
    """The next instant a license's validity changes on its own (validFrom or validUntil): the
    re-judging's timer, so an expiry is reported at that instant, not at the next pass."""
    instants: Iterable[datetime] = (
        moment
        for lic in state.licenses.values()
        for moment in (lic.spec.valid_from, lic.spec.valid_until)
        if moment > after
    )
    return min(instants, default=None)


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
