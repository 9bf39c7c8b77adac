"""The offline evaluator: `computegate evaluate --state DIR [--at RFC3339] MANIFEST...`."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from computegate import cli
from computegate.catalog import builtin_catalog

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# The console script beside the interpreter running the tests (.venv/bin/computegate), else the repo's.
EXECUTABLE = next(
    (
        path
        for path in (
            Path(sys.executable).parent / "computegate",
            Path(__file__).resolve().parents[2] / ".venv" / "bin" / "computegate",
        )
        if path.exists()
    ),
    Path("computegate"),
)
KEYS = [
    "kind",
    "namespace",
    "name",
    "allowed",
    "code",
    "audit",
    "tenant",
    "jurisdiction",
    "accelerators",
    "tpp",
    "controlledTpp",
    "license",
    "message",
]
A100_PROFILE = {
    "apiVersion": "computegate.io/v1alpha1",
    "kind": "AcceleratorProfile",
    "metadata": {"name": "site-a100"},
    "spec": {
        "vendor": "NVIDIA",
        "model": "A100 SXM4 80GB",
        "resourceNames": ["nvidia.com/gpu"],
        "productLabels": {"nvidia.com/gpu.product": ["NVIDIA-A100-SXM4-80GB"]},
        "tpp": 4992,
        "performanceDensity": 6.04,
        "migComputeSlices": 7,
    },
}


def run_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = cli.main(["evaluate", *args])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def run_subprocess(*args: str) -> tuple[int, list[str], str]:
    done = subprocess.run(
        [str(EXECUTABLE), "evaluate", *args], capture_output=True, text=True, timeout=60, check=False
    )
    return done.returncode, done.stdout.splitlines(), done.stderr


def write(path: Path, *documents: dict[str, Any] | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    texts = [textwrap.dedent(doc) if isinstance(doc, str) else yaml.safe_dump(doc) for doc in documents]
    path.write_text("---\n".join(texts), encoding="utf-8")
    return path


def gpu_pod(name: str, gpus: int | str = 4, namespace: str = "research") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
            "containers": [{"name": "c", "image": "x", "resources": {"limits": {"nvidia.com/gpu": gpus}}}],
        },
    }


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """A CN tenant (RequireLicense by the built-in rules) with a license for 8 A100s."""
    state = tmp_path / "state"
    write(
        state / "cluster.yaml",
        A100_PROFILE,
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "a100-1", "labels": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}},
            "status": {"capacity": {"nvidia.com/gpu": "8"}},
        },
    )
    write(
        state / "tenants" / "research.yaml",
        """\
        apiVersion: computegate.io/v1alpha1
        kind: Tenant
        metadata: {name: research}
        spec:
          jurisdiction: CN
          kyc: {status: Verified}
          namespaces: [research]
        """,
        """\
        apiVersion: computegate.io/v1alpha1
        kind: ExportLicense
        metadata: {name: research-2026}
        spec:
          tenant: research
          licenseNumber: D000001
          authority: US-BIS
          validFrom: "2026-01-01T00:00:00Z"
          validUntil: "2027-01-01T00:00:00Z"
          maxTPP: 39936
          maxAccelerators: 8
        """,
    )
    return state


AT = "--at=2026-06-01T00:00:00Z"


# ----- output shape and exit codes -----


@pytest.mark.parametrize("runner", ["subprocess", "in-process"])
def test_one_json_object_per_workload_with_exactly_the_design_keys(
    runner: str, capsys: pytest.CaptureFixture[str], state_dir: Path, tmp_path: Path
) -> None:
    manifest = write(tmp_path / "m.yaml", gpu_pod("a", 4), gpu_pod("b", 2))
    args = ["--state", str(state_dir), AT, str(manifest)]
    code, lines, err = run_subprocess(*args) if runner == "subprocess" else run_in_process(capsys, *args)
    assert (code, err) == (0, "")
    records = [json.loads(line) for line in lines]
    assert [list(record) for record in records] == [KEYS, KEYS]
    first = records[0]
    assert first["kind"] == "Pod"
    assert first["namespace"] == "research"
    assert first["name"] == "a"
    assert first["allowed"] is True
    assert first["code"] == "Licensed"
    assert first["tenant"] == "research"
    assert first["jurisdiction"] == "CN"
    assert first["accelerators"] == 4
    assert first["tpp"] == 4 * 4992
    assert first["controlledTpp"] == 4 * 4992
    assert first["license"] == "research-2026"
    assert first["message"].startswith("[Licensed]")


@pytest.mark.parametrize("runner", ["subprocess", "in-process"])
def test_exit_one_when_any_workload_is_denied(
    runner: str, capsys: pytest.CaptureFixture[str], state_dir: Path, tmp_path: Path
) -> None:
    manifest = write(tmp_path / "m.yaml", gpu_pod("ok", 1), gpu_pod("stranger", 1, namespace="elsewhere"))
    args = ["--state", str(state_dir), AT, str(manifest)]
    code, lines, _ = run_subprocess(*args) if runner == "subprocess" else run_in_process(capsys, *args)
    assert code == 1
    assert [json.loads(line)["code"] for line in lines] == ["Licensed", "UnknownTenant"]


def test_each_admitted_pod_counts_against_the_cap_for_the_later_ones(
    capsys: pytest.CaptureFixture[str], state_dir: Path, tmp_path: Path
) -> None:
    manifest = write(tmp_path / "m.yaml", gpu_pod("a", 4), gpu_pod("b", 4), gpu_pod("c", 1))
    code, lines, _ = run_in_process(capsys, "--state", str(state_dir), AT, str(manifest))
    assert code == 1
    assert [json.loads(line)["code"] for line in lines] == ["Licensed", "Licensed", "LicenseCapExceeded"]


def test_a_denied_pod_does_not_count_against_the_cap(
    capsys: pytest.CaptureFixture[str], state_dir: Path, tmp_path: Path
) -> None:
    manifest = write(tmp_path / "m.yaml", gpu_pod("big", 9), gpu_pod("a", 8))
    _, lines, _ = run_in_process(capsys, "--state", str(state_dir), AT, str(manifest))
    assert [json.loads(line)["code"] for line in lines] == ["LicenseCapExceeded", "Licensed"]


def test_a_controller_is_checked_against_the_headroom_but_reserves_nothing(
    capsys: pytest.CaptureFixture[str], state_dir: Path, tmp_path: Path
) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "research"},
        "spec": {"replicas": 2, "template": {"spec": gpu_pod("x", 4)["spec"]}},
    }
    manifest = write(tmp_path / "m.yaml", deployment, gpu_pod("a", 8))
    code, lines, _ = run_in_process(capsys, "--state", str(state_dir), AT, str(manifest))
    assert code == 0
    assert [json.loads(line)["accelerators"] for line in lines] == [8, 8]


def test_running_annotated_pods_in_the_state_consume_the_license(
    capsys: pytest.CaptureFixture[str], state_dir: Path, tmp_path: Path
) -> None:
    old = gpu_pod("old", 6)
    old["metadata"]["annotations"] = {"computegate.io/license": "research-2026"}
    old["status"] = {"phase": "Running"}
    write(state_dir / "pods.yaml", old)
    manifest = write(tmp_path / "m.yaml", gpu_pod("a", 2), gpu_pod("b", 1))
    _, lines, _ = run_in_process(capsys, "--state", str(state_dir), AT, str(manifest))
    assert [json.loads(line)["code"] for line in lines] == ["Licensed", "LicenseCapExceeded"]


def test_at_sets_the_evaluation_time(
    capsys: pytest.CaptureFixture[str], state_dir: Path, tmp_path: Path
) -> None:
    manifest = write(tmp_path / "m.yaml", gpu_pod("a", 1))
    codes = {}
    for at in (
        "2025-12-31T23:59:59Z",
        "2026-01-01T00:00:00Z",
        "2027-01-01T00:00:00Z",
        "2026-12-31T23:00:00-02:00",
    ):
        _, lines, _ = run_in_process(capsys, "--state", str(state_dir), "--at", at, str(manifest))
        codes[at] = json.loads(lines[0])["code"]
    assert codes == {
        "2025-12-31T23:59:59Z": "LicenseNotYetValid",
        "2026-01-01T00:00:00Z": "Licensed",
        "2027-01-01T00:00:00Z": "LicenseExpired",
        "2026-12-31T23:00:00-02:00": "LicenseExpired",  # 2027-01-01T01:00Z
    }


def test_without_at_the_current_time_is_used(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    state = tmp_path / "state"
    write(
        state / "t.yaml",
        A100_PROFILE,
        """\
        kind: Tenant
        metadata: {name: research}
        spec: {jurisdiction: CN, kyc: {status: Verified}, namespaces: [research]}
        """,
        """\
        kind: ExportLicense
        metadata: {name: old}
        spec:
          tenant: research
          licenseNumber: D1
          authority: US-BIS
          validFrom: "2001-01-01T00:00:00Z"
          validUntil: "2002-01-01T00:00:00Z"
          maxTPP: 1000000
        """,
    )
    manifest = write(tmp_path / "m.yaml", gpu_pod("a", 1))
    _, lines, _ = run_in_process(capsys, "--state", str(state), str(manifest))
    assert json.loads(lines[0])["code"] == "LicenseExpired"


def test_cpu_only_workloads_print_null_tpp_and_exit_zero(
    capsys: pytest.CaptureFixture[str], state_dir: Path, tmp_path: Path
) -> None:
    cpu = gpu_pod("cpu", 1, namespace="nowhere")
    cpu["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "2"}}
    code, lines, _ = run_in_process(
        capsys, "--state", str(state_dir), AT, str(write(tmp_path / "m.yaml", cpu))
    )
    record = json.loads(lines[0])
    assert code == 0
    assert (record["code"], record["tpp"], record["accelerators"], record["controlledTpp"]) == (
        "NoAccelerator",
        None,
        0,
        0,
    )


def test_audit_enforcement_exits_zero_with_the_would_be_code(
    capsys: pytest.CaptureFixture[str], state_dir: Path, tmp_path: Path
) -> None:
    write(
        state_dir / "policy.yaml",
        {"kind": "CompliancePolicy", "metadata": {"name": "default"}, "spec": {"enforcement": "Audit"}},
    )
    manifest = write(tmp_path / "m.yaml", gpu_pod("stranger", 1, namespace="elsewhere"))
    code, lines, _ = run_in_process(capsys, "--state", str(state_dir), AT, str(manifest))
    record = json.loads(lines[0])
    assert code == 0
    assert (record["allowed"], record["code"]) == (True, "UnknownTenant")


def test_a_workload_without_a_namespace_is_in_default(
    capsys: pytest.CaptureFixture[str], state_dir: Path, tmp_path: Path
) -> None:
    body = gpu_pod("a", 1)
    del body["metadata"]["namespace"]
    _, lines, _ = run_in_process(capsys, "--state", str(state_dir), AT, str(write(tmp_path / "m.yaml", body)))
    assert json.loads(lines[0])["namespace"] == "default"


def test_quantity_strings_and_numbers_are_both_accepted(
    capsys: pytest.CaptureFixture[str], state_dir: Path, tmp_path: Path
) -> None:
    manifest = write(tmp_path / "m.yaml", gpu_pod("a", "2"), gpu_pod("b", 2))
    code, lines, err = run_in_process(capsys, "--state", str(state_dir), AT, str(manifest))
    assert (code, err) == (0, "")
    assert [json.loads(line)["accelerators"] for line in lines] == [2, 2]


def test_a_manifest_may_carry_state_objects_beside_its_workloads(
    capsys: pytest.CaptureFixture[str], state_dir: Path, tmp_path: Path
) -> None:
    claim = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "gpus", "namespace": "research"},
        "spec": {
            "devices": {
                "requests": [{"name": "g", "exactly": {"deviceClassName": "gpu.example", "count": 2}}]
            }
        },
    }
    body = gpu_pod("a", 0)
    body["spec"]["containers"][0]["resources"] = {}
    body["spec"]["resourceClaims"] = [{"name": "gpus", "resourceClaimName": "gpus"}]
    _, lines, _ = run_in_process(
        capsys, "--state", str(state_dir), AT, str(write(tmp_path / "m.yaml", claim, body))
    )
    assert len(lines) == 1
    assert json.loads(lines[0])["accelerators"] == 2


# ----- the repository's examples -----


@pytest.mark.parametrize("runner", ["subprocess", "in-process"])
def test_the_example_gives_the_verdict_design_predicts(
    runner: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--state", str(EXAMPLES / "cluster"), AT, str(EXAMPLES / "workloads" / "pod-a100.yaml")]
    code, lines, err = run_subprocess(*args) if runner == "subprocess" else run_in_process(capsys, *args)
    assert (code, err) == (0, "")
    (line,) = lines
    record = json.loads(line)
    assert list(record) == KEYS
    assert record["kind"] == "Pod"
    assert (record["namespace"], record["name"]) == ("northwind-train", "trainer-0")
    assert record["allowed"] is True
    assert record["code"] == "JurisdictionAllowed"  # SG, parent US: no built-in rule requires a license
    assert record["tenant"] == "northwind"
    assert record["jurisdiction"] == "SG"
    assert record["accelerators"] == 4
    assert record["tpp"] == 4 * builtin_catalog().profiles["nvidia-a100-sxm4-80gb"].tpp
    assert record["controlledTpp"] == record["tpp"]
    assert record["license"] is None


# ----- unusable input: exit 2 with one line naming the file, the document and the field -----

BAD_MANIFESTS = {
    "malformed YAML": ("kind: Pod\nmetadata: {name: a\n", ["document 1", "line", "not valid YAML"]),
    "malformed second document": (
        "kind: Pod\nmetadata: {name: ok, namespace: research}\n---\nkind: Pod\nmetadata: [\n",
        ["document 2", "not valid YAML"],
    ),
    "missing kind": ("metadata: {name: a, namespace: x}\n", ["document 1", "kind"]),
    "missing name": ("kind: Pod\nmetadata: {namespace: x}\n", ["document 1", "metadata.name"]),
    "not a mapping": ("- a\n- b\n", ["document 1", "mapping"]),
    "wrong field type": (
        "kind: Deployment\nmetadata: {name: a, namespace: x}\nspec: {replicas: three}\n",
        ["document 1", "(Deployment a)", "spec.replicas"],
    ),
    "wrong container type": (
        "kind: Pod\nmetadata: {name: a, namespace: x}\nspec: {containers: {name: c}}\n",
        ["document 1", "spec.containers"],
    ),
    "negative quantity": (
        "kind: Pod\nmetadata: {name: a, namespace: x}\n"
        "spec: {containers: [{name: c, resources: {limits: {nvidia.com/gpu: -1}}}]}\n",
        ["document 1", 'spec.containers[0].resources.limits["nvidia.com/gpu"]', "negative"],
    ),
    "negative quantity string": (
        "kind: Pod\nmetadata: {name: a, namespace: x}\n"
        "spec: {containers: [{name: c, resources: {requests: {nvidia.com/gpu: '-2'}}}]}\n",
        ["document 1", 'resources.requests["nvidia.com/gpu"]', "negative"],
    ),
    "nonsense quantity": (
        "kind: Pod\nmetadata: {name: a, namespace: x}\n"
        "spec: {containers: [{name: c, resources: {limits: {nvidia.com/gpu: lots}}}]}\n",
        ["document 1", 'limits["nvidia.com/gpu"]', "quantity"],
    ),
    "negative replicas": (
        "kind: Deployment\nmetadata: {name: a, namespace: x}\nspec: {replicas: -2}\n",
        ["document 1", "spec.replicas"],
    ),
    "unknown selector operator": (
        "kind: Pod\nmetadata: {name: a, namespace: x}\nspec: {affinity: {nodeAffinity: "
        "{requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: "
        "[{matchExpressions: [{key: a, operator: Near}]}]}}}}\n",
        ["document 1", "operator"],
    ),
}

LICENSE = """\
kind: ExportLicense
metadata: {name: bad}
spec:
  tenant: research
  licenseNumber: D2
  authority: US-BIS
  validFrom: "2026-01-01T00:00:00Z"
  validUntil: "2027-01-01T00:00:00Z"
  maxTPP: 100
