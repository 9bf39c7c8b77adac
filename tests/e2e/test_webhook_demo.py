"""`make run` (``computegate demo``): the live demo shows accept, reject, annotate and warn, pods
running on H100 nodes, a Job freeing capacity and a concurrent scale-up stopping at the cap, in
about two minutes, and leaves no process behind."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _children_named(word: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if word in cmdline:
                found.append(cmdline)
    return found


@dataclass
class DemoRun:
    result: subprocess.CompletedProcess[str]
    elapsed: float
    out: str  # the output with the demo's line wrapping undone
    leftovers: list[str]


@pytest.fixture(scope="module")
def demo() -> DemoRun:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "computegate", "demo", "--examples", str(EXAMPLES)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    elapsed = time.monotonic() - started
    return DemoRun(result, elapsed, " ".join(result.stdout.split()), _children_named("computegate-demo-"))


def test_the_demo_shows_accept_reject_run_complete_scale_and_warn_and_stops_everything(demo: DemoRun) -> None:
    result, out = demo.result, demo.out
    assert result.returncode == 0, result.stderr
    assert "pod/train-llm created" in out
    assert "computegate.io/license: globex-h100" in out and "computegate.io/code: Licensed" in out
    assert re.search(r"train-llm 1/1 Running .* gpu-h100-a", out), result.stdout  # kubectl get pods -o wide
    assert "Error from server (Forbidden)" in out and "[NoLicense] Pod initech/finetune" in out
    assert "[LicenseCapExceeded] Deployment globex-" in out
    assert "job.batch/eval condition met" in out
    assert re.search(r"eval-\w+ 0/1 Completed", out), result.stdout
    assert "deployment.apps/serve-a scaled" in out or "deployment.apps/serve-b scaled" in out
    assert "Warning: Audit mode, would deny: [NoLicense]" in out and "computegate.io/decision: Audit" in out
    # It ends with the license revoked: the admin sees the license's and the tenant's status, the
    # tenant a Warning Event on each running pod.
    assert "Violations=True LicenseRevoked" in out and "reported " in out
    assert re.search(r"train-llm\s+LicenseRevoked\s+This running pod would be refused now", out), out
    assert "nothing is left running" in out
    assert demo.elapsed < 150, f"the demo took {demo.elapsed:.0f}s"
    assert not demo.leftovers, "a process of the demo is still running"


def test_the_concurrent_scale_up_stops_at_the_cap_and_the_refused_replicaset_grows_later(
    demo: DemoRun,
) -> None:
    out = demo.out
    # Refused at its pod (FailedCreate, the usual race) or, on a slow machine, at its scale.
    assert re.search(r"\[LicenseCapExceeded\] (Pod globex-ml/serve-|Deployment globex-ml/serve-)", out), (
        demo.result.stdout
    )
    assert re.search(r"serve-[ab] has its pod \d+s after the capacity was freed", out), demo.result.stdout
