"""``computegate demo`` (``make run``): the product working, as a kubectl user sees it.

A local control plane (real etcd and kube-apiserver) with the repository's ``examples/``
(``cluster/`` as the state, ``rbac/`` for the tenants' users, ``workloads/`` to apply),
the webhook operator started and registered by the same step as ``computegate dev up``, then
kubectl, run as the tenants' own users (client certificates), applying sample workloads:

1. a licensed pod is admitted and stamped with the decision;
2. a pod of a tenant without a license is rejected, with the reason and the next step;
3. a Deployment over the license's cap is rejected at apply time;
4. with the policy switched to Audit, the same kind of pod is admitted with a warning.

Everything runs in a temporary folder and is stopped at the end; no process is left.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from computegate.devcluster import (
    ControlPlaneError,
    DevSession,
    dev_down,
    dev_up,
    install_crds_step,
    seed,
    seed_step,
    webhook_step,
)

_ANNOTATION_PREFIX = "computegate.io/"


class _Demo:
    def __init__(self, session: DevSession, workloads: Path) -> None:
        self.session = session
        self.plane = session.control_plane
        self.workloads = workloads

    def file(self, name: str) -> Path:
        return self.workloads / name

    def kubectl(self, *args: str, user: Path | None = None) -> subprocess.CompletedProcess[str]:
        return self.plane.kubectl(*args, kubeconfig=user, check=False)

    def say(self, text: str) -> None:
        bold, plain = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")
        print(f"\n{bold}== {text}{plain}", flush=True)

    def show(self, command: str, result: subprocess.CompletedProcess[str]) -> None:
        print(f"$ {command}")
        for line in (result.stdout + result.stderr).strip().splitlines():
            print(
                textwrap.fill(line, width=110, subsequent_indent="    ", break_on_hyphens=False)
                if len(line) > 110
                else line
            )

    def apply_as(self, user: str, kubeconfig: Path, name: str) -> subprocess.CompletedProcess[str]:
        result = self.kubectl("apply", "-f", str(self.file(name)), user=kubeconfig)
        self.show(f"kubectl apply -f {name}    # as {user}", result)
        return result

    def annotations(self, namespace: str, pod: str, kubeconfig: Path) -> None:
        result = self.kubectl("get", "pod", pod, "-n", namespace, "-o", "json", user=kubeconfig)
        print(f"$ kubectl get pod {pod} -n {namespace} -o json | jq .metadata.annotations    # as the tenant")
        if result.returncode != 0:
            print(result.stderr.strip())
            return
        annotations = json.loads(result.stdout)["metadata"].get("annotations") or {}
        for key, value in sorted(annotations.items()):
            if key.startswith(_ANNOTATION_PREFIX):
                print(f"    {key}: {value}")

    def wait_for_audit(self, name: str) -> None:
        """Until the operator has seen the policy change (a server-side dry run warns)."""
        path = self.file(name)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            result = self.kubectl("create", "--dry-run=server", "-f", str(path))
            if "Audit mode" in result.stderr:
                return
            time.sleep(0.3)
        raise ControlPlaneError("the operator did not pick up the Audit policy within 30s")


def run_demo(*, examples: Path, keep: bool = False) -> int:
    missing = [
        str(examples / part) for part in ("cluster", "rbac", "workloads") if not (examples / part).is_dir()
    ]
    if missing:
        print(
            f"computegate demo: no examples at {', '.join(missing)}: run it from a clone of the repository"
            " (`make run`), or pass --examples DIR",
            file=sys.stderr,
        )
        return 2
    work = Path(tempfile.mkdtemp(prefix="computegate-demo-"))
    data_dir = work / "cluster"
    state = examples / "cluster"
    started = time.monotonic()
    print("Starting a local Kubernetes control plane (etcd + kube-apiserver), seeding the demo state,")
    print("and starting the ComputeGate webhook operator...", flush=True)
    try:
        session = dev_up(
            state_dir=state,
            data_dir=data_dir,
            steps=[install_crds_step, seed_step, webhook_step],
            log=lambda message: None,
        )
    except Exception as error:
        print(f"computegate demo: the cluster did not come up: {error}", file=sys.stderr)
        dev_down(data_dir=data_dir, log=lambda message: None)
        return 1
    try:
        demo = _Demo(session, examples / "workloads")
        seed(session.http, examples / "rbac", install_computegate_crds=False)
        alice = demo.plane.mint_user("alice@globex", ["tenants"])
        bob = demo.plane.mint_user("bob@initech", ["tenants"])
        print(f"Ready in {time.monotonic() - started:.1f}s.")
        print("Tenants: globex (Saudi Arabia, licensed for 2 x H100), initech (Singapore, parent in China,")
        print("no license), northwind (Singapore, parent in the US). Nodes: 8 x H100, 8 x A100, 4 x L4.")

        demo.say("1. A licensed workload is admitted and stamped with the decision")
        demo.apply_as("alice@globex", alice, "pod-licensed.yaml")
        demo.annotations("globex-ml", "train-llm", alice)

        demo.say("2. A tenant without the license it needs is refused, with the reason and the next step")
        demo.apply_as("bob@initech", bob, "pod-unlicensed.yaml")

        demo.say("3. A Deployment over the license's cap is refused at apply time")
        demo.apply_as("alice@globex", alice, "deployment-over-cap.yaml")

        demo.say("4. With the CompliancePolicy in Audit mode, the same request is admitted with a warning")
        patch = '{"spec":{"enforcement":"Audit"}}'
        result = demo.kubectl("patch", "compliancepolicy", "default", "--type=merge", "-p", patch)
        demo.show(
            f"kubectl patch compliancepolicy default --type=merge -p '{patch}'    # as the admin", result
        )
        demo.wait_for_audit("pod-audit.yaml")
        demo.apply_as("bob@initech", bob, "pod-audit.yaml")
        demo.annotations("initech", "finetune-audit", bob)

        demo.say("What the cluster admin sees: license consumption and the Events of (would-be) denials")
        demo.show("kubectl get exportlicenses", demo.kubectl("get", "exportlicenses"))
        columns = (
            "NAMESPACE:.metadata.namespace,KIND:.involvedObject.kind,NAME:.involvedObject.name,REASON:.reason"
        )
        events = demo.kubectl(
            "get",
            "events",
            "-A",
            "--field-selector",
            "reportingComponent=computegate",
            "-o",
            f"custom-columns={columns}",
        )
        demo.show(
            "kubectl get events -A --field-selector reportingComponent=computegate -o custom-columns=...",
            events,
        )
    finally:
        if keep:
            print(f"\nThe cluster keeps running: export KUBECONFIG={session.control_plane.kubeconfig_path}")
            print(f"Stop it with: computegate dev down --data-dir {data_dir}")
        else:
            stopped = dev_down(data_dir=data_dir, log=lambda message: None)
            print(f"\nStopped {', '.join(p.name for p in stopped)}; nothing is left running.")
            shutil.rmtree(work, ignore_errors=True)
    print(f"Demo finished in {time.monotonic() - started:.1f}s.")
    return 0
