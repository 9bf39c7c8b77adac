"""``computegate demo`` (``make run``): the product working, as a kubectl user sees it.

A local cluster (real etcd, kube-apiserver, kube-controller-manager and kube-scheduler, with
kwok's simulated GPU nodes) with the repository's ``examples/`` (``cluster/`` as the state,
``rbac/`` for the tenants' users, ``workloads/`` to apply), the webhook operator started and
registered by the same steps as ``computegate dev up``, then kubectl, run as the tenants' own
users (client certificates), applying sample workloads:

1. a licensed pod is admitted, stamped with the decision, scheduled onto an H100 node, Running;
2. a pod of a tenant without a license is rejected, with the reason and the next step;
3. a Deployment over the license's cap is rejected at apply time;
4. a Job holds capacity while it runs and frees it when it completes;
5. two Deployments scaled at the same moment, each fitting the license alone but not both: one
   ReplicaSet's pod is refused (``FailedCreate``), and it grows once capacity is freed;
6. with the policy switched to Audit, the same kind of pod is admitted with a warning;
7. back to Enforce, the license is revoked: its running pods are judged again at once, and the
   admin (license and Tenant status) and the tenant (a Warning Event per pod) see it.

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from computegate.devcluster import (
    ControlPlaneError,
    DevSession,
    cluster_step,
    dev_down,
    dev_up,
    install_crds_step,
    seed,
    seed_step,
    webhook_step,
)

_ANNOTATION_PREFIX = "computegate.io/"
_NAMESPACE = "globex-ml"
_LICENSE = "globex-h100"
_H100_TPP = 15832.0
_ENFORCE = '{"spec":{"enforcement":"Enforce"}}'
_REVOKE = '{"spec":{"revoked":true,"revokedReason":"end-use check failed"}}'


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

    def show(self, command: str, result: subprocess.CompletedProcess[str], *, wrap: bool = True) -> None:
        print(f"$ {command}")
        for line in (result.stdout + result.stderr).strip().splitlines():
            print(
                textwrap.fill(line, width=110, subsequent_indent="    ", break_on_hyphens=False)
                if wrap and len(line) > 110
                else line
            )

    def get(self, *args: str, user: Path | None = None) -> dict[str, Any]:
        result = self.kubectl("get", *args, "-o", "json", user=user)
        if result.returncode != 0:
            return {}
        found: dict[str, Any] = json.loads(result.stdout)
        return found

    def wait_until(self, what: str, check: Callable[[], bool], timeout: float = 60.0) -> float:
        """Poll ``check``; returns the seconds it took (raises after ``timeout``)."""
        started = time.monotonic()
        while not check():
            if time.monotonic() - started > timeout:
                raise ControlPlaneError(f"the demo waited {timeout:.0f}s for {what}")
            time.sleep(0.2)
        return time.monotonic() - started

    def used_tpp(self, license_name: str) -> float:
        status = self.get("exportlicense", license_name).get("status") or {}
        return float(status.get("consumedTPP") or 0)

    def ready_replicas(self, namespace: str, deployment: str) -> int:
        return int(
            (self.get("deployment", deployment, "-n", namespace).get("status") or {}).get("readyReplicas")
            or 0
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

    def show_pods(self, user: Path) -> None:
        result = self.kubectl("get", "pods", "-n", _NAMESPACE, "-o", "wide", user=user)
        self.show(f"kubectl get pods -n {_NAMESPACE} -o wide    # as the tenant", result, wrap=False)

    def show_license(self) -> None:
        self.show("kubectl get exportlicenses    # as the admin", self.kubectl("get", "exportlicenses"))

    def job_frees_capacity(self, alice: Path) -> None:
        self.apply_as("alice@globex", alice, "job-eval.yaml")
        self.wait_until(
            "the Job's pod to run and be counted", lambda: self.used_tpp(_LICENSE) >= 2 * _H100_TPP
        )
        self.show_license()
        result = self.kubectl(
            "wait", "--for=condition=Complete", "job/eval", "-n", _NAMESPACE, "--timeout=60s", user=alice
        )
        self.show(
            f"kubectl wait --for=condition=Complete job/eval -n {_NAMESPACE}    # as the tenant", result
        )
        self.show_pods(alice)
        self.wait_until(
            "the license to count the Job's capacity as free", lambda: self.used_tpp(_LICENSE) < 2 * _H100_TPP
        )
        self.show_license()

    def concurrent_scale_up(self, alice: Path) -> None:
        self.apply_as("alice@globex", alice, "deployment-serve-a.yaml")
        self.apply_as("alice@globex", alice, "deployment-serve-b.yaml")
        # One command, two scale requests milliseconds apart: both are judged before either
        # ReplicaSet has made its pod, so both fit; the pods then race for the last H100, and
        # the license ledger charges one and refuses the other (FailedCreate on its ReplicaSet).
        services = ("deployment/serve-a", "deployment/serve-b")
        result = self.kubectl("scale", *services, "--replicas=1", "-n", _NAMESPACE, user=alice)
        self.show(
            f"kubectl scale {' '.join(services)} --replicas=1 -n {_NAMESPACE}    # as alice@globex", result
        )

        def settled() -> bool:
            ready = sum(self.ready_replicas(_NAMESPACE, name) for name in ("serve-a", "serve-b"))
            return ready == 2 or (ready == 1 and bool(self.refusals()))

        try:
            self.wait_until("the ReplicaSets to create their pods", settled, timeout=30)
        except ControlPlaneError as error:
            print(f"({error})")
        self.show(
            "kubectl get deployments -n globex-ml    # as the tenant",
            self.kubectl("get", "deployments", "-n", _NAMESPACE, user=alice),
        )
        columns = "REPLICASET:.involvedObject.name,REASON:.reason,MESSAGE:.message"
        self.show(
            f"kubectl get events -n {_NAMESPACE} --field-selector reason=FailedCreate -o custom-columns=...",
            self.kubectl(
                "get",
                "events",
                "-n",
                _NAMESPACE,
                "--field-selector",
                "reason=FailedCreate",
                "-o",
                f"custom-columns={columns}",
                user=alice,
            ),
        )
        if not self.refusals() and "[LicenseCapExceeded]" not in result.stdout + result.stderr:
            print("(Both services were admitted: the license's cap did not hold. This is a bug:")
            print(" please report it with the webhook's log.)")
            return
        waiting = "serve-b" if self.ready_replicas(_NAMESPACE, "serve-a") == 1 else "serve-a"
        running = "serve-a" if waiting == "serve-b" else "serve-b"
        freed = self.kubectl("scale", f"deployment/{running}", "--replicas=0", "-n", _NAMESPACE, user=alice)
        self.show(
            f"kubectl scale deployment/{running} --replicas=0 -n {_NAMESPACE}    # frees one H100", freed
        )
        replicas = self.get("deployment", waiting, "-n", _NAMESPACE).get("spec", {}).get("replicas", 0)
        if replicas == 0:  # its scale itself was refused (its rival's pod was already charged): ask again
            again = self.kubectl(
                "scale", f"deployment/{waiting}", "--replicas=1", "-n", _NAMESPACE, user=alice
            )
            self.show(f"kubectl scale deployment/{waiting} --replicas=1 -n {_NAMESPACE}", again)
        try:
            took = self.wait_until(
                f"{waiting} to grow", lambda: self.ready_replicas(_NAMESPACE, waiting) == 1, timeout=60
            )
        except ControlPlaneError as error:
            print(f"({error}: the ReplicaSet controller retries a refused pod with exponential back-off)")
            return
        print(f"{waiting} has its pod {took:.0f}s after the capacity was freed")
        print("(the ReplicaSet controller retries a refused pod with exponential back-off).")
        self.show(
            "kubectl get deployments -n globex-ml    # as the tenant",
            self.kubectl("get", "deployments", "-n", _NAMESPACE, user=alice),
        )

    def refusals(self) -> list[str]:
        """Messages of the cap refusals of the two services' ReplicaSets or pods: FailedCreate
        on a ReplicaSet, or any other Event naming serve-a or serve-b (e.g. a refused scale)."""
        events = self.get("events", "-n", _NAMESPACE)
        return [
            str(e.get("message", ""))
            for e in events.get("items", [])
            if "[LicenseCapExceeded]" in str(e.get("message", ""))
            and str((e.get("involvedObject") or {}).get("name", "")).startswith(("serve-a", "serve-b"))
        ]

    def license_revoked(self, alice: Path) -> None:
        """Back to Enforce, then the admin revokes globex's license: what each side then sees."""
        result = self.kubectl("patch", "compliancepolicy", "default", "--type=merge", "-p", _ENFORCE)
        self.show(
            f"kubectl patch compliancepolicy default --type=merge -p '{_ENFORCE}'    # as the admin", result
        )
        result = self.kubectl("patch", "exportlicense", _LICENSE, "--type=merge", "-p", _REVOKE)
        self.show(
            f"kubectl patch exportlicense {_LICENSE} --type=merge -p '{_REVOKE}'    # as the admin", result
        )

        def reported() -> bool:
            status = self.get("exportlicense", _LICENSE).get("status") or {}
            conditions = {c.get("type"): c for c in status.get("conditions") or []}
            return (conditions.get("Violations") or {}).get("status") == "True"

        took = self.wait_until("the revocation to be reported", reported, timeout=30)
        print(f"(reported {took:.1f}s after the revocation)")
        print("\nWhat the admin sees:")
        self.show(
            f"kubectl get exportlicense {_LICENSE} -o wide",
            self.kubectl("get", "exportlicense", _LICENSE, "-o", "wide"),
            wrap=False,
        )
        self.show("kubectl get tenants", self.kubectl("get", "tenants"), wrap=False)
        conditions = '{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\\n"}{end}'
        self.show(
            f"kubectl get exportlicense {_LICENSE} -o jsonpath='{{.status.conditions}}'",
            self.kubectl("get", "exportlicense", _LICENSE, "-o", f"jsonpath={conditions}"),
        )
        print("\nWhat the tenant sees:")
        columns = "POD:.involvedObject.name,REASON:.reason,MESSAGE:.message"
        self.show(
            f"kubectl get events -n {_NAMESPACE} --field-selector reason=LicenseRevoked -o custom-columns=..."
            "    # as the tenant",
            self.kubectl(
                "get",
                "events",
                "-n",
                _NAMESPACE,
                "--field-selector",
                "reason=LicenseRevoked",
                "-o",
                f"custom-columns={columns}",
                user=alice,
            ),
        )
        print("The pods keep running (CompliancePolicy onViolation: Report); with onViolation: Evict")
        print("they would be evicted after evictionGracePeriod, PodDisruptionBudgets permitting.")

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
    print(
        "Starting a local Kubernetes cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler"
    )
    print("and kwok's simulated GPU nodes), seeding the demo state, and starting the ComputeGate webhook...")
    sys.stdout.flush()
    try:
        session = dev_up(
            state_dir=state,
            data_dir=data_dir,
            steps=[install_crds_step, cluster_step, seed_step, webhook_step],
            log=lambda message: None,
        )
    except Exception as error:
        print(f"computegate demo: the cluster did not come up: {error}", file=sys.stderr)
        dev_down(data_dir=data_dir, log=lambda message: None)
        return 1
    try:
        demo = _Demo(session, examples / "workloads")
        seed(session.api, examples / "rbac", install_computegate_crds=False)
        alice = demo.plane.mint_user("alice@globex", ["tenants"])
        bob = demo.plane.mint_user("bob@initech", ["tenants"])
        print(f"Ready in {time.monotonic() - started:.1f}s.")
        print("Tenants: globex (Saudi Arabia, licensed for 2 x H100), initech (Singapore, parent in China,")
        print("no license), northwind (Singapore, parent in the US). Nodes: 8 x H100, 8 x A100, 4 x L4.")

        demo.say("1. A licensed workload is admitted, stamped with the decision, and runs on an H100 node")
        demo.apply_as("alice@globex", alice, "pod-licensed.yaml")
        demo.annotations(_NAMESPACE, "train-llm", alice)
        demo.wait_until(
            "train-llm to run",
            lambda: (
                (demo.get("pod", "train-llm", "-n", _NAMESPACE).get("status") or {}).get("phase") == "Running"
            ),
        )
        demo.show_pods(alice)

        demo.say("2. A tenant without the license it needs is refused, with the reason and the next step")
        demo.apply_as("bob@initech", bob, "pod-unlicensed.yaml")

        demo.say("3. A Deployment over the license's cap is refused at apply time")
        demo.apply_as("alice@globex", alice, "deployment-over-cap.yaml")

        demo.say("4. A Job holds licensed capacity while it runs, and frees it when it completes")
        demo.job_frees_capacity(alice)

        demo.say("5. Two Deployments scaled at the same moment: each fits the license alone, not both")
        demo.concurrent_scale_up(alice)

        demo.say("6. With the CompliancePolicy in Audit mode, the same request is admitted with a warning")
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

        demo.say("7. The license is revoked: its running pods are judged again at once")
        demo.license_revoked(alice)
    finally:
        session.close()
        if keep:
            print(f"\nThe cluster keeps running: export KUBECONFIG={session.control_plane.kubeconfig_path}")
            print(f"Stop it with: computegate dev down --data-dir {data_dir}")
        else:
            stopped = dev_down(data_dir=data_dir, log=lambda message: None)
            print(f"\nStopped {', '.join(p.name for p in stopped)}; nothing is left running.")
            shutil.rmtree(work, ignore_errors=True)
    print(f"Demo finished in {time.monotonic() - started:.1f}s.")
    return 0
