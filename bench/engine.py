"""Decision throughput and latency of the engine, at a typical and at ten times that state.

    .venv/bin/python bench/engine.py            # also part 1 of `make bench` (bench/run.py)
    .venv/bin/python bench/engine.py --quick    # fewer decisions, smaller states: a smoke run

What it measures, on one core (one thread; ``--cpu N`` also pins the process to CPU N):

- ``decide``: ``decide(state, pod)`` on an already parsed Pod model;
- ``parse+decide``: ``Pod.model_validate(dict)`` then ``decide``, what the webhook pays per
  request once the AdmissionReview's JSON is a dict;

for a typical 8-GPU pod (nodeSelector on the H100 product label, a licensed tenant in a
RequireLicense country), cycling over 100 such tenants, against a state of 1,000 tenants,
2,000 licenses, 500 nodes and 20,000 pods (a quarter of them licensed and annotated), and
against ten times that state, in the same run. Memory is what ``tracemalloc`` sees the state
take once built and indexed (including the derived indexes a first decision builds).

Benchmarks are not tests: nothing here asserts a timing. The figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from computegate.catalog import builtin_catalog
from computegate.engine import ClusterState, Code, decide
from computegate.models import ExportLicense, Namespace, Node, Pod, Tenant

NOW = datetime(2026, 6, 1, tzinfo=UTC)
H100 = "NVIDIA-H100-80GB-HBM3"
PRODUCTS = [H100, "NVIDIA-A100-SXM4-80GB", "NVIDIA-L40S", "NVIDIA-H200", "Tesla-T4"]
JURISDICTIONS = ["CN", "SG", "US", "AE", "MO", "DE", "VN", "IN"]  # CN, AE, MO, VN: RequireLicense
LICENSED_SHARE = 4  # one pod in four carries a license annotation
TARGET_RATE = 10_000  # decisions per second
TARGET_P99_US = 1_000.0
TARGET_RATIO = 1.2


@dataclass(frozen=True)
class Size:
    tenants: int
    licenses: int
    nodes: int
    pods: int

    def times(self, factor: int) -> Size:
        return Size(self.tenants * factor, self.licenses * factor, self.nodes * factor, self.pods * factor)


BASE = Size(tenants=1_000, licenses=2_000, nodes=500, pods=20_000)


def _pod_body(
    name: str, namespace: str, gpus: int, *, product: str | None, node_name: str | None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "main",
                "image": "registry.example/trainer:1.0",
                "resources": {
                    "requests": {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": gpus},
                    "limits": {"memory": "64Gi", "nvidia.com/gpu": gpus},
                },
            },
            {"name": "log", "image": "registry.example/logger:1.0", "resources": {"limits": {"cpu": "1"}}},
        ]
    }
    if product is not None:
        spec["nodeSelector"] = {"nvidia.com/gpu.product": product}
    if node_name is not None:
        spec["nodeName"] = node_name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "trainer"}},
        "spec": spec,
    }


def _namespace(tenant: int, which: int) -> str:
    return f"tenant-{tenant}-{which}"


def build_state(size: Size) -> ClusterState:
    state = ClusterState(builtin_catalog())
    for i in range(size.nodes):
        product = PRODUCTS[i % len(PRODUCTS)]
        labels = {"nvidia.com/gpu.product": product, "nvidia.com/gpu.count": "8", "pool": f"pool-{i % 7}"}
        state.upsert(
            Node.model_validate(
                {
                    "metadata": {"name": f"node-{i}", "labels": labels},
                    "status": {"capacity": {"nvidia.com/gpu": "8", "cpu": "128", "memory": "2Ti"}},
                }
            )
        )
    for t in range(size.tenants):
        state.upsert(
            Tenant.model_validate(
                {
                    "metadata": {"name": f"tenant-{t}"},
                    "spec": {
                        "jurisdiction": JURISDICTIONS[t % len(JURISDICTIONS)],
                        "kyc": {"status": "Verified", "verifiedAt": "2026-01-01T00:00:00Z"},
                        "namespaces": [_namespace(t, 0), _namespace(t, 1)],
                    },
                }
            )
        )
        state.upsert(Namespace.model_validate({"metadata": {"name": _namespace(t, 0)}}))
    per_tenant = max(1, size.licenses // size.tenants)
    for n in range(size.licenses):
        tenant, which = divmod(n, per_tenant)
        state.upsert(
            ExportLicense.model_validate(
                {
                    "metadata": {"name": f"license-{tenant}-{which}"},
                    "spec": {
                        "tenant": f"tenant-{tenant % size.tenants}",
                        "licenseNumber": f"D{n:07d}",
                        "authority": "US-BIS",
                        "validFrom": "2026-01-01T00:00:00Z",
                        # The second license of each tenant expired: a decision sees both kinds.
                        "validUntil": "2027-01-01T00:00:00Z" if which == 0 else "2026-03-01T00:00:00Z",
                        "accelerators": ["nvidia-h100-sxm5-80gb", "nvidia-a100-sxm4-80gb"],
                        "maxTPP": 50_000_000,
                        "maxAccelerators": 4096,
                    },
                }
            )
        )
    for p in range(size.pods):
        tenant = p % size.tenants
        node = p % size.nodes
        body = _pod_body(
            f"pod-{p}", _namespace(tenant, p % 2), 1 + p % 8, product=None, node_name=f"node-{node}"
        )
        if p % LICENSED_SHARE == 0:
            body["metadata"]["annotations"] = {"computegate.io/license": f"license-{tenant}-0"}
        body["status"] = {"phase": "Succeeded" if p % 10 == 9 else "Running"}
        state.upsert(Pod.model_validate(body))
    return state


def licensed_tenants(size: Size, count: int = 100) -> list[int]:
    """Tenants in CN (RequireLicense by the built-in rules), whose first license is valid."""
    return [t for t in range(size.tenants) if JURISDICTIONS[t % len(JURISDICTIONS)] == "CN"][:count]


def workloads(size: Size) -> list[dict[str, Any]]:
    return [
        _pod_body(f"trainer-{t}", _namespace(t, 0), 8, product=H100, node_name=None)
        for t in licensed_tenants(size)
    ]


@dataclass(frozen=True)
class Timing:
    rate: float  # decisions per second: decisions over the summed wall-clock time of their loops
    p50_us: float
    p99_us: float

    @classmethod
    def of(cls, samples: list[int], elapsed_ns: int) -> Timing:
        quantiles = statistics.quantiles(samples, n=100, method="inclusive")
        return cls(
            rate=len(samples) / (elapsed_ns / 1e9), p50_us=quantiles[49] / 1e3, p99_us=quantiles[98] / 1e3
        )


@dataclass
class Samples:
    samples: list[int] = field(default_factory=list)
    elapsed_ns: int = 0

    def timing(self) -> Timing:
        return Timing.of(self.samples, self.elapsed_ns)


def measure(call: Callable[[int], object], rounds: int, into: Samples) -> None:
    samples = [0] * rounds
    clock = time.perf_counter_ns
    start = clock()
    for i in range(rounds):
        before = clock()
        call(i)
        samples[i] = clock() - before
    into.elapsed_ns += clock() - start
    into.samples.extend(samples)


@dataclass
class Subject:
    """One state under test, with its workloads and what was measured on it."""

    size: Size
    state: ClusterState
    parsed: list[Pod]
    bodies: list[dict[str, Any]]
    build_s: float
    first_decision_ms: float
    memory_mb: float
    on_models: Samples = field(default_factory=Samples)
    from_dicts: Samples = field(default_factory=Samples)


def prepare(size: Size) -> Subject:
    gc.collect()
    tracemalloc.start()
    started = time.perf_counter()
    state = build_state(size)
    build_s = time.perf_counter() - started
    bodies = workloads(size)
    parsed = [Pod.model_validate(body) for body in bodies]
    first = time.perf_counter()
    verdict = decide(state, parsed[0], at=NOW)  # builds the derived indexes (consumption, profiles)
    first_ms = (time.perf_counter() - first) * 1e3
    memory_mb = tracemalloc.get_traced_memory()[0] / 2**20
    tracemalloc.stop()
    for pod in parsed:  # every workload is the typical, licensed case
        verdict = decide(state, pod, at=NOW)
        if verdict.code is not Code.LICENSED:
            raise SystemExit(f"benchmark workload should be Licensed, got {verdict.code}: {verdict.message}")
    return Subject(size, state, parsed, bodies, build_s, first_ms, memory_mb)


def time_decisions(subject: Subject, rounds: int) -> None:
    state, parsed, bodies = subject.state, subject.parsed, subject.bodies
    count = len(parsed)
    validate = Pod.model_validate
    for i in range(min(rounds, 1_000)):  # warm-up
        decide(state, parsed[i % count], at=NOW)
    measure(lambda i: decide(state, parsed[i % count], at=NOW), rounds, subject.on_models)
    measure(lambda i: decide(state, validate(bodies[i % count]), at=NOW), rounds, subject.from_dicts)


@dataclass(frozen=True)
class Result:
    size: Size
    build_s: float
    first_decision_ms: float
    memory_mb: float
    decide: Timing
    parse_decide: Timing


def run(sizes: list[Size], rounds: int, repeats: int) -> list[Result]:
    """Build every state, then time them in turns, so that background load hits them alike."""
    subjects = [prepare(size) for size in sizes]
    gc.collect()
    gc.freeze()  # long-lived states, as in the webhook: the collector need not walk them again
    for _ in range(repeats):
        for subject in subjects:
            time_decisions(subject, rounds // repeats)
    gc.unfreeze()
    return [
        Result(
            s.size, s.build_s, s.first_decision_ms, s.memory_mb, s.on_models.timing(), s.from_dicts.timing()
        )
        for s in subjects
    ]


def pin_to_one_core(cpu: int | None) -> str:
    """Single-threaded either way; with ``--cpu N`` the process is also pinned to that CPU."""
    if cpu is None:
        return "one thread, not pinned"
    if not hasattr(os, "sched_setaffinity"):
        return "one thread (this OS cannot pin)"
    os.sched_setaffinity(0, {cpu})
    return f"one thread, pinned to CPU {cpu}"


def _load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"


def _ok(value: bool) -> str:
    return "yes" if value else "**no**"


def report(small: Result, large: Result, rounds: int, repeats: int, pinning: str) -> str:
    lines = [
        f"Python {platform.python_version()} on {platform.machine()} ({os.cpu_count()} CPUs, load average "
        f"{_load()} at the end), {pinning}; "
        f"{rounds:,} decisions per row in {repeats} turns; "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
        "| state | tenants | licenses | nodes | pods | measure | decisions/s | p50 µs | p99 µs |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for label, result in (("1x", small), ("10x", large)):
        s = result.size
        for measure_name, timing in (("decide", result.decide), ("parse+decide", result.parse_decide)):
            lines.append(
                f"| {label} | {s.tenants:,} | {s.licenses:,} | {s.nodes:,} | {s.pods:,} | {measure_name} | "
                f"{timing.rate:,.0f} | {timing.p50_us:.1f} | {timing.p99_us:.1f} |"
            )
    lines += [
        "",
        "| 10x / 1x | decide | parse+decide |",
        "|---|---:|---:|",
        f"| time per decision (1 / rate) | {small.decide.rate / large.decide.rate:.2f} | "
        f"{small.parse_decide.rate / large.parse_decide.rate:.2f} |",
        f"| p50 | {large.decide.p50_us / small.decide.p50_us:.2f} | "
        f"{large.parse_decide.p50_us / small.parse_decide.p50_us:.2f} |",
        f"| p99 | {large.decide.p99_us / small.decide.p99_us:.2f} | "
        f"{large.parse_decide.p99_us / small.parse_decide.p99_us:.2f} |",
        "",
        "| state | build s | first decision ms (builds indexes) | memory MiB (tracemalloc) |",
        "|---|---:|---:|---:|",
        f"| 1x | {small.build_s:.1f} | {small.first_decision_ms:.1f} | {small.memory_mb:.1f} |",
        f"| 10x | {large.build_s:.1f} | {large.first_decision_ms:.1f} | {large.memory_mb:.1f} |",
        f"| 10x / 1x | | | {large.memory_mb / small.memory_mb:.2f} |",
        "",
        "| target | decide | parse+decide |",
        "|---|---|---|",
    ]
    for name, check in (
        (f"≥ {TARGET_RATE:,} decisions/s (both states)", lambda r: min(r[0].rate, r[1].rate) >= TARGET_RATE),
        (
            f"p99 < {TARGET_P99_US:,.0f} µs (both states)",
            lambda r: max(r[0].p99_us, r[1].p99_us) < TARGET_P99_US,
        ),
        (f"10x no slower than {TARGET_RATIO}x the 1x", lambda r: r[0].rate / r[1].rate <= TARGET_RATIO),
    ):
        lines.append(
            f"| {name} | {_ok(check((small.decide, large.decide)))} | "
            f"{_ok(check((small.parse_decide, large.parse_decide)))} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=50_000, help="decisions per measurement")
    parser.add_argument("--cpu", type=int, help="pin the process to this CPU")
    parser.add_argument("--repeats", type=int, default=10, help="turns in which the states are timed")
    parser.add_argument("--factor", type=int, default=10, help="size of the large state, in times the base")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1/10 the state, 5,000 decisions")
    args = parser.parse_args(argv)
    base, rounds = (BASE, args.rounds) if not args.quick else (Size(100, 200, 50, 2_000), 5_000)
    pinning = pin_to_one_core(args.cpu)
    small, large = run([base, base.times(args.factor)], rounds, args.repeats)
    print(report(small, large, rounds, args.repeats, pinning))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