"""

BAD_STATE = {
    "bare date in validFrom": (
        LICENSE.replace('"2026-01-01T00:00:00Z"', "2026-01-01", 1),
        ["(ExportLicense bad)", "spec.validFrom", "date-time"],
    ),
    "quoted bare date": (
        LICENSE.replace('"2026-01-01T00:00:00Z"', '"2026-01-01"', 1),
        ["(ExportLicense bad)", "spec.validFrom"],
    ),
    "timestamp without offset": (
        LICENSE.replace('"2026-01-01T00:00:00Z"', '"2026-01-01T00:00:00"', 1),
        ["(ExportLicense bad)", "spec.validFrom"],
    ),
    "validity window backwards": (
        LICENSE.replace('"2027-01-01T00:00:00Z"', '"2025-01-01T00:00:00Z"'),
        ["(ExportLicense bad)", "validUntil"],
    ),
    "negative cap": (LICENSE.replace("maxTPP: 100", "maxTPP: -100"), ["(ExportLicense bad)", "spec.maxTPP"]),
    "wrong cap type": (
        LICENSE.replace("maxTPP: 100", "maxTPP: lots"),
        ["(ExportLicense bad)", "spec.maxTPP"],
    ),
    "unknown field in our resource": (
        LICENSE.replace("maxTPP: 100", "maxTPP: 100\n  maxTpp: 3"),
        ["(ExportLicense bad)", "spec.maxTpp"],
    ),
    "unknown KYC status": (
        "kind: Tenant\nmetadata: {name: t}\nspec: {jurisdiction: US, kyc: {status: Maybe}}\n",
        ["(Tenant t)", "spec.kyc.status", "Verified"],
    ),
    "unknown enforcement": (
        "kind: CompliancePolicy\nmetadata: {name: default}\nspec: {enforcement: Warn}\n",
        ["(CompliancePolicy default)", "spec.enforcement"],
    ),
    "unknown rule action": (
        "kind: CompliancePolicy\nmetadata: {name: default}\n"
        "spec: {rules: [{groups: [D:5], action: Maybe}]}\n",
        ["(CompliancePolicy default)", "spec.rules[0].action"],
    ),
    "lower-case country": (
        "kind: Tenant\nmetadata: {name: t}\nspec: {jurisdiction: us, kyc: {status: Verified}}\n",
        ["(Tenant t)", "spec.jurisdiction"],
    ),
    "negative node capacity": (
        "kind: Node\nmetadata: {name: n}\nstatus: {capacity: {nvidia.com/gpu: '-8'}}\n",
        ["(Node n)", 'status.capacity["nvidia.com/gpu"]'],
    ),
    "unknown state kind": ("kind: Secret\nmetadata: {name: s}\n", ["(Secret s)", "kind"]),
    "malformed state YAML": ("kind: Tenant\nmetadata: {name: [\n", ["document 1", "not valid YAML"]),
}


def assert_one_line_error(code: int, lines: list[str], err: str, path: Path, expected: list[str]) -> None:
    assert code == 2
    assert lines == []
    assert "Traceback" not in err
    error_lines = err.splitlines()
    assert len(error_lines) == 1, err
    assert str(path) in error_lines[0]
    for part in expected:
        assert part in error_lines[0], f"{part!r} not in {error_lines[0]!r}"


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_a_bad_manifest_exits_2_with_one_line(
    case: str, capsys: pytest.CaptureFixture[str], state_dir: Path, tmp_path: Path
) -> None:
    text, expected = BAD_MANIFESTS[case]
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(text, encoding="utf-8")
    good = write(tmp_path / "good.yaml", gpu_pod("a", 1))
    code, lines, err = run_in_process(capsys, "--state", str(state_dir), AT, str(good), str(manifest))
    assert_one_line_error(code, lines, err, manifest, expected)


@pytest.mark.parametrize("case", sorted(BAD_STATE))
def test_bad_state_exits_2_with_one_line(
    case: str, capsys: pytest.CaptureFixture[str], state_dir: Path, tmp_path: Path
) -> None:
    text, expected = BAD_STATE[case]
    bad = state_dir / "zz-bad.yaml"
    bad.write_text(text, encoding="utf-8")
    manifest = write(tmp_path / "m.yaml", gpu_pod("a", 1))
    code, lines, err = run_in_process(capsys, "--state", str(state_dir), AT, str(manifest))
    assert_one_line_error(code, lines, err, bad, expected)


def test_bad_input_through_the_console_script_exits_2_without_a_traceback(
    state_dir: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(BAD_MANIFESTS["negative quantity"][0], encoding="utf-8")
    code, lines, err = run_subprocess("--state", str(state_dir), AT, str(manifest))
    assert_one_line_error(code, lines, err, manifest, BAD_MANIFESTS["negative quantity"][1])


def test_a_missing_state_directory_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    manifest = write(tmp_path / "m.yaml", gpu_pod("a", 1))
    missing = tmp_path / "no-such-dir"
    code, lines, err = run_in_process(capsys, "--state", str(missing), AT, str(manifest))
    assert_one_line_error(code, lines, err, missing, ["--state"])


def test_a_missing_manifest_exits_2(
    capsys: pytest.CaptureFixture[str], state_dir: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.yaml"
    code, lines, err = run_in_process(capsys, "--state", str(state_dir), AT, str(missing))
    assert_one_line_error(code, lines, err, missing, ["no such file"])


@pytest.mark.parametrize("at", ["2026-06-01", "2026-06-01T00:00:00", "yesterday"])
def test_a_bad_at_exits_2(
    at: str, capsys: pytest.CaptureFixture[str], state_dir: Path, tmp_path: Path
) -> None:
    manifest = write(tmp_path / "m.yaml", gpu_pod("a", 1))
    code, lines, err = run_in_process(capsys, "--state", str(state_dir), "--at", at, str(manifest))
    assert code == 2
    assert lines == []
    assert len(err.splitlines()) == 1
    assert "--at" in err


def test_no_verdict_is_printed_when_any_input_is_bad(
    capsys: pytest.CaptureFixture[str], state_dir: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        yaml.safe_dump(gpu_pod("a", 1)) + "---\n" + BAD_MANIFESTS["negative quantity"][0], encoding="utf-8"
    )
    code, lines, err = run_in_process(capsys, "--state", str(state_dir), AT, str(manifest))
    assert_one_line_error(code, lines, err, manifest, ["document 2"])


def _examples_table() -> list[tuple[str, str, bool]]:
    """(file, code, allowed) for each row of examples/README.md whose expectation names a code."""
    rows = []
    for line in (EXAMPLES / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`") and cells[2].count("`") == 2:
            code = cells[2].split("`")[1]
            rows.append((cells[0].strip("`"), code, cells[2].startswith("admitted")))
    return rows


@pytest.mark.parametrize(("workload", "code", "allowed"), _examples_table())
def test_each_example_workload_gets_the_verdict_its_readme_promises(
    workload: str, code: str, allowed: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    _, lines, err = run_in_process(
        capsys, "--state", str(EXAMPLES / "cluster"), AT, str(EXAMPLES / "workloads" / workload)
    )
    assert err == ""
    (record,) = (json.loads(line) for line in lines)
    assert (record["code"], record["allowed"]) == (code, allowed)


def test_the_examples_readme_lists_every_example_workload() -> None:
    listed = {row[0] for row in _examples_table()} | {"pod-audit.yaml"}  # Audit needs the policy switched
    assert listed == {path.name for path in (EXAMPLES / "workloads").glob("*.yaml")}
