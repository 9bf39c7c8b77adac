"""ComputeGate on the full dev cluster: pods made by controllers, placed by the scheduler, run
by kwok's simulated nodes, collected, evicted.

One ``computegate dev up`` (controllers, scheduler, kwok, webhook) for the module, seeded with
``data/cluster/state`` (two H100 nodes, one A100, one T4, no cpu or memory figures: seeding
gives them). Each test makes its own tenant, license and namespace. The CronJob is created
when the cluster comes up and checked last, so the wait for its first minute overlaps the
other tests. Budget: about two minutes for the module (docs/dev-cluster.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from computegate.devcluster import ControlPlane, find_binaries
from computegate.kubeclient import KubeApiError, request
from tests.e2e.webhook_support import H100, H100_TPP, Cluster, license, pod_spec, tenant, unique, wait_until

pytestmark = pytest.mark.e2e

STATE = Path(__file__).parent / "data" / "cluster" / "state"
A100 = "NVIDIA-A100-SXM4-80GB"
A100_TPP = 4992
T4 = "Tesla-T4"
CRON_NAMESPACE = "cron-ml"
QUICK_JOB = {"pod-complete.stage.kwok.x-k8s.io/delay": "2s"}


def _computegate(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "computegate", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    find_binaries(require_cluster=True)  # a missing binary fails here, naming `make binaries`
    data_dir = tmp_path_factory.mktemp("cluster-dev")
    up = _computegate("dev", "up", "--state", str(STATE), f"--data-dir={data_dir}")
    try:
        assert up.returncode == 0, up.stderr
        plane = ControlPlane.attach(data_dir)
        assert plane is not None
        running = {process.name for process in plane.running_processes()}
        assert {"kube-controller-manager", "kube-scheduler", "kwok", "computegate-webhook"} <= running
        cluster = Cluster(plane)
        cluster.apply(yaml.safe_dump_all(_cron_job()))
        yield cluster
    finally:
        down = _computegate("dev", "down", "--data-dir", str(data_dir))
        assert down.returncode == 0, down.stderr
        after = ControlPlane.attach(data_dir)
        assert after is None or not after.running_processes(), "dev down left a process running"


# -- helpers ---------------------------------------------------------------------------------
def licensed(cluster: Cluster, gpus: int) -> tuple[str, str]:
    """A Saudi tenant (needs a license) with an H100 license for ``gpus`` H100s: (namespace, license)."""
    name = unique("t")
    namespace = f"{name}-ml"
    cluster.apply(tenant(name, "SA", namespaces=[namespace]))
    cluster.apply(license(f"{name}-lic", name, max_tpp=gpus * H100_TPP))
    wait_until(lambda: _served(cluster, namespace), what=f"the default ServiceAccount of {namespace}")
    return namespace, f"{name}-lic"


def _served(cluster: Cluster, namespace: str) -> bool:
    return cluster.kubectl("get", "serviceaccount", "default", "-n", namespace).returncode == 0


def pods(cluster: Cluster, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
    args = ["pods", "-n", namespace] + (["-l", selector] if selector else [])
    items: list[dict[str, Any]] = cluster.get(*args)["items"]
    return items


def running(
    cluster: Cluster, namespace: str, count: int, selector: str | None = None
) -> list[dict[str, Any]]:
    """Wait until exactly ``count`` pods (of ``selector``) are Running; return them."""
    found: list[dict[str, Any]] = []

    def check() -> bool:
        nonlocal found
        found = [p for p in pods(cluster, namespace, selector) if p["status"].get("phase") == "Running"]
        return len(found) == count and all(not p["metadata"].get("deletionTimestamp") for p in found)

    wait_until(check, timeout=60, what=f"{count} running pods in {namespace}")
    return found


def code(pod: dict[str, Any]) -> str | None:
    return (pod["metadata"].get("annotations") or {}).get("computegate.io/code")


def node_product(cluster: Cluster, node: str) -> str:
    return str(cluster.get("node", node)["metadata"]["labels"]["nvidia.com/gpu.product"])


def used_tpp(cluster: Cluster, license_name: str) -> float:
    return float((cluster.get("exportlicense", license_name).get("status") or {}).get("consumedTPP") or 0)


def refusals(cluster: Cluster, namespace: str) -> dict[str, list[str]]:
    """The controllers' Warning Events that carry a webhook refusal: {reason: [messages]}.

    A pod the webhook refuses is ``FailedCreate`` on its ReplicaSet, DaemonSet or Job; a
    ReplicaSet it refuses is ``ReplicaSetCreateError`` on its Deployment."""
    found: dict[str, list[str]] = {}
    for event in cluster.get("events", "-n", namespace)["items"]:
        if event.get("reason") in ("FailedCreate", "ReplicaSetCreateError") and "denied the request" in str(
            event.get("message")
        ):
            found.setdefault(str(event["reason"]), []).append(str(event["message"]))
    return found


def workload(kind: str, name: str, namespace: str, spec: dict[str, Any], api: str = "apps/v1") -> str:
    return yaml.safe_dump(
        {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    )


def template(
    app: str, gpus: int = 1, product: str = H100, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"labels": {"app": app}}
    if annotations:
        metadata["annotations"] = annotations
    return {"metadata": metadata, "spec": pod_spec(gpus, product)}


def deployment(name: str, namespace: str, replicas: int, **extra: Any) -> str:
    spec = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": template(name),
        **extra,
    }
    return workload("Deployment", name, namespace, spec)


def _cron_job() -> list[dict[str, Any]]:
    docs = list(yaml.safe_load_all(tenant("cron", "SA", namespaces=[CRON_NAMESPACE])))
    docs.append(yaml.safe_load(license("cron-lic", "cron", max_tpp=H100_TPP)))
    job = {"parallelism": 1, "backoffLimit": 0, "template": {**template("nightly", annotations=QUICK_JOB)}}
    job["template"]["spec"]["restartPolicy"] = "Never"
    docs.append(
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "nightly", "namespace": CRON_NAMESPACE},
            "spec": {"schedule": "* * * * *", "concurrencyPolicy": "Forbid", "jobTemplate": {"spec": job}},
        }
    )
    return docs


# -- controllers make pods, and each pod is judged -----------------------------------------------
def test_a_deployments_replicaset_makes_pods_that_are_judged_scheduled_on_h100_and_counted(
    cluster: Cluster,
) -> None:
    namespace, lic = licensed(cluster, 2)
    assert cluster.create(deployment("serve", namespace, 2)).code == "Licensed"
    made = running(cluster, namespace, 2)
    assert {code(pod) for pod in made} == {"Licensed"}
    assert {pod["metadata"]["ownerReferences"][0]["kind"] for pod in made} == {"ReplicaSet"}
    assert {node_product(cluster, pod["spec"]["nodeName"]) for pod in made} == {H100}
    wait_until(lambda: used_tpp(cluster, lic) == 2 * H100_TPP, what="the license to count both pods")


def test_a_statefulsets_pods_are_judged_and_run_in_order(cluster: Cluster) -> None:
    namespace, _ = licensed(cluster, 2)
    spec = {
        "replicas": 2,
        "serviceName": "db",
        "selector": {"matchLabels": {"app": "db"}},
        "template": template("db"),
    }
    assert cluster.create(workload("StatefulSet", "db", namespace, spec)).code == "Licensed"
    made = running(cluster, namespace, 2)
    assert sorted(pod["metadata"]["name"] for pod in made) == ["db-0", "db-1"]
    assert {code(pod) for pod in made} == {"Licensed"}


def test_a_daemonset_over_the_h100_nodes_is_judged_per_node_and_runs_one_pod_on_each(
    cluster: Cluster,
) -> None:
    namespace, _ = licensed(cluster, 2)
    spec = {"selector": {"matchLabels": {"app": "agent"}}, "template": template("agent")}
    created = cluster.create(workload("DaemonSet", "agent", namespace, spec))
    assert created.code == "Licensed", created.stderr
    made = running(cluster, namespace, 2)
    assert sorted(pod["spec"]["nodeName"] for pod in made) == ["gpu-h100-a", "gpu-h100-b"]
    assert {code(pod) for pod in made} == {"Licensed"}

    one = licensed(cluster, 1)[0]  # the same DaemonSet needs two H100s: more than this license
    refused = cluster.create(workload("DaemonSet", "agent", one, spec))
    assert not refused.ok and refused.code == "LicenseCapExceeded", refused.stderr

    # A third H100 node joins: the DaemonSet controller makes a pod for it, which the license
    # (two H100s) cannot take: the DaemonSet reports FailedCreate with the webhook's message.
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "gpu-h100-c", "labels": {"nvidia.com/gpu.product": H100}},
    }
    cluster.apply(yaml.safe_dump(node))
    try:
        capacity = {"nvidia.com/gpu": "8", "cpu": "64", "memory": "512Gi", "pods": "110"}
        status = json.dumps({"status": {"capacity": capacity, "allocatable": capacity}})
        patched = cluster.kubectl(
            "patch", "node", "gpu-h100-c", "--subresource=status", "--type=merge", "-p", status
        )
        assert patched.returncode == 0, patched.stderr
        wait_until(
            lambda: bool(refusals(cluster, namespace).get("FailedCreate")),
            timeout=30,
            what="the DaemonSet's FailedCreate",
        )
        (message, *_) = refusals(cluster, namespace)["FailedCreate"]
        assert (
            'admission webhook "workloads.validate.computegate.io" denied the request: [LicenseCapExceeded]'
            in message
        )
        assert sorted(p["spec"]["nodeName"] for p in running(cluster, namespace, 2)) == [
            "gpu-h100-a",
            "gpu-h100-b",
        ]
    finally:
        cluster.kubectl("delete", "node", "gpu-h100-c", "--wait=false")


def test_a_job_completes_and_the_capacity_it_held_is_freed(cluster: Cluster) -> None:
    namespace, lic = licensed(cluster, 2)
    job_template = template("batch", annotations=QUICK_JOB)
    job_template["spec"]["restartPolicy"] = "Never"
    spec = {"parallelism": 2, "completions": 2, "backoffLimit": 0, "template": job_template}
    assert cluster.create(workload("Job", "batch", namespace, spec, api="batch/v1")).code == "Licensed"
    wait_until(
        lambda: used_tpp(cluster, lic) == 2 * H100_TPP, timeout=30, what="the Job's pods to be counted"
    )
    done = cluster.kubectl("wait", "--for=condition=Complete", "job/batch", "-n", namespace, "--timeout=60s")
    assert done.returncode == 0, done.stderr
    finished = pods(cluster, namespace)
    assert [pod["status"]["phase"] for pod in finished] == ["Succeeded", "Succeeded"]
    assert {code(pod) for pod in finished} == {"Licensed"}
    wait_until(lambda: used_tpp(cluster, lic) == 0, timeout=30, what="the license to free the Job's capacity")
    assert cluster.create(deployment("next", namespace, 2), dry_run=True).code == "Licensed"


# -- a full license: refused pods, rolling updates ------------------------------------------------
def test_a_deployment_whose_new_replicaset_does_not_fit_reports_the_webhooks_refusal(
    cluster: Cluster,
) -> None:
    namespace, _ = licensed(cluster, 1)
    # Paused: the Deployment is judged (it fits alone) but makes no ReplicaSet yet.
    assert cluster.create(deployment("late", namespace, 1, paused=True)).code == "Licensed"
    assert cluster.create(deployment("first", namespace, 1)).code == "Licensed"
    running(cluster, namespace, 1)
    resumed = cluster.kubectl("rollout", "resume", "deployment/late", "-n", namespace)
    assert resumed.returncode == 0, resumed.stderr
    wait_until(lambda: bool(refusals(cluster, namespace)), what="the Deployment controller's refusal Event")
    (message, *_) = refusals(cluster, namespace)["ReplicaSetCreateError"]
    assert (
        'admission webhook "workloads.validate.computegate.io" denied the request: [LicenseCapExceeded]'
        in message
    )
    assert [pod["metadata"]["labels"]["app"] for pod in pods(cluster, namespace)] == ["first"]


def test_a_rolling_update_under_a_full_license_rolls_without_surge_and_is_refused_with_it(
    cluster: Cluster,
) -> None:
    namespace, lic = licensed(cluster, 2)
    no_surge = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    assert cluster.create(deployment("roll", namespace, 2, strategy=no_surge)).code == "Licensed"
    running(cluster, namespace, 2)
    bump = cluster.kubectl(
        "set", "image", "deployment/roll", "main=registry.example/train:2", "-n", namespace
    )
    assert bump.returncode == 0, bump.stderr
    rolled = cluster.kubectl("rollout", "status", "deployment/roll", "-n", namespace, "--timeout=90s")
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    now = running(cluster, namespace, 2)
    assert {pod["spec"]["containers"][0]["image"] for pod in now} == {"registry.example/train:2"}
    assert {code(pod) for pod in now} == {"Licensed"}

    # The default strategy surges one pod above the replicas: a third H100 the license lacks.
    surge = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    patch = json.dumps(
        {
            "spec": {
                "strategy": surge,
                "template": {"spec": {"containers": [{"name": "main", "image": "registry.example/train:3"}]}},
            }
        }
    )
    assert cluster.kubectl("patch", "deployment/roll", "-n", namespace, "-p", patch).returncode == 0
    wait_until(
        lambda: any("[LicenseCapExceeded]" in m for ms in refusals(cluster, namespace).values() for m in ms),
        what="the surge's refusal",
    )
    assert {p["spec"]["containers"][0]["image"] for p in running(cluster, namespace, 2)} == {
        "registry.example/train:2"
    }
    assert used_tpp(cluster, lic) == 2 * H100_TPP


# -- garbage collection, namespaces -------------------------------------------------------------
def test_deleting_a_deployment_collects_its_replicaset_and_pods_and_frees_the_license(
    cluster: Cluster,
) -> None:
    namespace, lic = licensed(cluster, 2)
    cluster.create(deployment("gone", namespace, 2))
    running(cluster, namespace, 2)
    wait_until(lambda: used_tpp(cluster, lic) == 2 * H100_TPP, what="the license to count the pods")
    assert cluster.kubectl("delete", "deployment/gone", "-n", namespace, "--wait=false").returncode == 0
    wait_until(lambda: not pods(cluster, namespace), timeout=30, what="the garbage collector")
    assert cluster.get("replicasets", "-n", namespace)["items"] == []
    wait_until(lambda: used_tpp(cluster, lic) == 0, timeout=30, what="the license to free the capacity")


def test_a_deleted_namespace_is_emptied_and_removed_and_its_capacity_freed(cluster: Cluster) -> None:
    namespace, lic = licensed(cluster, 1)
    cluster.create(deployment("app", namespace, 1))
    running(cluster, namespace, 1)
    assert cluster.kubectl("delete", "namespace", namespace, "--wait=false").returncode == 0
    wait_until(
        lambda: cluster.kubectl("get", "namespace", namespace).returncode != 0,
        timeout=60,
        what="the namespace controller",
    )
    wait_until(lambda: used_tpp(cluster, lic) == 0, timeout=30, what="the license to free the capacity")


# -- the scheduler places pods on the model the decision assumed --------------------------------
@pytest.mark.parametrize(("product", "tpp"), [(H100, H100_TPP), (A100, A100_TPP)])
def test_the_scheduler_places_a_pod_on_a_node_of_the_model_its_decision_counted(
    cluster: Cluster, product: str, tpp: int
) -> None:
    name = unique("us")
    namespace = f"{name}-ml"
    cluster.apply(tenant(name, "SG", parent="US", namespaces=[namespace]))  # no license needed
    wait_until(lambda: _served(cluster, namespace), what="the default ServiceAccount")
    manifest = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": namespace},
            "spec": pod_spec(2, product),
        }
    )
    created = cluster.create(manifest)
    assert created.code == "JurisdictionAllowed", created.stderr
    assert created.annotations["computegate.io/tpp"] == str(2 * tpp)
    (placed,) = running(cluster, namespace, 1)
    assert node_product(cluster, placed["spec"]["nodeName"]) == product


def test_a_pods_device_claim_is_allocated_from_the_states_resource_slice_and_the_pod_judged(
    cluster: Cluster,
) -> None:
    namespace, _ = licensed(cluster, 1)
    claim_template = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": "one-gpu", "namespace": namespace},
        "spec": {
            "spec": {
                "devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": "gpu.nvidia.com"}}]}
            }
        },
    }
    cluster.apply(yaml.safe_dump(claim_template))
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "dra", "namespace": namespace},
        "spec": {
            "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "one-gpu"}],
            "containers": [
                {
                    "name": "main",
                    "image": "registry.example/train:1",
                    "resources": {"claims": [{"name": "gpu"}]},
                }
            ],
        },
    }
    created = cluster.create(yaml.safe_dump(manifest))
    assert created.code == "Licensed", created.stderr
    assert created.annotations["computegate.io/tpp"] == str(H100_TPP)
    (placed,) = running(cluster, namespace, 1)
    assert placed["spec"]["nodeName"] == "gpu-h100-a"  # the only node whose slice offers the class
    (claim,) = cluster.get("resourceclaims", "-n", namespace)["items"]
    (result,) = claim["status"]["allocation"]["devices"]["results"]
    assert (result["driver"], result["pool"]) == ("gpu.nvidia.com", "gpu-h100-a")


# -- eviction through the Eviction API, honouring a PDB -----------------------------------------
def test_an_eviction_honours_the_pod_disruption_budget_and_the_replacement_is_judged(
    cluster: Cluster,
) -> None:
    namespace, _ = licensed(cluster, 2)
    cluster.create(deployment("ha", namespace, 2))
    running(cluster, namespace, 2)
    budget = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "ha", "namespace": namespace},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "ha"}}},
    }
    cluster.apply(yaml.safe_dump(budget))

    def healthy() -> bool:
        status = cluster.get("pdb", "ha", "-n", namespace).get("status") or {}
        return status.get("currentHealthy") == 2 and status.get("observedGeneration") == 1

    wait_until(healthy, what="the disruption controller")
    victim = pods(cluster, namespace)[0]["metadata"]["name"]
    path = f"/api/v1/namespaces/{namespace}/pods/{victim}/eviction"
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": victim, "namespace": namespace},
    }
    with cluster.plane.api_client() as api:
        with pytest.raises(KubeApiError) as refused:
            request(api, "POST", path, body=eviction)
        assert refused.value.status == 429 and "disruption budget" in refused.value.message
        assert str(refused.value).startswith(f"POST {path}: HTTP 429 TooManyRequests: ")

        budget["spec"] = {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "ha"}}}
        cluster.apply(yaml.safe_dump(budget))
        wait_until(
            lambda: (
                (cluster.get("pdb", "ha", "-n", namespace).get("status") or {}).get("disruptionsAllowed") == 1
            ),
            what="the budget to allow one disruption",
        )
        assert request(api, "POST", path, body=eviction)[0] == 201
    replaced = running(cluster, namespace, 2)
    assert victim not in {pod["metadata"]["name"] for pod in replaced}
    assert {code(pod) for pod in replaced} == {"Licensed"}


# -- last: the CronJob created with the cluster has had its minute ------------------------------
def test_a_cronjobs_job_makes_a_pod_that_is_judged_and_completes(cluster: Cluster) -> None:
    def completed() -> list[dict[str, Any]]:
        jobs = cluster.get("jobs", "-n", CRON_NAMESPACE)["items"]
        return [job for job in jobs if (job.get("status") or {}).get("succeeded")]

    wait_until(lambda: bool(completed()), timeout=90, what="the CronJob's first Job to complete")
    job = completed()[0]
    assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    made = [
        p
        for p in pods(cluster, CRON_NAMESPACE)
        if p["metadata"]["ownerReferences"][0]["name"] == job["metadata"]["name"]
    ]
    assert made and {code(pod) for pod in made} == {"Licensed"}
    assert {pod["status"]["phase"] for pod in made} == {"Succeeded"}
