"""`computegate evaluate` in a CI pipeline: rendered charts on stdin, the documents it skips,
custom resources with pod templates, --strict, --version, the audit field, integral counts and
the table output. (The real `helm template | computegate evaluate -` pipe: tests/chart/test_render.py.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from computegate import __version__
from tests.unit import test_evaluate_cli
from tests.unit.test_evaluate_cli import AT, EXECUTABLE, gpu_pod, run_in_process, write

state_dir = test_evaluate_cli.state_dir  # the fixture: a CN tenant licensed for 8 A100s

SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "research"}}
CONFIG_MAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "research"}}
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "trainjobs.example.com"},
    "spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": {"type": "object"}}}]},
}
TRAIN_JOB = {
    "apiVersion": "example.com/v1",
    "kind": "TrainJob",
    "metadata": {"name": "llm", "namespace": "research"},
    "spec": {"workers": 4, "template": gpu_pod("worker", 8)},
}
CUSTOM_DEPLOYMENT = {  # a custom resource that happens to be called Deployment: not apps/v1
    "apiVersion": "example.com/v1",
    "kind": "Deployment",
    "metadata": {"name": "mine", "namespace": "research"},
    "spec": {"replicas": 1},
}


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(EXECUTABLE), *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def test_documents_that_are_not_workloads_are_skipped_and_each_is_named_on_stderr(
    capsys: pytest.CaptureFixture[str], state_dir: Path, tmp_path: Path
) -> None:
    manifest = write(tmp_path / "m.yaml", SERVICE, CRD, gpu_pod("a", 4), CONFIG_MAP, CUSTOM_DEPLOYMENT)
    code, lines, err = run_in_process(capsys, "--state", str(state_dir), AT, str(manifest))
    assert code == 0
    assert [json.loads(line)["name"] for line in lines] == ["a"]
    skipped = err.splitlines()
    assert skipped == [
        f"computegate evaluate: skipped {manifest}: document 1 (Service web): not a workload",
        f"computegate evaluate: skipped {manifest}: document 2 (CustomResourceDefinition "
        "trainjobs.example.com): not a workload",
        f"computegate evaluate: skipped {manifest}: document 4 (ConfigMap cfg): not a workload",
        f"computegate evaluate: skipped {manifest}: document 5 (Deployment mine): not a workload",
    ]


def test_a_custom_resource_with_a_pod_template_is_skipped_with_a_warning_and_refused_when_strict(
    capsys: pytest.CaptureFixture[str], state_dir: Path, tmp_path: Path
) -> None:
    manifest = write(tmp_path / "m.yaml", gpu_pod("a", 4), TRAIN_JOB)
    code, lines, err = run_in_process(capsys, "--state", str(state_dir), AT, str(manifest))
    assert code == 0 and len(lines) == 1
    assert err.startswith("computegate evaluate: warning: skipped ")
    assert "(TrainJob llm): custom resource with a pod template" in err and "--strict" in err
    code, lines, err = run_in_process(capsys, "--strict", "--state", str(state_dir), AT, str(manifest))
    assert (code, lines) == (2, [])
    assert "document 2 (TrainJob llm): a custom resource with a pod template" in err


def test_dash_reads_the_manifests_from_standard_input(state_dir: Path) -> None:
    stream = yaml.safe_dump_all([SERVICE, gpu_pod("a", 4), gpu_pod("b", 8)])
    done = _run("evaluate", "--state", str(state_dir), AT, "-", stdin=stream)
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["name"], r["code"]) for r in records] == [("a", "Licensed"), ("b", "LicenseCapExceeded")]
    assert done.returncode == 1
    assert "skipped <stdin>: document 1 (Service web): not a workload" in done.stderr
    broken = _run("evaluate", "--state", str(state_dir), "-", stdin="kind: Pod\nmetadata: [\n")
    assert broken.returncode == 2 and broken.stderr.startswith("computegate evaluate: <stdin>: document 1")


def test_version_is_printed_by_the_command_and_by_evaluate() -> None:
    for args in (["--version"], ["evaluate", "--version"]):
        done = _run(*args)
        assert (done.returncode, done.stdout.strip()) == (0, f"computegate {__version__}")


def test_the_json_carries_audit_and_whole_counts_are_integers(
    capsys: pytest.CaptureFixture[str], state_dir: Path, tmp_path: Path
) -> None:
    write(
        state_dir / "policy.yaml",
        {"kind": "CompliancePolicy", "metadata": {"name": "default"}, "spec": {"enforcement": "Audit"}},
    )
    manifest = write(tmp_path / "m.yaml", gpu_pod("a", 8), gpu_pod("stranger", 1, namespace="elsewhere"))
    code, lines, _ = run_in_process(capsys, "--state", str(state_dir), AT, str(manifest))
    assert code == 0
    first, second = (json.loads(line) for line in lines)
    assert (first["audit"], second["audit"]) == (False, True)
    assert '"accelerators": 8,' in lines[0] and '"tpp": 39936,' in lines[0]
    half = write(tmp_path / "mig.yaml", gpu_pod("mig", "1"))
    record: dict[str, Any] = json.loads(
        run_in_process(capsys, "--state", str(state_dir), AT, str(half))[1][0]
    )
    assert isinstance(record["accelerators"], int)


def test_table_output_shows_one_aligned_row_per_workload_and_the_denial_messages(
    capsys: pytest.CaptureFixture[str], state_dir: Path, tmp_path: Path
) -> None:
    manifest = write(tmp_path / "m.yaml", gpu_pod("a", 4), gpu_pod("b", 8))
    code, lines, _ = run_in_process(capsys, "--state", str(state_dir), AT, "--output", "table", str(manifest))
    assert code == 1
    header, first, second, blank, note = lines
    assert header.split()[:5] == ["KIND", "NAMESPACE", "NAME", "ALLOWED", "CODE"]
    assert first.split()[:5] == ["Pod", "research", "a", "yes", "Licensed"]
    assert second.split()[:5] == ["Pod", "research", "b", "no", "LicenseCapExceeded"]
    assert "19,968" in first  # controlled TPP, as people read it
    assert header.index("CODE") == first.index("Licensed") == second.index("LicenseCapExceeded")
    assert blank == "" and note.startswith("Pod research/b: [LicenseCapExceeded]")
