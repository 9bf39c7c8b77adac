"""The webhook's HTTPS endpoint against a minimal aiohttp server and against OPA.

    .venv/bin/python -m bench.https [--quick] [--rounds N] [--requests N]

Three servers, each its own process, all on the first CPU (``taskset``), the load client
(vegeta, ``-rate=0 -max-workers=C``) on the second:

- **computegate**: our ``WebhookServer`` with ``Runtime.admit`` (the serving path of the
  operator: parse the review once, judge it against a state of 1,000 tenants, 2,000 licenses,
  500 nodes and 20,000 pods, write the decision log line and the metrics, answer), with no
  Kopf and no API server behind it (the state is built in the process, ``--ledger off``:
  the reviews are dry runs, which reserve nothing);
- **aiohttp**: the smallest aiohttp HTTPS server that parses the review and allows it, with
  the same certificate in the same Python;
- **opa**: ``opa run --server`` over TLS with ``bench/opa/computegate.rego``, the closest
  Rego to our decision (tenant by namespace, whether its jurisdiction needs a license, the
  GPUs asked for, a valid license for the model with headroom) on data from the same state.

The same AdmissionReviews (a dry-run CREATE of an 8 x H100 pod by a licensed tenant, over 100
tenants) go to each, a fixed number per run, at concurrency 1, 8 and 32, in interleaved rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import ssl
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    Attack,
    Spread,
    Target,
    attack,
    free_port,
    go_tool,
    pinned,
    ratio,
    server_and_client_cpus,
    wait_for,
)

SERVERS = ("computegate", "aiohttp", "opa")
CONCURRENCY = (1, 8, 32)
WEBHOOK = "validate-workloads"
HERE = Path(__file__).resolve().parent
H100_MODEL = "nvidia-h100-sxm5-80gb"
H100_TPP = 15832


def write_certificates(folder: Path) -> dict[str, Path]:
    """One CA; a serving pair for 127.0.0.1 (tls.crt/tls.key/ca.crt, as the webhook reads them)
    and a client pair the load client presents."""
    from computegate.devcluster import CertificateAuthority

    ca = CertificateAuthority.generate("computegate-bench-ca")
    ca.write(folder / "ca.crt", folder / "ca.key")
    ca.issue("127.0.0.1", hosts=["127.0.0.1", "localhost"], server=True).write(
        folder / "tls.crt", folder / "tls.key"
    )
    ca.issue("kube-apiserver", client=True).write(folder / "client.crt", folder / "client.key")
    return {name: folder / f"{name}.{ext}" for name, ext in (("ca", "crt"), ("client", "crt"))} | {
        "client_key": folder / "client.key",
        "cert": folder / "tls.crt",
        "key": folder / "tls.key",
    }


def review(tenant_index: int) -> dict[str, Any]:
    from bench.engine import _namespace, _pod_body

    namespace = _namespace(tenant_index, 0)
    pod = _pod_body(f"trainer-{tenant_index}", namespace, 8, product="NVIDIA-H100-80GB-HBM3", node_name=None)
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": pod["metadata"]["name"],
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": f"tenant-{tenant_index}-user", "groups": ["system:authenticated"]},
            "object": pod,
            "oldObject": None,
            "dryRun": True,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def base_reviews(quick: bool) -> list[dict[str, Any]]:
    from bench.engine import BASE, Size, licensed_tenants

    return [review(t) for t in licensed_tenants(Size(100, 200, 50, 2_000) if quick else BASE)]


def reviews(count: int, bodies: list[dict[str, Any]]) -> Iterator[bytes]:
    for i in range(count):
        body = bodies[i % len(bodies)]
        body["request"]["uid"] = str(uuid.uuid4())
        yield json.dumps(body, separators=(",", ":")).encode()


def _apply_patch(obj: dict[str, Any], operations: list[dict[str, Any]]) -> None:
    """The ``add``/``replace`` operations of the mutating webhook's annotation patch."""
    for operation in operations:
        keys = [key.replace("~1", "/").replace("~0", "~") for key in operation["path"].split("/")[1:]]
        node = obj
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = operation["value"]


