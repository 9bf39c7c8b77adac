"""What the benchmarks share: the Go tools (built on demand, cached), CPU pinning, a load
client run (vegeta), min/median/max over rounds, and the machine's description.

Benchmarks are not tests: nothing here asserts a timing.
"""

from __future__ import annotations

import base64
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

TOOLS_DIR = Path(
    os.environ.get("COMPUTEGATE_BENCH_BIN", Path.home() / ".cache" / "computegate" / "bench-bin")
)
# Built from their Go modules with `go install` the first time they are needed, then reused.
GO_TOOLS = {
    "vegeta": "github.com/tsenart/vegeta/v12@v12.13.0",
    "opa": "github.com/open-policy-agent/opa@v1.22.4",
}
REPO = Path(__file__).resolve().parents[1]


def go_tool(name: str) -> Path:
    """The cached binary of ``name`` (see ``GO_TOOLS``), built with ``go install`` if absent."""
    path = TOOLS_DIR / name
    if path.is_file():
        return path
    go = shutil.which("go")
    if go is None:
        raise SystemExit(f"{name} is not in {TOOLS_DIR} and there is no `go` to build it ({GO_TOOLS[name]})")
    TOOLS_DIR.mkdir(parents=True, exist_ok=True)
    print(f"building {name} with go install {GO_TOOLS[name]} (once; cached in {TOOLS_DIR})", flush=True)
    env = {**os.environ, "GOBIN": str(TOOLS_DIR), "CGO_ENABLED": "0"}
    subprocess.run([go, "install", GO_TOOLS[name]], check=True, env=env, cwd=TOOLS_DIR)
    return path


def cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def pinned(argv: Sequence[str], cpu: int | None) -> list[str]:
    """``argv`` run on one CPU (``taskset``) when the machine has more than one, else as is."""
    if cpu is None or len(cpus()) < 2 or shutil.which("taskset") is None:
        return list(argv)
    return ["taskset", "-c", str(cpu), *argv]


def server_and_client_cpus() -> tuple[int | None, int | None]:
    """The servers on the first CPU, the load client on the second (when there are two)."""
    available = cpus()
    if len(available) < 2 or shutil.which("taskset") is None:
        return None, None
    return available[0], available[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass(frozen=True)
class Target:
    method: str
    url: str
    body: bytes
    headers: Mapping[str, str]

    def line(self) -> bytes:
        return json.dumps(
            {
                "method": self.method,
                "url": self.url,
                "body": base64.b64encode(self.body).decode("ascii"),
                "header": {key: [value] for key, value in self.headers.items()},
            },
            separators=(",", ":"),
        ).encode()


@dataclass(frozen=True)
class Attack:
    """One vegeta run: a fixed number of requests at a fixed concurrency, as fast as answered."""

    requests: int
    throughput: float  # successful requests per second
    p50_ms: float
    p99_ms: float
    mean_ms: float
    success: float  # share of 2xx answers
    status_codes: Mapping[str, int]
    errors: Sequence[str]


def attack(
    targets: Iterable[Target],
    *,
    workers: int,
    cert: Path | None = None,
    key: Path | None = None,
    ca: Path | None = None,
    cpu: int | None = None,
    timeout: float = 30.0,
    http2: bool = False,
) -> Attack:
    """Send every target once (``-lazy`` from stdin, so the run ends with the targets) with
    ``workers`` concurrent workers and no rate limit (``-rate=0 -max-workers``). HTTP/1.1 with
    kept-alive connections unless ``http2`` (the API server calls webhooks over HTTP/1.1)."""
    vegeta = str(go_tool("vegeta"))
    argv = [
        vegeta,
        "attack",
        "-format=json",
        "-lazy",
        "-rate=0",
        f"-workers={workers}",
        f"-max-workers={workers}",
        f"-timeout={timeout:.0f}s",
        "-keepalive=true",
        f"-http2={'true' if http2 else 'false'}",
    ]
    if cert is not None and key is not None:
        argv += [f"-cert={cert}", f"-key={key}"]
    if ca is not None:
        argv.append(f"-root-certs={ca}")
    payload = b"\n".join(target.line() for target in targets) + b"\n"
    env = {**os.environ, "GOMAXPROCS": "1"} if cpu is not None else None
    attacked = subprocess.run(pinned(argv, cpu), input=payload, capture_output=True, env=env, check=False)
    if attacked.returncode != 0:
        raise SystemExit(f"vegeta attack failed: {attacked.stderr.decode(errors='replace')[-2000:]}")
    encoded = subprocess.run(
        [vegeta, "encode", "--to=json"], input=attacked.stdout, capture_output=True, check=True
    )
    results = [json.loads(line) for line in encoded.stdout.splitlines() if line.strip()]
    # With -lazy, the end of the targets is reported as one result more: not a request.
    results = [r for r in results if not (r["code"] == 0 and "no targets" in (r.get("error") or ""))]
    if not results:
        raise SystemExit("vegeta sent no request")
    latencies = sorted(r["latency"] / 1e6 for r in results)
    begin = min(_ns(r["timestamp"]) for r in results)
    end = max(_ns(r["timestamp"]) + r["latency"] for r in results)
    codes: dict[str, int] = {}
    for r in results:
        codes[str(r["code"])] = codes.get(str(r["code"]), 0) + 1
    ok = sum(1 for r in results if 200 <= r["code"] < 300)
    return Attack(
        requests=len(results),
        throughput=ok / ((end - begin) / 1e9),
        p50_ms=_quantile(latencies, 0.50),
        p99_ms=_quantile(latencies, 0.99),
        mean_ms=statistics.fmean(latencies),
        success=ok / len(results),
        status_codes=codes,
        errors=sorted({r["error"] for r in results if r.get("error")}),
    )


def _ns(timestamp: str) -> int:
    """RFC 3339 with nanoseconds (Go's format) to nanoseconds since the epoch."""
    main, _, rest = timestamp.partition(".")
    digits = "".join(ch for ch in rest if ch.isdigit())
    zone = rest[len(digits) :] if rest else timestamp[19:]
    seconds = datetime.fromisoformat(main + (zone if zone != "Z" else "+00:00")).timestamp()
    return int(seconds) * 10**9 + int((digits + "000000000")[:9])


def _quantile(ordered: Sequence[float], q: float) -> float:
    """The inclusive quantile of sorted values (linear between the two nearest)."""
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Spread:
    """min, median and max of one figure over the rounds of a run."""

    low: float
    median: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(min(values), statistics.median(values), max(values))

    def fmt(self, digits: int = 1) -> str:
        return f"{self.median:,.{digits}f} ({self.low:,.{digits}f}-{self.high:,.{digits}f})"


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def machine() -> str:
    load = " ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
    return (
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs "
        f"({platform.processor() or platform.system()}), load average {load}; "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}"
    )


def rss_mib(pid: int) -> float:
    """Resident set size of a running process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")
