"""The issue's "Done when": the cluster and the offline evaluator give the same verdicts.

``computegate dev up --bare --state DIR`` (a fresh control plane, the state restored, the webhook
operator started and registered) and then, for each workload of a set that covers every code
the webhook can return, a server-side dry-run create gives the code that
``computegate evaluate --state DIR`` gives for that workload alone. Workloads the webhook
configuration never sends (CPU-only, kube-system) are admitted without reaching it. Then every
code is reached once more by creating the objects for real.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from computegate.devcluster import ControlPlane
from computegate.engine import Code
from computegate.evaluate import evaluate

pytestmark = pytest.mark.e2e

DATA = Path(__file__).parent / "data" / "parity"
STATE = DATA / "state"
NEVER_SENT = {"cpu-only", "system-gpu"}  # matchConditions / namespaceSelector keep them away
_DENIED_CODE = re.compile(r"denied the request: \[(\w+)\]")


@dataclass
class Workload:
    name: str
    namespace: str
    manifest: str
    evaluated: dict[str, Any]


@pytest.fixture(scope="module")
def dev_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    data_dir = tmp_path_factory.mktemp("parity-dev")
    up = subprocess.run(
        [sys.executable, "-m", "computegate", "dev", "up", "--bare", "--state", str(STATE),
         f"--data-dir={data_dir}"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stderr
        assert "webhook operator ready" in up.stderr
        plane = ControlPlane.attach(data_dir)
        assert plane is not None
        names = {p.name for p in plane.running_processes()}
        assert names == {"etcd", "kube-apiserver", "computegate-webhook"}  # --bare: no controllers
        webhook = [p.pid for p in plane.running_processes() if p.name == "computegate-webhook"]
        again = subprocess.run(up.args, capture_output=True, text=True, timeout=180)
        assert again.returncode == 0, again.stderr  # dev up is idempotent: the same operator serves
        reattached = ControlPlane.attach(data_dir)
        assert reattached is not None
        assert (
            [p.pid for p in reattached.running_processes() if p.name == "computegate-webhook"]
            == webhook
            != []
        )
        yield plane
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "computegate", "dev", "down", "--data-dir", str(data_dir)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert down.returncode == 0, down.stderr
        after = ControlPlane.attach(data_dir)
        assert after is None or not after.running_processes(), "dev down left a process running"


@pytest.fixture(scope="module")
def workloads(tmp_path_factory: pytest.TempPathFactory) -> list[Workload]:
    """Each workload with what `computegate evaluate --state DIR` says of it alone."""
    folder = tmp_path_factory.mktemp("workloads")
    found = []
    for index, document in enumerate(yaml.safe_load_all((DATA / "workloads.yaml").read_text())):
        manifest = yaml.safe_dump(document)
        path = folder / f"{index:02d}.yaml"
        path.write_text(manifest)
        out, err = io.StringIO(), io.StringIO()
        evaluate(STATE, [path], at=None, out=out, err=err)
        assert not err.getvalue(), err.getvalue()
        meta = document["metadata"]
        found.append(Workload(meta["name"], meta["namespace"], manifest, json.loads(out.getvalue())))
    return found


def kubectl_create(
    plane: ControlPlane, manifest: str, *, dry_run: bool
) -> tuple[bool, str | None, dict[str, str]]:
    args = ["create", "-f", "-", "-o", "json", *(["--dry-run=server"] if dry_run else [])]
    result = plane.kubectl(*args, stdin=manifest, check=False)
    if result.returncode != 0:
        found = _DENIED_CODE.search(result.stderr)
        assert found, result.stderr
        return False, found.group(1), {}
    annotations = json.loads(result.stdout)["metadata"].get("annotations") or {}
    stamps = {k: v for k, v in annotations.items() if k.startswith("computegate.io/")}
    return True, stamps.get("computegate.io/code"), stamps


def decisions_for(plane: ControlPlane, name: str) -> list[dict[str, Any]]:
    log = plane.logs_dir / "computegate-webhook.log"
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith('{"time"')]
    return [line for line in lines if line.get("logger") == "computegate.decisions" and line["name"] == name]


def logged_code(plane: ControlPlane, name: str) -> str | None:
    """The code of the latest decision the webhook logged for ``name``."""
    found = decisions_for(plane, name)
    return str(found[-1]["code"]) if found else None


def test_the_workloads_cover_every_code_the_webhook_can_return(workloads: list[Workload]) -> None:
    codes = {w.evaluated["code"] for w in workloads if w.name not in NEVER_SENT}
    assert codes == {code.value for code in Code}


def test_a_server_side_dry_run_gives_the_code_that_computegate_evaluate_gives(
    dev_cluster: ControlPlane, workloads: list[Workload]
) -> None:
    mismatches = []
    for workload in workloads:
        admitted, code, stamps = kubectl_create(dev_cluster, workload.manifest, dry_run=True)
        if admitted and not stamps and workload.name not in NEVER_SENT:
            code = logged_code(dev_cluster, workload.name)  # admitted, nothing to stamp: NoAccelerator
        expected = workload.evaluated
        if workload.name in NEVER_SENT:
            assert admitted and not stamps, f"{workload.name} reached the webhook: {stamps}"
            assert not decisions_for(dev_cluster, workload.name)
            continue
        if (admitted, code) != (expected["allowed"], expected["code"]):
            mismatches.append(
                f"{workload.name}: cluster {code} (admitted={admitted}), evaluate {expected['code']}"
            )
        if stamps:
            assert stamps["computegate.io/tpp"] == str(expected["tpp"])
            assert stamps.get("computegate.io/license") == expected["license"]
    assert not mismatches, "\n".join(mismatches)


def remote_users_report(*args: str) -> dict[str, Any]:
    """`computegate report remote-users --format json` with the given source and list."""
    result = subprocess.run(
        [sys.executable, "-m", "computegate", "report", "remote-users", "--format", "json", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_the_remote_user_list_from_the_cluster_is_the_one_from_the_state_folder(
    dev_cluster: ControlPlane,
) -> None:
    live = remote_users_report("--kubeconfig", str(dev_cluster.kubeconfig_path))
    offline = remote_users_report("--state", str(STATE))
    assert live == offline
    listed = {row["tenant"]: row["listedFor"] for row in live["tenants"]}
    assert listed == {
        "p-h20-cn": [{"jurisdiction": "CN", "as": "own"}],
        "p-ir": [{"jurisdiction": "IR", "as": "own"}],
        "p-nolicense": [{"jurisdiction": "CN", "as": "parent"}],
    }


def test_every_reason_code_is_reached_by_creating_real_objects(
    dev_cluster: ControlPlane, workloads: list[Workload]
) -> None:
    reached = set()
    for workload in workloads:
        if workload.name in NEVER_SENT:
            continue
        admitted, code, stamps = kubectl_create(dev_cluster, workload.manifest, dry_run=False)
        if admitted and not stamps:
            code = logged_code(dev_cluster, workload.name)
        assert (admitted, code) == (workload.evaluated["allowed"], workload.evaluated["code"]), workload.name
        exists = dev_cluster.kubectl("get", workload.evaluated["kind"].lower(), workload.name, "-n",
                                     workload.namespace, check=False).returncode == 0  # fmt: skip
        assert exists == admitted
        if stamps:
            assert stamps["computegate.io/decision"] == "Admitted" and stamps["computegate.io/decision-id"]
        reached.add(code)
    assert reached == {code.value for code in Code}


def test_the_remote_user_list_from_the_cluster_counts_the_pods_it_admitted(dev_cluster: ControlPlane) -> None:
    # After the real creates: the `licensed` pod (2 x H100) and `h20-us` (not controlled for US).
    live = remote_users_report("--kubeconfig", str(dev_cluster.kubeconfig_path), "--jurisdictions", "SA,US")
    uses = {row["tenant"]: row["uses"] for row in live["tenants"]}
    assert uses["p-licensed"] == [
        {"profile": "nvidia-h100-sxm5-80gb", "model": "NVIDIA H100 SXM5 80GB", "accelerators": 2,
         "tpp": 31664, "pods": 1}
    ]  # fmt: skip
    assert uses["p-us"] == [
        {"profile": "nvidia-h100-sxm5-80gb", "model": "NVIDIA H100 SXM5 80GB", "accelerators": 2,
         "tpp": 31664, "pods": 1}
    ]  # fmt: skip
