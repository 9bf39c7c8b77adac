"""Memory of the running operator at 10k tenants, 20k licenses and 100k pods (25k GPU pods).

    COMPUTEGATE_ASSETS=... .venv/bin/python -m bench.memory [--quick] [--scale F]

A bare control plane of its own, etcd's data on tmpfs (``/dev/shm``) when there is one; the
objects are created by many parallel POSTs from the load client (vegeta, as the admin):
10,000 namespaces and tenants (one namespace each), 20,000 licenses (two per tenant), 500
nodes, and 100,000 pods spread over the namespaces, one in four a GPU pod stamped with its
tenant's license (``computegate.io/license``), the rest CPU-only pods. Then the operator
(``python -m computegate webhook``) starts, lists and watches everything, and once ``/readyz``
answers (every index listed) its RSS is read from /proc. Three runs:

- **empty**: the operator on the control plane before the objects exist (its floor);
- **filtered**: the operator as it ships, keeping only pods stamped with a license;
- **keep all**: the same with ``Runtime.upsert`` patched (here, not in the product) to parse
  and keep every pod, which is what the filter saves.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Target, attack, free_port, http_ok, rss_mib, wait_for

LICENSE_ANNOTATION = "computegate.io/license"
H100 = "NVIDIA-H100-80GB-HBM3"
JURISDICTIONS = ["CN", "SG", "US", "AE", "MO", "DE", "VN", "IN"]


@dataclass(frozen=True)
class Scale:
    tenants: int
    licenses: int
    nodes: int
    pods: int
    gpu_share: int = 4  # one pod in four is a licensed GPU pod


FULL = Scale(tenants=10_000, licenses=20_000, nodes=500, pods=100_000)

# The operator with every pod kept: the filter of Runtime.upsert bypassed (for this benchmark only).
KEEP_ALL = """
import sys
from computegate.statefiles import Document, parse_state_object
from computegate.webhook import runtime
from pathlib import Path

_shipped = runtime.Runtime.upsert

def upsert(self, kind, body):
    if kind != "Pod":
        return _shipped(self, kind, body)
    self.state.upsert(parse_state_object(Document(Path("<watch>"), 1, {**dict(body), "kind": kind})))
    self.licenses_changed.set()