# ----- the servers (each runs in its own process: `python -m bench.https serve-...`) -----


def serve_computegate(port: int, cert_dir: Path, quick: bool) -> None:
    """The operator's serving path with a state built in-process (no Kopf, no API server)."""
    import logging

    from bench.engine import BASE, Size, build_state
    from computegate.webhook.certs import ServingFiles
    from computegate.webhook.configuration import WEBHOOK_PATHS
    from computegate.webhook.observe import Metrics, configure_decision_log
    from computegate.webhook.review import Reviewer
    from computegate.webhook.runtime import Runtime
    from computegate.webhook.server import WebhookServer

    logging.basicConfig(level=logging.WARNING)
    state = build_state(Size(100, 200, 50, 2_000) if quick else BASE)
    server = WebhookServer(files=ServingFiles.in_dir(cert_dir), paths=WEBHOOK_PATHS, port=port)
    runtime = Runtime(
        state=state,
        reviewer=Reviewer(state, admin_users=frozenset(), admin_groups=frozenset({"system:masters"})),
        metrics=Metrics(),
        decisions=configure_decision_log(),  # to stdout, as in a pod: here the process's log file
        kube=None,  # type: ignore[arg-type]  # admissions of licensed dry runs post nothing
        server=server,
        ledger=None,
    )
    runtime.synced.set()
    import gc

    gc.collect()
    gc.freeze()  # as after the operator's initial LIST: a long-lived state
    asyncio.run(server.serve(runtime.admit))


def serve_minimal(port: int, cert_dir: Path) -> None:
    """Parse the review, allow it: the floor of an aiohttp HTTPS webhook in this Python."""
    import aiohttp.web

    async def handle(request: aiohttp.web.Request) -> aiohttp.web.Response:
        body = json.loads(await request.read())
        answer = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": body["request"]["uid"], "allowed": True},
        }
        return aiohttp.web.Response(body=json.dumps(answer).encode(), content_type="application/json")

    context = ssl.create_default_context(purpose=ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_dir / "tls.crt", cert_dir / "tls.key")
    app = aiohttp.web.Application()
    app.add_routes([aiohttp.web.post("/{webhook}", handle)])
    aiohttp.web.run_app(app, host="127.0.0.1", port=port, ssl_context=context, access_log=None, print=None)


def opa_data(quick: bool) -> dict[str, Any]:
    """The data OPA decides from: what our state holds, keyed the way the policy reads it."""
    from bench.engine import BASE, JURISDICTIONS, NOW, Size, build_state
    from computegate.engine import consumption

    size = Size(100, 200, 50, 2_000) if quick else BASE
    state = build_state(size)
    tenants: dict[str, Any] = {}
    namespaces: dict[str, str] = {}
    for name, tenant in state.tenants.items():
        tenants[name] = {"jurisdiction": tenant.spec.jurisdiction, "licenses": []}
        for namespace in tenant.spec.namespaces:
            namespaces[namespace] = name
    licenses: dict[str, Any] = {}
    for name, lic in state.licenses.items():
        spec = lic.spec
        tenants[spec.tenant]["licenses"].append(name)
        licenses[name] = {
            "validFromNs": int(spec.valid_from.timestamp()) * 10**9,
            "validUntilNs": int(spec.valid_until.timestamp()) * 10**9,
            "revoked": bool(spec.revoked),
            "accelerators": {model: True for model in spec.accelerators},
            "maxTPP": float(spec.max_tpp),
            "usedTPP": float(consumption.live(state, name).tpp),
        }
    del NOW
    return {
        "state": {
            "namespaces": namespaces,
            "tenants": tenants,
            "licenses": licenses,
            # The built-in rules for the jurisdictions of the benchmark's tenants.
            "requireLicense": {j: j in {"CN", "AE", "MO", "VN"} for j in JURISDICTIONS},
            "products": {"NVIDIA-H100-80GB-HBM3": {"model": H100_MODEL, "tpp": H100_TPP}},
            "resources": {"nvidia.com/gpu": True},
        }
    }


