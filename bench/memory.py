"""Memory of the running operator at 10k tenants, 20k licenses and 100k pods (25k GPU pods).

    COMPUTEGATE_ASSETS=... .venv/bin/python -m bench.memory [--quick] [--scale F]

A bare control plane of its own, etcd's data on tmpfs (``/dev/shm``) when there is one; the
objects are created by many parallel POSTs from the load client (vegeta, as the admin):
10,000 namespaces and tenants (one namespace each), 20,000 licenses (two per tenant), 500
nodes, and 100,000 pods spread over the namespaces, one in four a GPU pod stamped with its
tenant's license (``computegate.io/license``), the rest CPU-only pods. Then the operator
(``python -m computegate webhook``) starts, lists and watches everything, and once ``/readyz``
answers (every kind listed) its RSS is read from /proc. The runs:

- **operator, empty**: the operator on the control plane before the objects exist (its floor);
- **operator**: the operator as it ships, once ``/readyz`` answers or after ``--ready-within``
  seconds (a replica that does not become ready fails closed: see docs/benchmarks.md);
- **state after LIST** and **state after LIST, keep all**: a process that reads everything
  with real paginated LISTs (500 per page) into a ``Runtime`` (its ``upsert``, as the watches
  do), with no WATCH, server or Kopf: ComputeGate's own share, as it ships (only pods stamped
  with a license are kept) and with every pod kept, which is what the filter saves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Target, attack, free_port, http_ok, rss_mib

LICENSE_ANNOTATION = "computegate.io/license"
CODE_ANNOTATION = "computegate.io/code"  # the operator keeps only pods a decision stamped
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
            meta["annotations"] = {LICENSE_ANNOTATION: f"license-{tenant}-0", CODE_ANNOTATION: "Licensed"}
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
    ready_s: float | None  # None: not ready within the time allowed
    pods_kept: int | None = None


def operator_rss(plane: Any, work: Path, run: str, *, ready_within: float) -> Reading:
    from computegate.devcluster import ManagedProcess

    port, health = free_port(), free_port()
    argv = [
        *(sys.executable, "-m", "computegate", "webhook"),
        f"--kubeconfig={plane.kubeconfig_path}",
        f"--port={port}",
        f"--health-port={health}",
        f"--cert-dir={work / 'certs'}",
    ]
    started = time.monotonic()
    log = work / f"operator-{run.replace(' ', '-').replace(',', '')}.log"
    process = ManagedProcess.spawn("operator", argv, log_path=log, detach=False)
    try:
        deadline = started + ready_within
        while not http_ok(f"http://127.0.0.1:{health}/readyz") and time.monotonic() < deadline:
            time.sleep(0.5)
        ready: float | None = time.monotonic() - started
        if time.monotonic() >= deadline:
            ready = None
        else:
            time.sleep(3)  # the first events after the LIST, the ledger reconciler's first pass
        reading = Reading(run, rss_mib(process.pid), ready)
    finally:
        process.stop()
    when = f"ready after {ready:.0f} s" if ready is not None else f"NOT ready after {ready_within:.0f} s"
    print(f"  memory: {run}: RSS {reading.rss_mib:,.0f} MiB, {when}", flush=True)
    return reading


def state_rss(plane: Any, run: str, *, keep_all: bool, unshared: bool = False) -> Reading:
    """RSS of a process that LISTs everything into a Runtime, as the watches feed it."""
    argv = [sys.executable, "-m", "bench.memory", "list-state", f"--kubeconfig={plane.kubeconfig_path}"]
    argv += ["--keep-all"] if keep_all else []
    argv += ["--unshared"] if unshared else []
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"list-state failed: {done.stderr[-2000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    reading = Reading(run, figures["rss_mib"], time.monotonic() - started, figures["pods_kept"])
    print(f"  memory: {run}: RSS {reading.rss_mib:,.0f} MiB, {reading.pods_kept:,} pods kept", flush=True)
    return reading


def list_state(kubeconfig: Path, keep_all: bool, unshared: bool = False) -> dict[str, Any]:
    """What the operator's watches do at start-up, alone: LIST each kind, upsert each object.
    ``unshared``: every kept pod holds its own containers (the baseline of that saving)."""
    import gc

    from computegate.catalog import builtin_catalog
    from computegate.engine import ClusterState
    from computegate.kubeclient import api_client, request
    from computegate.statefiles import Document, parse_state_object
    from computegate.vocabulary import STATE_KINDS
    from computegate.webhook.review import Reviewer
    from computegate.webhook.runtime import Runtime

    state = ClusterState(builtin_catalog())
    if unshared:
        state._sharing_containers = lambda pod: pod  # type: ignore[method-assign]
    runtime = Runtime.__new__(Runtime)  # only what upsert touches
    runtime.state = state
    runtime.licenses_changed = asyncio.Event()
    runtime.reviewer = Reviewer(state)  # the registration's exempt namespaces: none here
    with api_client(kubeconfig) as api:
        for kind in STATE_KINDS:
            if kind.version is None:
                continue  # Dynamic Resource Allocation: none in this state
            token = ""
            while True:
                query = {"limit": "500", **({"continue": token} if token else {})}
                page = request(api, "GET", kind.path(kind.version), query=query, timeout=120)[1]
                for item in page.get("items") or []:
                    if keep_all and kind.kind == "Pod":
                        document = Document(Path("<watch>"), 1, {**item, "kind": kind.kind})
                        state.upsert(parse_state_object(document))
                    else:
                        runtime.upsert(kind.kind, item)
                token = (page.get("metadata") or {}).get("continue") or ""
                if not token:
                    break
    page = {}
    gc.collect()
    return {"rss_mib": rss_mib(os.getpid()), "pods_kept": len(state.pods)}


def run(scale: Scale, workers: int, ready_within: float) -> tuple[list[Reading], dict[str, float]]:
    from computegate.devcluster import ControlPlane, find_binaries, install_crds

    tmpfs = Path("/dev/shm")
    base = tmpfs if tmpfs.is_dir() and os.access(tmpfs, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="computegate-bench-memory-", dir=base) as tmp:
        work = Path(tmp)
        plane = ControlPlane.start(work / "plane", binaries=find_binaries())
        try:
            install_crds(plane.kubeconfig_path)
            readings = [operator_rss(plane, work, "operator, empty", ready_within=120)]
            readings.append(state_rss(plane, "state after LIST, empty", keep_all=False))
            seconds = create_all(plane, scale, workers)
            readings.append(state_rss(plane, "state after LIST", keep_all=False))
            unshared = "state after LIST, containers not shared"
            readings.append(state_rss(plane, unshared, keep_all=False, unshared=True))
            readings.append(state_rss(plane, "state after LIST, keep all", keep_all=True))
            readings.append(operator_rss(plane, work, "operator", ready_within=ready_within))
        finally:
            plane.stop()
    return readings, seconds


def table(scale: Scale, readings: list[Reading]) -> str:
    gpu = scale.pods // scale.gpu_share
    lines = [
        f"State: {scale.tenants:,} tenants, {scale.licenses:,} licenses, {scale.nodes:,} nodes, "
        f"{scale.pods:,} pods ({gpu:,} GPU pods with a license stamp).",
        "",
        "| process | RSS MiB | pods kept | ready after s |",
        "|---|---:|---:|---:|",
    ]
    for r in readings:
        kept = f"{r.pods_kept:,}" if r.pods_kept is not None else ""
        if r.run.startswith("state"):
            ready = "(no Kopf)"
        else:
            ready = f"{r.ready_s:.0f}" if r.ready_s is not None else "not ready"
        lines.append(f"| {r.run} | {r.rss_mib:,.0f} | {kept} | {ready} |")
    by = {r.run: r for r in readings}
    if {"state after LIST", "state after LIST, keep all"} <= by.keys():
        saved = by["state after LIST, keep all"].rss_mib - by["state after LIST"].rss_mib
        lines += [
            "",
            f"Keeping every pod would take {saved:,.0f} MiB more "
            f"({saved * 1024 / max(1, scale.pods - gpu):,.1f} KiB per CPU-only pod not kept).",
        ]
    if {"state after LIST", "state after LIST, containers not shared"} <= by.keys():
        unshared = by["state after LIST, containers not shared"].rss_mib
        lines.append(
            f"Sharing equal containers between kept pods: {by['state after LIST'].rss_mib / unshared:.2f}x "
            f"the state's RSS without it ({unshared - by['state after LIST'].rss_mib:,.0f} MiB less)."
        )
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a tenth of the state")
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the full state")
    p.add_argument("--workers", type=int, default=16, help="parallel POSTs while creating the objects")
    p.add_argument("--ready-within", type=float, default=300, help="seconds the operator gets to be ready")
    sub = p.add_subparsers(dest="command")
    state = sub.add_parser("list-state", help="(internal) LIST everything into a Runtime, print RSS")
    state.add_argument("--kubeconfig", type=Path, required=True)
    state.add_argument("--keep-all", action="store_true")
    state.add_argument("--unshared", action="store_true")
    return p


def scale_of(args: argparse.Namespace) -> Scale:
    factor = 0.1 if args.quick else args.scale
    return Scale(*(max(1, int(n * factor)) for n in (FULL.tenants, FULL.licenses, FULL.nodes, FULL.pods)))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "list-state":
        print(json.dumps(list_state(args.kubeconfig, args.keep_all, args.unshared)))
        return 0
    scale = scale_of(args)
    readings, _ = run(scale, args.workers, 120 if args.quick else args.ready_within)
    print(table(scale, readings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