runtime.Runtime.upsert = upsert
from computegate.cli import main
sys.exit(main(sys.argv[1:]))
"""


def objects(scale: Scale) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """(collection path, body) per phase: namespaces, nodes and tenants first, then licenses, then pods."""
    group = "/apis/computegate.io/v1alpha1"
    first: list[tuple[str, dict[str, Any]]] = []
    for t in range(scale.tenants):
        namespace = f"tenant-{t}"
        first.append(
            ("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        )
        first.append(
            (
                f"{group}/tenants",
                {
                    "apiVersion": "computegate.io/v1alpha1",
                    "kind": "Tenant",
                    "metadata": {"name": f"tenant-{t}"},
                    "spec": {
                        "jurisdiction": JURISDICTIONS[t % len(JURISDICTIONS)],
                        "kyc": {"status": "Verified"},
                        "namespaces": [namespace],
                    },
                },
            )
        )
    for n in range(scale.nodes):
        first.append(
            (
                "/api/v1/nodes",
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": f"node-{n}", "labels": {"nvidia.com/gpu.product": H100}},
                },
            )
        )
    per_tenant = max(1, scale.licenses // scale.tenants)
    licenses = [
        (
            f"{group}/exportlicenses",
            {
                "apiVersion": "computegate.io/v1alpha1",
                "kind": "ExportLicense",
                "metadata": {"name": f"license-{n // per_tenant}-{n % per_tenant}"},
                "spec": {
                    "tenant": f"tenant-{(n // per_tenant) % scale.tenants}",
                    "licenseNumber": f"D{n:07d}",
                    "authority": "US-BIS",
                    "validFrom": "2026-01-01T00:00:00Z",
                    "validUntil": "2030-01-01T00:00:00Z",
                    "accelerators": ["nvidia-h100-sxm5-80gb"],
                    "maxTPP": 50_000_000,
                },
            },
        )
        for n in range(scale.licenses)
    ]
    pods: list[tuple[str, dict[str, Any]]] = []
    for p in range(scale.pods):
        tenant = p % scale.tenants
        namespace = f"tenant-{tenant}"
        meta: dict[str, Any] = {"name": f"pod-{p}", "namespace": namespace, "labels": {"app": "bench"}}
        container: dict[str, Any] = {"name": "main", "image": "registry.example/app:1"}
        spec: dict[str, Any] = {"containers": [container], "nodeName": f"node-{p % scale.nodes}"}
        if p % scale.gpu_share == 0:
            meta["annotations"] = {LICENSE_ANNOTATION: f"license-{tenant}-0"}
            container["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
            spec["nodeSelector"] = {"nvidia.com/gpu.product": H100}
        else:
            container["resources"] = {"requests": {"cpu": "500m", "memory": "1Gi"}}
        pods.append(
            (
                f"/api/v1/namespaces/{namespace}/pods",
                {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec},
            )
        )
    return {"namespaces, tenants and nodes": first, "licenses": licenses, "pods": pods}


def create_all(plane: Any, scale: Scale, workers: int) -> dict[str, float]:
    pki = plane.pki_dir
    seconds: dict[str, float] = {}
    for phase, items in objects(scale).items():
        started = time.monotonic()
        targets = [
            Target("POST", plane.url + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
            for path, body in items
        ]
        result = attack(
            targets,
            workers=workers,
            cert=pki / "admin.crt",
            key=pki / "admin.key",
            ca=pki / "ca.crt",
            http2=True,
        )
        if result.success < 1.0:
            raise SystemExit(f"creating {phase}: {result.status_codes} {result.errors[:3]}")
        seconds[phase] = time.monotonic() - started
        print(f"  memory: created {len(items):,} {phase} in {seconds[phase]:.0f} s", flush=True)
    return seconds


@dataclass(frozen=True)
class Reading:
    run: str
    rss_mib: float
    ready_s: float


def operator_rss(plane: Any, work: Path, run: str, *, keep_all: bool = False) -> Reading:
    from computegate.devcluster import ManagedProcess

    port, health = free_port(), free_port()
    args = [
        "webhook",
        f"--kubeconfig={plane.kubeconfig_path}",
        f"--port={port}",
        f"--health-port={health}",
        f"--cert-dir={work / 'certs'}",
    ]
    argv = (
        [sys.executable, "-c", KEEP_ALL, *args] if keep_all else [sys.executable, "-m", "computegate", *args]
    )
    started = time.monotonic()
    process = ManagedProcess.spawn(
        f"operator-{run}", argv, log_path=work / f"operator-{run}.log", detach=False
    )
    try:
        wait_for(
            lambda: http_ok(f"http://127.0.0.1:{health}/readyz"), timeout=900, what=f"the operator ({run})"
        )
        ready = time.monotonic() - started
        time.sleep(3)  # the first events after the LIST, the ledger reconciler's first pass
        reading = Reading(run, rss_mib(process.pid), ready)
    finally:
        process.stop()
    print(f"  memory: {run}: RSS {reading.rss_mib:,.0f} MiB, ready after {reading.ready_s:.0f} s", flush=True)
    return reading


def run(scale: Scale, workers: int) -> tuple[list[Reading], dict[str, float]]:
    from computegate.devcluster import ControlPlane, find_binaries, install_crds

    tmpfs = Path("/dev/shm")
    base = tmpfs if tmpfs.is_dir() and os.access(tmpfs, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="computegate-bench-memory-", dir=base) as tmp:
        work = Path(tmp)
        plane = ControlPlane.start(work / "plane", binaries=find_binaries())
        try:
            install_crds(plane.admin_http())
            readings = [operator_rss(plane, work, "empty")]
            seconds = create_all(plane, scale, workers)
            readings.append(operator_rss(plane, work, "filtered"))
            readings.append(operator_rss(plane, work, "keep all", keep_all=True))
        finally:
            plane.stop()
    return readings, seconds


def table(scale: Scale, readings: list[Reading]) -> str:
    gpu = scale.pods // scale.gpu_share
    lines = [
        f"State: {scale.tenants:,} tenants, {scale.licenses:,} licenses, {scale.nodes:,} nodes, "
        f"{scale.pods:,} pods ({gpu:,} GPU pods with a license stamp).",
        "",
        "| operator | RSS MiB | ready after s |",
        "|---|---:|---:|",
    ]
    lines += [f"| {r.run} | {r.rss_mib:,.0f} | {r.ready_s:.0f} |" for r in readings]
    by = {r.run: r for r in readings}
    if {"empty", "filtered", "keep all"} <= by.keys():
        kept = by["filtered"].rss_mib - by["empty"].rss_mib
        saved = by["keep all"].rss_mib - by["filtered"].rss_mib
        lines += [
            "",
            f"Above the empty operator: {kept:,.0f} MiB for this state with the filter; keeping every pod "
            f"would add {saved:,.0f} MiB more "
            f"({saved * 1024 / max(1, scale.pods - gpu):,.1f} KiB per CPU-only pod).",
        ]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a tenth of the state")
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the full state")
    p.add_argument("--workers", type=int, default=16, help="parallel POSTs while creating the objects")
    return p


def scale_of(args: argparse.Namespace) -> Scale:
    factor = 0.1 if args.quick else args.scale
    return Scale(*(max(1, int(n * factor)) for n in (FULL.tenants, FULL.licenses, FULL.nodes, FULL.pods)))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    scale = scale_of(args)
    readings, _ = run(scale, args.workers)
    print(table(scale, readings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
