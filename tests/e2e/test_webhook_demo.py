"""`make run` (``computegate demo``): the live demo shows accept, reject, annotate and warn, fast,
and leaves no process behind."""

from __future__ import annotations

import subprocess
import sys
import time
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


def test_the_demo_shows_accept_reject_annotate_and_warn_and_stops_everything() -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "computegate", "demo", "--examples", str(EXAMPLES)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())  # the demo wraps long lines
    assert "pod/train-llm created" in out
    assert "computegate.io/license: globex-h100" in out and "computegate.io/code: Licensed" in out
    assert "Error from server (Forbidden)" in out and "[NoLicense] Pod initech/finetune" in out
    assert "[LicenseCapExceeded] Deployment globex-" in out
    assert "Warning: Audit mode, would deny: [NoLicense]" in out and "computegate.io/decision: Audit" in out
    assert "nothing is left running" in out
    assert elapsed < 90, f"the demo took {elapsed:.0f}s"
    assert not _children_named("computegate-demo-"), "a process of the demo is still running"
