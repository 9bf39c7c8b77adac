"""The dev-cluster harness without a cluster: binary lookup, certificates, state files, processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from computegate.devcluster import (
    CLUSTER_BINARIES,
    DEV_UP_STEPS,
    ETCD_VERSION,
    HELM_VERSION,
    KUBERNETES_VERSION,
    KWOK_VERSION,
    NODE_DEFAULT_CAPACITY,
    POD_COMPLETE_DELAY_ANNOTATION,
    Binaries,
    BinariesNotFound,
    CertificateAuthority,
    ManagedProcess,
    SeedError,
    check_state,
    cluster_step,
    default_assets_dir,
    find_binaries,
    install_crds_step,
    kwok_stages_path,
    live_node_status,
    read_state,
    run_dev_command,
    seed_step,
    webhook_step,
    write_kubeconfig,
)
from computegate.kubeclient import KubeApiError, client_configuration

REPO = Path(__file__).resolve().parents[2]
NAMES = ("etcd", "kube-apiserver", "kubectl", "helm")
ALL_NAMES = (*NAMES, *CLUSTER_BINARIES)


def _fake_binaries(folder: Path, names: tuple[str, ...] = NAMES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = folder / name
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    return folder


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    """An environment with no binary settings but these, and the cache under tmp_path."""
    return {"COMPUTEGATE_CACHE": str(tmp_path / "cache"), **values}


def test_the_pinned_versions_are_those_of_the_install_script() -> None:
    script = (REPO / "hack" / "install-k8s-binaries.sh").read_text()
    pins = dict(re.findall(r'^(\w+_VERSION)="\$\{\w+:-(v[\d.]+)\}"', script, re.MULTILINE))
    assert pins == {
        "KUBERNETES_VERSION": KUBERNETES_VERSION,
        "ETCD_VERSION": ETCD_VERSION,
        "HELM_VERSION": HELM_VERSION,
        "KWOK_VERSION": KWOK_VERSION,
    }


def test_computegate_assets_is_looked_at_before_kubebuilder_assets(tmp_path: Path) -> None:
    ours = _fake_binaries(tmp_path / "ours")
    envtest = _fake_binaries(tmp_path / "envtest")
    found = find_binaries(_env(tmp_path, COMPUTEGATE_ASSETS=str(ours), KUBEBUILDER_ASSETS=str(envtest)))
    assert found.kube_apiserver == ours / "kube-apiserver"


def test_each_binary_is_looked_up_on_its_own_down_to_the_default_cache(tmp_path: Path) -> None:
    envtest = _fake_binaries(tmp_path / "envtest", ("etcd", "kube-apiserver"))
    kubectl = _fake_binaries(tmp_path / "mine", ("kubectl",)) / "kubectl"
    env = _env(tmp_path, KUBEBUILDER_ASSETS=str(envtest), COMPUTEGATE_KUBECTL=str(kubectl))
    cache = _fake_binaries(default_assets_dir(env), ("kubectl", "helm"))
    found = find_binaries(env)
    assert (found.etcd, found.kube_apiserver) == (envtest / "etcd", envtest / "kube-apiserver")
    assert found.kubectl == kubectl
    assert found.helm == cache / "helm"


def test_a_missing_binary_names_every_place_looked_at_and_the_command_that_builds_it(tmp_path: Path) -> None:
    envtest = _fake_binaries(tmp_path / "envtest", ("etcd", "kubectl"))
    with pytest.raises(BinariesNotFound) as missing:
        find_binaries(_env(tmp_path, KUBEBUILDER_ASSETS=str(envtest)))
    message = str(missing.value)
    assert message.startswith("kube-apiserver not found (looked in $COMPUTEGATE_ASSETS (unset), ")
    assert f"$KUBEBUILDER_ASSETS ({envtest})" in message
    assert "$COMPUTEGATE_KUBE_APISERVER (unset)" in message
    assert str(default_assets_dir(_env(tmp_path))) in message
    assert "make binaries" in message
    assert "helm not found" not in message  # optional unless asked for


def test_helm_is_required_only_when_asked_for(tmp_path: Path) -> None:
    folder = _fake_binaries(tmp_path / "envtest", ("etcd", "kube-apiserver", "kubectl"))
    env = _env(tmp_path, KUBEBUILDER_ASSETS=str(folder))
    assert find_binaries(env).helm is None
    with pytest.raises(BinariesNotFound, match=r"^helm not found"):
        find_binaries(env, require_helm=True)


def test_the_full_clusters_binaries_are_found_like_the_others_each_with_its_own_variable(
    tmp_path: Path,
) -> None:
    assets = _fake_binaries(tmp_path / "assets", NAMES)
    mine = _fake_binaries(tmp_path / "mine", CLUSTER_BINARIES)
    env = _env(
        tmp_path,
        COMPUTEGATE_ASSETS=str(assets),
        COMPUTEGATE_KUBE_CONTROLLER_MANAGER=str(mine / "kube-controller-manager"),
        COMPUTEGATE_KUBE_SCHEDULER=str(mine / "kube-scheduler"),
        COMPUTEGATE_KWOK=str(mine / "kwok"),
    )
    found = find_binaries(env, require_cluster=True)
    assert (found.kube_controller_manager, found.kube_scheduler, found.kwok) == (
        mine / "kube-controller-manager",
        mine / "kube-scheduler",
        mine / "kwok",
    )
    assert found.kube_apiserver == assets / "kube-apiserver"


def test_the_full_clusters_binaries_come_from_the_assets_folder_first(tmp_path: Path) -> None:
    assets = _fake_binaries(tmp_path / "assets", ALL_NAMES)
    other = _fake_binaries(tmp_path / "other", CLUSTER_BINARIES)
    env = _env(tmp_path, COMPUTEGATE_ASSETS=str(assets), COMPUTEGATE_KWOK=str(other / "kwok"))
    assert find_binaries(env).kwok == assets / "kwok"


def test_envtests_folder_is_enough_for_a_bare_cluster_but_not_for_the_full_one(tmp_path: Path) -> None:
    envtest = _fake_binaries(tmp_path / "envtest", ("etcd", "kube-apiserver", "kubectl"))
    env = _env(tmp_path, KUBEBUILDER_ASSETS=str(envtest))
    bare = find_binaries(env)
    assert (bare.kube_controller_manager, bare.kube_scheduler, bare.kwok) == (None, None, None)
    with pytest.raises(BinariesNotFound) as missing:
        find_binaries(env, require_cluster=True)
    message = str(missing.value)
    assert message.startswith("kube-controller-manager not found (looked in $COMPUTEGATE_ASSETS (unset), ")
    assert "kube-scheduler not found" in message and "kwok not found" in message
    assert "$COMPUTEGATE_KWOK (unset)" in message
    assert "make binaries" in message and "dev up --bare" in message


def test_the_binaries_recorded_in_a_state_file_read_back_as_they_were(tmp_path: Path) -> None:
    full = find_binaries(_env(tmp_path, COMPUTEGATE_ASSETS=str(_fake_binaries(tmp_path / "a", ALL_NAMES))))
    assert Binaries.from_json(full.to_json()) == full
    bare = Binaries(etcd=Path("/e"), kube_apiserver=Path("/a"), kubectl=Path("/k"))
    assert Binaries.from_json(bare.to_json()) == bare
    old = {"etcd": "/e", "kubeApiserver": "/a", "kubectl": "/k", "helm": None}  # before issue 9
    assert Binaries.from_json(old) == bare


def test_a_file_that_is_not_executable_is_not_a_binary(tmp_path: Path) -> None:
    folder = _fake_binaries(tmp_path / "assets")
    (folder / "etcd").chmod(0o644)
    with pytest.raises(BinariesNotFound, match=r"^etcd not found"):
        find_binaries(_env(tmp_path, COMPUTEGATE_ASSETS=str(folder)))


def test_a_minted_client_certificate_names_the_user_and_groups_and_chains_to_the_ca() -> None:
    ca = CertificateAuthority.generate()
    pair = ca.issue("tenant-a", organizations=["tenants", "northwind"], client=True)
    cert = x509.load_pem_x509_certificate(pair.cert_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "tenant-a"
    groups = [attribute.value for attribute in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert groups == ["tenants", "northwind"]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.issuer == ca.cert.subject
    public_key = ca.cert.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    cert.verify_directly_issued_by(ca.cert)


def test_a_serving_certificate_names_loopback_as_an_ip_address() -> None:
    ca = CertificateAuthority.generate()
    cert = x509.load_pem_x509_certificate(
        ca.issue("webhook", hosts=["127.0.0.1", "localhost"], server=True).cert_pem
    )
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]


def test_a_certificate_for_neither_server_nor_client_is_refused() -> None:
    with pytest.raises(ValueError, match="server, a client, or both"):
        CertificateAuthority.generate().issue("nobody")


def test_a_written_kubeconfig_is_private_and_the_kubernetes_client_reads_its_credentials(
    tmp_path: Path,
) -> None:
    ca = CertificateAuthority.generate()
    pair = ca.issue("alice", client=True)
    path = write_kubeconfig(
        tmp_path / "kubeconfig",
        server="https://127.0.0.1:6443",
        ca_pem=ca.cert_pem,
        user="alice",
        credentials=pair,
    )
    assert path.stat().st_mode & 0o777 == 0o600
    read = client_configuration(path)
    assert read.host == "https://127.0.0.1:6443"
    assert Path(read.ssl_ca_cert).read_bytes() == ca.cert_pem
    assert (Path(read.cert_file).read_bytes(), Path(read.key_file).read_bytes()) == (
        pair.cert_pem,
        pair.key_pem,
    )
    assert read.verify_ssl


def test_a_refused_request_is_one_line_naming_the_request_and_what_the_api_server_said() -> None:
    answer = b'{"kind":"Status","status":"Failure","reason":"Invalid","message":"spec.x: Required value"}'
    error = KubeApiError("PATCH", "/apis/g/v1/things/a", 422, "Unprocessable Entity", answer)
    assert (error.status, error.reason, error.message) == (422, "Invalid", "spec.x: Required value")
    assert str(error) == "PATCH /apis/g/v1/things/a: HTTP 422 Invalid: spec.x: Required value"
    plain = KubeApiError("GET", "/readyz", 500, "Internal Server Error", b"[-]etcd failed\n")
    assert str(plain) == "GET /readyz: HTTP 500 Internal Server Error: [-]etcd failed"


def _state(tmp_path: Path, text: str, name: str = "state.yaml") -> Path:
    folder = tmp_path / "state"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text)
    return folder


def test_reading_state_flattens_lists_and_skips_empty_documents(tmp_path: Path) -> None:
    folder = _state(
        tmp_path,
        "---\n"
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n"
        "---\n"
        "---\n"
        "apiVersion: v1\nkind: List\nitems:\n"
        "- {apiVersion: v1, kind: Node, metadata: {name: n1}}\n"
        "- {apiVersion: v1, kind: Node, metadata: {name: n2}}\n",
    )
    documents = read_state(folder)
    assert [(d.kind, d.name, d.index) for d in documents] == [
        ("Namespace", "a", 1),
        ("Node", "n1", 3),
        ("Node", "n2", 3),
    ]


def test_bad_yaml_is_one_line_naming_the_file_and_the_document(tmp_path: Path) -> None:
    folder = _state(tmp_path, "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\nkind: [unclosed\n")
    with pytest.raises(SeedError) as bad:
        read_state(folder)
    message = str(bad.value)
    assert message.startswith(f"{folder / 'state.yaml'}: document 2, line ")
    assert "not valid YAML" in message
    assert "\n" not in message


def test_an_object_without_a_name_is_refused_naming_the_file_and_the_document(tmp_path: Path) -> None:
    folder = _state(
        tmp_path, "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Pod\n"
    )
    with pytest.raises(
        SeedError, match=re.escape(f"{folder / 'state.yaml'}: document 2: Pod needs metadata.name")
    ):
        read_state(folder)


def test_a_document_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    folder = _state(tmp_path, "- just\n- a list\n")
    with pytest.raises(SeedError, match=r": document 1: expected a Kubernetes object \(a mapping\)"):
        read_state(folder)


def test_stopping_a_process_terminates_it(tmp_path: Path) -> None:
    process = ManagedProcess.spawn(
        "sleeper",
        [sys.executable, "-c", "import time; time.sleep(60)"],
        log_path=tmp_path / "s.log",
        detach=False,
    )
    assert process.is_running()
    process.stop(timeout=5)
    assert not process.is_running()
    assert process.exit_code() == -15  # SIGTERM was enough


def test_a_process_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    process = ManagedProcess.spawn(
        "stubborn", [sys.executable, "-c", code], log_path=tmp_path / "s.log", detach=True
    )
    deadline = time.monotonic() + 10
    while "ready" not in process.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.stop(timeout=0.5)
    assert process.exit_code() == -9


def test_a_recorded_process_found_again_by_pid_is_recognised_by_its_command_line(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    started = ManagedProcess.spawn("sleeper", argv, log_path=tmp_path / "s.log", detach=False)
    try:
        found = ManagedProcess.from_json(started.to_json())
        assert found.popen is None and found.is_running()
        impostor = ManagedProcess(
            name="etcd", pid=started.pid, argv=("/usr/bin/etcd",), log_path=tmp_path / "x"
        )
        assert not impostor.is_running()  # a reused pid with another command is not ours to kill
    finally:
        started.stop()
    assert not found.is_running()


def test_dev_down_with_nothing_running_says_so_and_succeeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_dev_command("down", data_dir=tmp_path / "dev") == 0
    assert "nothing to stop" in capsys.readouterr().err


def test_dev_up_with_unusable_state_fails_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _state(tmp_path, "kind: [unclosed\n")
    assert run_dev_command("up", state_dir=folder, data_dir=tmp_path / "dev") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"error: {folder / 'state.yaml'}: document 1" in captured.err
    assert not (tmp_path / "dev" / "controlplane.json").exists()


def test_dev_up_without_binaries_fails_naming_make_binaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in ("COMPUTEGATE_ASSETS", "KUBEBUILDER_ASSETS", "COMPUTEGATE_ETCD", "COMPUTEGATE_KUBE_APISERVER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COMPUTEGATE_CACHE", str(tmp_path / "empty-cache"))
    assert run_dev_command("up", data_dir=tmp_path / "dev") == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # no KUBECONFIG line when nothing runs
    assert "make binaries" in captured.err


def test_end_to_end_tests_fail_rather_than_skip_without_binaries(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("COMPUTEGATE_", "KUBEBUILDER_"))
    }
    env["COMPUTEGATE_CACHE"] = str(tmp_path / "empty-cache")
    test = "tests/e2e/test_harness.py::test_the_api_server_reports_the_release_it_was_built_from"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", test],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 1, run.stdout
    assert "1 error" in run.stdout and "skipped" not in run.stdout
    assert "make binaries" in run.stdout


def test_the_full_clusters_step_runs_before_seeding_and_the_webhook_after_it() -> None:
    order = [install_crds_step, cluster_step, seed_step, webhook_step]
    assert [step for step in DEV_UP_STEPS if step in order] == order


def _stages() -> dict[str, dict[str, Any]]:
    documents = [d for d in yaml.safe_load_all(kwok_stages_path().read_text()) if d]
    assert {(d["apiVersion"], d["kind"]) for d in documents} == {("kwok.x-k8s.io/v1alpha1", "Stage")}
    return {d["metadata"]["name"]: d for d in documents}


def test_kwoks_stages_ship_with_the_package_for_nodes_pods_jobs_and_deletion() -> None:
    stages = _stages()
    assert list(stages) == [
        "node-initialize",
        "node-heartbeat-with-lease",
        "pod-ready",
        "pod-complete",
        "pod-delete",
    ]
    kinds = {name: stage["spec"]["resourceRef"]["kind"] for name, stage in stages.items()}
    assert kinds == {
        "node-initialize": "Node",
        "node-heartbeat-with-lease": "Node",
        "pod-ready": "Pod",
        "pod-complete": "Pod",
        "pod-delete": "Pod",
    }
    assert "phase: Running" in stages["pod-ready"]["spec"]["next"]["statusTemplate"]
    assert stages["pod-delete"]["spec"]["next"] == {"delete": True}


def test_a_jobs_pod_completes_after_the_delay_its_annotation_sets_or_ten_seconds() -> None:
    stage = _stages()["pod-complete"]["spec"]
    owners = [
        e for e in stage["selector"]["matchExpressions"] if e["key"] == ".metadata.ownerReferences.[].kind"
    ]
    assert owners == [{"key": ".metadata.ownerReferences.[].kind", "operator": "In", "values": ["Job"]}]
    assert stage["delay"]["durationMilliseconds"] == 10_000
    assert stage["delay"]["durationFrom"] == {
        "expressionFrom": f'.metadata.annotations["{POD_COMPLETE_DELAY_ANNOTATION}"]'
    }
    assert "phase: Succeeded" in stage["next"]["statusTemplate"]


def test_a_node_without_cpu_memory_or_pods_gets_them_and_keeps_what_the_folder_says() -> None:
    assert live_node_status(None) == {"capacity": NODE_DEFAULT_CAPACITY, "allocatable": NODE_DEFAULT_CAPACITY}
    status = live_node_status(
        {
            "capacity": {"cpu": "96", "nvidia.com/gpu": "8"},
            "allocatable": {"cpu": "94"},
            "nodeInfo": {"architecture": "arm64"},
        }
    )
    assert status["capacity"] == {"cpu": "96", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": "8"}
    assert status["allocatable"] == {"cpu": "94", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": "8"}
    assert status["nodeInfo"] == {"architecture": "arm64"}


BOUND_POD = """
apiVersion: v1
kind: Pod
metadata: {name: trainer, namespace: ml}
spec: {nodeName: NODE, containers: [{name: main, image: app:1}]}
"""
NODE = "apiVersion: v1\nkind: Node\nmetadata: {name: gpu-1}\n"


def test_a_pod_bound_to_a_node_the_state_does_not_define_is_refused_naming_the_pod_and_node(
    tmp_path: Path,
) -> None:
    folder = _state(tmp_path, NODE + "---" + BOUND_POD.replace("NODE", "gpu-2"))
    with pytest.raises(SeedError) as refused:
        check_state(read_state(folder))
    message = str(refused.value)
    assert message.startswith(f"{folder / 'state.yaml'}: document 2: Pod ml/trainer is bound to node gpu-2")
    assert "garbage collector would delete" in message and "\n" not in message
    check_state(read_state(folder), known_nodes=frozenset({"gpu-2"}))  # a node the cluster has


def test_a_pod_bound_to_a_node_of_the_state_is_accepted(tmp_path: Path) -> None:
    check_state(read_state(_state(tmp_path, NODE + "---" + BOUND_POD.replace("NODE", "gpu-1"))))


def test_devices_without_resource_slices_are_refused_for_a_live_cluster_only(tmp_path: Path) -> None:
    device_class = "apiVersion: resource.k8s.io/v1\nkind: DeviceClass\nmetadata: {name: gpu.example.com}\n"
    folder = _state(tmp_path, NODE + "---\n" + device_class)
    with pytest.raises(
        SeedError, match=r": document 2: DeviceClass gpu.example.com: .* defines no ResourceSlice"
    ):
        check_state(read_state(folder))
    check_state(read_state(folder), live=False)
    slice_ = (
        "apiVersion: resource.k8s.io/v1\nkind: ResourceSlice\nmetadata: {name: gpu-1-gpus}\n"
        "spec: {driver: gpu.example.com, nodeName: gpu-1, pool: {name: gpu-1, generation: 1, "
        "resourceSliceCount: 1}, devices: [{name: gpu-0}]}\n"
    )
    (folder / "slices.yaml").write_text(slice_)
    check_state(read_state(folder))


def test_dev_up_with_a_pod_bound_to_an_unknown_node_fails_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _state(tmp_path, BOUND_POD.replace("NODE", "nowhere"))
    assert run_dev_command("up", state_dir=folder, data_dir=tmp_path / "dev") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "is bound to node nowhere" in captured.err
    assert not (tmp_path / "dev" / "controlplane.json").exists()


def test_dev_up_asks_for_the_full_clusters_binaries_unless_bare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in ("COMPUTEGATE_ASSETS", "KUBEBUILDER_ASSETS", "COMPUTEGATE_KUBE_CONTROLLER_MANAGER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COMPUTEGATE_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(_fake_binaries(tmp_path / "envtest", ("etcd",))))
    assert run_dev_command("up", data_dir=tmp_path / "dev") == 1
    assert "kube-controller-manager not found" in capsys.readouterr().err
    assert run_dev_command("up", data_dir=tmp_path / "dev", bare=True) == 1
    err = capsys.readouterr().err
    assert "kube-apiserver not found" in err and "kube-controller-manager" not in err


def test_the_cli_passes_bare_to_dev_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import computegate.devcluster as devcluster
    from computegate import cli

    calls: list[dict[str, Any]] = []

    def fake(action: str, **kwargs: Any) -> int:
        calls.append({"action": action, **kwargs})
        return 0

    monkeypatch.setattr(devcluster, "run_dev_command", fake)
    assert cli.main(["dev", "up", "--bare", "--empty", "--data-dir", str(tmp_path)]) == 0
    assert cli.main(["dev", "up", "--empty", "--data-dir", str(tmp_path)]) == 0
    assert [call["bare"] for call in calls] == [True, False]


def test_dev_up_refuses_devices_without_slices_before_starting_anything_unless_bare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    device_class = "apiVersion: resource.k8s.io/v1\nkind: DeviceClass\nmetadata: {name: gpu.example.com}\n"
    folder = _state(tmp_path, device_class)
    assert run_dev_command("up", state_dir=folder, data_dir=tmp_path / "dev") == 1
    assert "defines no ResourceSlice" in capsys.readouterr().err
    monkeypatch.setenv("COMPUTEGATE_CACHE", str(tmp_path / "empty-cache"))
    for var in ("COMPUTEGATE_ASSETS", "KUBEBUILDER_ASSETS", "COMPUTEGATE_ETCD"):
        monkeypatch.delenv(var, raising=False)
    assert run_dev_command("up", state_dir=folder, data_dir=tmp_path / "dev", bare=True) == 1
    err = capsys.readouterr().err  # the state passed; the (absent) binaries stopped it
    assert "ResourceSlice" not in err and "etcd not found" in err
    assert not (tmp_path / "dev" / "controlplane.json").exists()