def start_opa(
    port: int, certs: dict[str, Path], work: Path, quick: bool, cpu: int | None
) -> subprocess.Popen[bytes]:
    data = work / "data.json"
    data.write_text(json.dumps(opa_data(quick)))
    argv = [
        str(go_tool("opa")),
        "run",
        "--server",
        f"--addr=127.0.0.1:{port}",
        f"--tls-cert-file={certs['cert']}",
        f"--tls-private-key-file={certs['key']}",
        "--set=default_decision=computegate/response",
        "--log-level=error",
        "--skip-version-check",
        str(HERE / "opa" / "computegate.rego"),
        str(data),
    ]
    env = {**os.environ, "GOMAXPROCS": "1"}  # one CPU, like the Python servers
    log = (work / "opa.log").open("wb")
    return subprocess.Popen(pinned(argv, cpu), stdout=log, stderr=subprocess.STDOUT, env=env)


@dataclass
class Servers:
    work: Path
    certs: dict[str, Path]
    ports: dict[str, int]
    bodies: list[dict[str, Any]] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def url(self, server: str) -> str:
        path = "" if server == "opa" else WEBHOOK
        return f"https://127.0.0.1:{self.ports[server]}/{path}"

    def post(self, server: str, body: bytes) -> dict[str, Any]:
        context = ssl.create_default_context(cafile=str(self.certs["ca"]))
        request = urllib.request.Request(
            self.url(server), data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer

    def stamp(self) -> None:
        """The reviews as the validating webhook sees them: after our mutating webhook's patch
        (the license stamps), which the API server applies first."""
        for body in self.bodies:
            mutate = {**body, "request": {**body["request"], "uid": str(uuid.uuid4())}}
            url = self.url("computegate").replace(WEBHOOK, "mutate-workloads")
            context = ssl.create_default_context(cafile=str(self.certs["ca"]))
            request = urllib.request.Request(
                url, data=json.dumps(mutate).encode(), headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, context=context, timeout=10) as response:
                answer = json.loads(response.read())["response"]
            _apply_patch(body["request"]["object"], json.loads(base64.b64decode(answer["patch"])))

    def answers(self, server: str) -> bool:
        try:
            self.post(server, next(reviews(1, self.bodies)))
        except OSError:
            return False
        return True

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def start_servers(work: Path, quick: bool, cpu: int | None) -> Servers:
    certs = write_certificates(work)
    servers = Servers(work, certs, {name: free_port() for name in SERVERS}, base_reviews(quick))
    try:
        python = [sys.executable, "-m", "bench.https"]
        for name, command in (("computegate", "serve-computegate"), ("aiohttp", "serve-aiohttp")):
            argv = [*python, command, "--port", str(servers.ports[name]), "--cert-dir", str(work)]
            log = (work / f"{name}.log").open("wb")
            argv += ["--quick"] if quick and name == "computegate" else []
            servers.processes.append(
                subprocess.Popen(pinned(argv, cpu), stdout=log, stderr=subprocess.STDOUT, cwd=HERE.parent)
            )
        servers.processes.append(start_opa(servers.ports["opa"], certs, work, quick, cpu))
        for name in SERVERS:
            wait_for(lambda name=name: servers.answers(name), timeout=180, what=f"the {name} server")
        servers.stamp()
        check_answers(servers)
    except BaseException:
        servers.stop()
        raise
    return servers


def check_answers(servers: Servers) -> None:
    """Every server allows the workload; OPA's policy and ours deny a pod past the license's cap."""
    body = next(reviews(1, servers.bodies))
    for name in SERVERS:
        answer = servers.post(name, body)
        if answer.get("response", {}).get("allowed") is not True:
            raise SystemExit(f"{name} should allow the benchmark's review, answered {answer}")
    too_big = json.loads(body)
    for container in too_big["request"]["object"]["spec"]["containers"][:1]:
        container["resources"] = {"limits": {"nvidia.com/gpu": 10_000}}  # 158 M TPP > maxTPP 50 M
    for name in ("computegate", "opa"):
        answer = servers.post(name, json.dumps(too_big).encode())
        if answer.get("response", {}).get("allowed") is not False:
            raise SystemExit(f"{name} should deny a pod past the license's cap, answered {answer}")


@dataclass(frozen=True)
class Row:
    server: str
    concurrency: int
    throughput: Spread
    p50_ms: Spread
    p99_ms: Spread


def run(*, rounds: int, requests: int, quick: bool, concurrency: tuple[int, ...] = CONCURRENCY) -> list[Row]:
    server_cpu, client_cpu = server_and_client_cpus()
    with tempfile.TemporaryDirectory(prefix="computegate-bench-https-") as tmp:
        servers = start_servers(Path(tmp), quick, server_cpu)
        results: dict[tuple[str, int], list[Attack]] = {}
        try:
            for round_ in range(rounds):
                for c in concurrency:
                    for name in SERVERS:
                        targets = [
                            Target("POST", servers.url(name), body, {"Content-Type": "application/json"})
                            for body in reviews(requests, servers.bodies)
                        ]
                        result = attack(
                            targets,
                            workers=c,
                            cert=servers.certs["client"],
                            key=servers.certs["client_key"],
                            ca=servers.certs["ca"],
                            cpu=client_cpu,
                        )
                        if result.success < 1.0:
                            raise SystemExit(f"{name} at c={c}: {result.status_codes} {result.errors[:3]}")
                        results.setdefault((name, c), []).append(result)
                        print(
                            f"  https round {round_ + 1}/{rounds} c={c:>2} {name:<11} "
                            f"{result.throughput:8,.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                            f"p99 {result.p99_ms:6.2f} ms",
                            flush=True,
                        )
        finally:
            servers.stop()
    return [
        Row(
            name,
            c,
            Spread.of([a.throughput for a in attacks]),
            Spread.of([a.p50_ms for a in attacks]),
            Spread.of([a.p99_ms for a in attacks]),
        )
        for (name, c), attacks in results.items()
    ]


def ratios(rows: list[Row]) -> dict[tuple[int, str], list[float]]:
    """computegate / aiohttp and computegate / opa throughput, per round order is lost: medians."""
    by = {(row.server, row.concurrency): row for row in rows}
    out: dict[tuple[int, str], list[float]] = {}
    for c in sorted({row.concurrency for row in rows}):
        ours = by[("computegate", c)].throughput.median
        out[(c, "aiohttp")] = [ratio(ours, by[("aiohttp", c)].throughput.median)]
        out[(c, "opa")] = [ratio(ours, by[("opa", c)].throughput.median)]
    return out


def table(rows: list[Row]) -> str:
    by = {(row.server, row.concurrency): row for row in rows}
    lines = [
        "| c | server | requests/s | p50 ms | p99 ms | vs aiohttp | vs OPA |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for c in sorted({row.concurrency for row in rows}):
        for name in SERVERS:
            row = by[(name, c)]
            lines.append(
                f"| {c} | {name} | {row.throughput.fmt(0)} | {row.p50_ms.fmt(2)} | {row.p99_ms.fmt(2)} | "
                f"{ratio(row.throughput.median, by[('aiohttp', c)].throughput.median):.2f} | "
                f"{ratio(row.throughput.median, by[('opa', c)].throughput.median):.2f} |"
            )
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.https", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command")
    for command in ("serve-computegate", "serve-aiohttp"):
        serve = sub.add_parser(command)
        serve.add_argument("--port", type=int, required=True)
        serve.add_argument("--cert-dir", type=Path, required=True)
        serve.add_argument("--quick", action="store_true")
    p.add_argument("--quick", action="store_true", help="2 rounds of 500 requests, a small state")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--requests", type=int, default=3_000, help="requests per run")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "serve-computegate":
        serve_computegate(args.port, args.cert_dir, args.quick)
        return 0
    if args.command == "serve-aiohttp":
        serve_minimal(args.port, args.cert_dir)
        return 0
    rounds, requests = (2, 500) if args.quick else (args.rounds, args.requests)
    print(table(run(rounds=rounds, requests=requests, quick=args.quick)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
