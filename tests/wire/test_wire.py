"""Bad and hostile AdmissionReviews posted straight at the webhook's HTTPS server.

Each gets a clear 4xx or a denial with a reason; never an HTTP 5xx, never an allow of an
accelerator workload; and the server keeps answering good requests afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import ssl
from typing import Any

import aiohttp
import jsonpatch
import pytest

from computegate.webhook.admission import AdmissionResponse, AdmissionReviewResponse
from computegate.webhook.certs import generate_serving_files
from computegate.webhook.configuration import MUTATE_WORKLOADS, VALIDATE_NAMESPACES, VALIDATE_WORKLOADS
from computegate.webhook.server import MAX_BODY_BYTES
from tests.wire.conftest import Webhook

_RESOURCES = {
    "CronJob": ("batch", "cronjobs"),
    "Pod": ("", "pods"),
    "Deployment": ("apps", "deployments"),
    "Namespace": ("", "namespaces"),
}


def gpu_pod(namespace: str = "globex", gpus: object = "1", name: str = "trainer") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "containers": [{"name": "main", "image": "x", "resources": {"limits": {"nvidia.com/gpu": gpus}}}]
        },
    }


def review(
    obj: dict[str, Any],
    *,
    operation: str = "CREATE",
    old: dict[str, Any] | None = None,
    user: str = "alice",
    groups: tuple[str, ...] = ("tenants",),
    uid: str = "uid-1",
) -> dict[str, Any]:
    group, plural = _RESOURCES[obj.get("kind", "Pod")]
    request: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": group, "version": "v1", "kind": obj.get("kind", "Pod")},
        "resource": {"group": group, "version": "v1", "resource": plural},
        "name": obj.get("metadata", {}).get("name", ""),
        "namespace": obj.get("metadata", {}).get("namespace"),
        "operation": operation,
        "userInfo": {"username": user, "groups": list(groups)},
        "object": obj,
        "oldObject": old,
        "dryRun": False,
    }
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


async def admit(webhook: Webhook, body: dict[str, Any]) -> AdmissionResponse:
    """What the API server does: the mutating webhook, its patch applied, then the validating one."""
    status, answer = await webhook.post(MUTATE_WORKLOADS, body)
    assert status == 200, answer
    mutated = AdmissionReviewResponse.model_validate(answer).response
    if mutated.patch is not None:
        patch = jsonpatch.JsonPatch(json.loads(base64.b64decode(mutated.patch)))
        body = copy.deepcopy(body)
        body["request"]["object"] = patch.apply(body["request"]["object"])
    status, answer = await webhook.post(VALIDATE_WORKLOADS, body)
    assert status == 200, answer
    return AdmissionReviewResponse.model_validate(answer).response


async def assert_still_serving(webhook: Webhook) -> None:
    answer = await admit(webhook, review(gpu_pod("northwind"), uid="after"))
    assert answer.uid == "after" and answer.allowed


def denial(status: int, body: Any) -> str:
    assert status == 200, body
    answer = AdmissionReviewResponse.model_validate(body).response
    assert answer.allowed is False
    assert answer.status is not None and answer.status.code is not None and 400 <= answer.status.code < 500
    return answer.status.message


async def test_a_licensed_jurisdiction_pod_is_allowed_and_an_unlicensed_one_denied_with_403(
    webhook: Webhook,
) -> None:
    assert (await admit(webhook, review(gpu_pod("northwind")))).allowed
    _status, body = await webhook.post(VALIDATE_WORKLOADS, review(gpu_pod("globex")))
    answer = AdmissionReviewResponse.model_validate(body).response
    assert answer.status is not None and answer.status.code == 403
    assert answer.status.message.startswith("[NoLicense]")
    assert [event["reason"] for event in webhook.kube.events] == ["NoLicense"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "x"',
            "not JSON",
        ),
        (b"", "not JSON"),
        (b"[]", "expected an AdmissionReview object"),
        (b'"a string"', "expected an AdmissionReview object"),
        (b"\xff\xfe\x00garbage", "not JSON"),
    ],
    ids=["malformed", "truncated", "empty", "a-list", "a-string", "binary"],
)
async def test_a_body_that_is_not_a_json_review_gets_400_with_the_reason(
    webhook: Webhook, body: bytes, reason: str
) -> None:
    status, answer = await webhook.post(VALIDATE_WORKLOADS, body)
    assert status == 400
    assert reason in answer["error"]
    await assert_still_serving(webhook)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r.update(apiVersion="admission.k8s.io/v1beta1"), "apiVersion"),
        (lambda r: r.update(kind="ConversionReview"), "kind"),
        (lambda r: r.pop("request"), "request"),
        (lambda r: r["request"].pop("uid"), "request.uid"),
        (lambda r: r["request"].update(uid=""), "request.uid"),
        (lambda r: r["request"].update(operation="EXPLODE"), "request.operation"),
        (lambda r: r["request"].pop("userInfo"), "request.userInfo"),
        (lambda r: r["request"].update(object=["not", "an", "object"]), "request.object"),
        (lambda r: r["request"].update(kind="Pod"), "request.kind"),
        (lambda r: r["request"].update(object=None, oldObject=None), "object is missing"),
    ],
    ids=[
        "v1beta1",
        "wrong-kind",
        "no-request",
        "no-uid",
        "empty-uid",
        "bad-operation",
        "no-userinfo",
        "object-is-a-list",
        "kind-is-a-string",
        "no-object-at-all",
    ],
)
async def test_a_review_of_the_wrong_shape_gets_400_naming_the_field(
    webhook: Webhook, change: Any, field: str
) -> None:
    body = review(gpu_pod())
    change(body)
    status, answer = await webhook.post(VALIDATE_WORKLOADS, json.dumps(body))
    assert status == 400
    assert field in answer["error"]
    await assert_still_serving(webhook)


async def test_an_oversized_body_gets_413_and_the_server_keeps_serving(webhook: Webhook) -> None:
    body = review(gpu_pod())
    body["request"]["object"]["metadata"]["annotations"] = {"padding": "x" * (MAX_BODY_BYTES + 10)}
    status, answer = await webhook.post(VALIDATE_WORKLOADS, json.dumps(body))
    assert status == 413
    assert "exceeds" in answer["error"]
    await assert_still_serving(webhook)


async def test_an_unknown_path_gets_404_and_a_get_gets_405(webhook: Webhook) -> None:
    status, _ = await webhook.post("no-such-webhook", review(gpu_pod()))
    assert status == 404
    async with webhook.session.get(f"{webhook.url}/{VALIDATE_WORKLOADS}") as response:
        assert response.status == 405
    await assert_still_serving(webhook)


async def test_a_resource_we_do_not_serve_gets_404(webhook: Webhook) -> None:
    body = review(gpu_pod())
    body["request"]["resource"] = {"group": "", "version": "v1", "resource": "secrets"}
    status, _ = await webhook.post(VALIDATE_WORKLOADS, body)
    assert status == 404
    await assert_still_serving(webhook)


@pytest.mark.parametrize(
    "gpus",
    ["1e999999999", "9" * 400, "-1", "1Zi", True, [1], {"a": 1}, None, 10**30, 1e308, "NaN", "Infinity"],
    ids=[
        "huge-exponent",
        "400-digits",
        "negative",
        "bad-suffix",
        "boolean",
        "list",
        "mapping",
        "null",
        "huge-int",
        "huge-float",
        "nan",
        "infinity",
    ],
)
async def test_a_hostile_quantity_is_denied_with_the_field_and_never_allowed(
    webhook: Webhook, gpus: object
) -> None:
    for namespace in ("globex", "northwind"):
        message = denial(*await webhook.post(VALIDATE_WORKLOADS, review(gpu_pod(namespace, gpus))))
        assert message.startswith("[InvalidObject]")
        assert "nvidia.com/gpu" in message or "spec" in message
    await assert_still_serving(webhook)


async def test_ten_thousand_containers_are_judged_not_crashed(webhook: Webhook) -> None:
    pod = gpu_pod("globex")
    pod["spec"]["containers"] = [
        copy.deepcopy(pod["spec"]["containers"][0]) | {"name": f"c{i}"} for i in range(10_000)
    ]
    message = denial(*await webhook.post(VALIDATE_WORKLOADS, review(pod)))
    assert message.startswith("[NoLicense]")
    assert "10,000 x" in message
    await assert_still_serving(webhook)


async def test_a_deeply_nested_object_gets_400(webhook: Webhook) -> None:
    pod = gpu_pod("globex")
    nested: dict[str, Any] = {}
    cursor = nested
    for _ in range(5000):
        cursor["x"] = {}
        cursor = cursor["x"]
    pod["metadata"]["annotations"] = {"nested": "no"}
    pod["spec"]["deep"] = nested
    text = json.dumps(review(pod)) if False else _deep_json(review(pod), 5000)
    status, _answer = await webhook.post(VALIDATE_WORKLOADS, text)
    assert status == 400
    await assert_still_serving(webhook)


def _deep_json(body: dict[str, Any], depth: int) -> str:
    # json.dumps itself recurses; build the deep part as text.
    body["request"]["object"]["spec"].pop("deep", None)
    text = json.dumps(body)
    deep = '{"x":' * depth + "{}" + "}" * depth
    return text.replace('"spec": {', f'"spec": {{"deep": {deep}, ', 1)


@pytest.mark.parametrize(
    "spec",
    [
        {"containers": "not-a-list"},
        {"containers": [{"name": "c", "resources": {"limits": "eight"}}]},
        {
            "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
            "nodeSelector": [1],
        },
        {
            "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "Explode"}]}]
                    }
                }
            },
        },
    ],
    ids=["containers-not-a-list", "limits-not-a-map", "nodeselector-a-list", "bad-operator"],
)
async def test_an_object_of_the_wrong_types_is_denied_naming_the_field(
    webhook: Webhook, spec: dict[str, Any]
) -> None:
    pod = gpu_pod("globex")
    pod["spec"] = spec
    message = denial(*await webhook.post(VALIDATE_WORKLOADS, review(pod)))
    assert message.startswith("[InvalidObject]") and "spec" in message
    await assert_still_serving(webhook)


async def test_a_negative_replica_count_is_denied(webhook: Webhook) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "globex"},
        "spec": {"replicas": -5, "template": {"spec": gpu_pod()["spec"]}},
    }
    message = denial(*await webhook.post(VALIDATE_WORKLOADS, review(deployment)))
    assert message.startswith("[InvalidObject]") and "replicas" in message


async def test_the_mutating_webhook_answers_a_hostile_object_without_a_patch(webhook: Webhook) -> None:
    status, body = await webhook.post(MUTATE_WORKLOADS, review(gpu_pod("globex", "1e999999999")))
    assert status == 200
    answer = AdmissionReviewResponse.model_validate(body).response
    assert answer.patch is None  # the validating webhook denies it
    await assert_still_serving(webhook)


async def test_a_tenant_cannot_set_its_namespace_tenant_label_but_an_admin_can(webhook: Webhook) -> None:
    old = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "globex"}}
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"computegate.io/tenant": "northwind"}
    message = denial(*await webhook.post(VALIDATE_NAMESPACES, review(new, operation="UPDATE", old=old)))
    assert message.startswith("[TenantLabelProtected]")
    admin = review(new, operation="UPDATE", old=old, user="root", groups=("system:masters",))
    _status, body = await webhook.post(VALIDATE_NAMESPACES, admin)
    assert AdmissionReviewResponse.model_validate(body).response.allowed


async def test_a_burst_of_bad_requests_leaves_the_server_serving(webhook: Webhook) -> None:
    for body in [b"{", b"[]", b"null", json.dumps({"apiVersion": "admission.k8s.io/v1"}).encode()] * 25:
        status, _ = await webhook.post(VALIDATE_WORKLOADS, body)
        assert 400 <= status < 500
    await assert_still_serving(webhook)


async def test_a_changed_certificate_is_served_without_a_restart(webhook: Webhook) -> None:
    generate_serving_files(webhook.cert_dir, ["127.0.0.1"])  # a new CA and a new serving cert
    for _ in range(50):
        if webhook.server.reloads:
            break
        await asyncio.sleep(0.1)
    assert webhook.server.reloads == 1
    context = ssl.create_default_context(cafile=str(webhook.cert_dir / "ca.crt"))
    connector = aiohttp.TCPConnector(ssl=context)
    url = f"{webhook.url}/{VALIDATE_WORKLOADS}"
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(url, json=review(gpu_pod("northwind"))) as response,
    ):
        assert response.status == 200


async def _mutated(webhook: Webhook, obj: dict[str, Any]) -> dict[str, Any]:
    status, body = await webhook.post(MUTATE_WORKLOADS, review(obj))
    assert status == 200, body
    response = AdmissionReviewResponse.model_validate(body).response
    assert response.allowed and response.patch_type == "JSONPatch" and response.patch is not None
    operations = json.loads(base64.b64decode(response.patch))
    result: dict[str, Any] = jsonpatch.JsonPatch(operations).apply(obj)
    return result


@pytest.mark.parametrize("has_annotations", [True, False], ids=["annotated", "bare"])
async def test_the_mutating_patch_stamps_a_pod_and_drops_forged_stamps(
    webhook: Webhook, has_annotations: bool
) -> None:
    pod = gpu_pod("northwind")
    if has_annotations:
        pod["metadata"]["annotations"] = {"computegate.io/license": "forged", "team/a~b": "kept"}
    mutated = await _mutated(webhook, pod)
    annotations = mutated["metadata"]["annotations"]
    assert annotations["computegate.io/code"] == "JurisdictionAllowed"
    assert "computegate.io/license" not in annotations  # no license admitted it
    assert annotations.get("team/a~b") == ("kept" if has_annotations else None)


async def test_the_mutating_patch_strips_forged_stamps_from_a_cronjobs_pod_template(webhook: Webhook) -> None:
    template = {
        "metadata": {"annotations": {"computegate.io/decision": "Admitted", "keep": "me"}},
        "spec": gpu_pod("northwind")["spec"],
    }
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly", "namespace": "northwind"},
        "spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": template}}},
    }
    mutated = await _mutated(webhook, cronjob)
    inner = mutated["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"]
    assert inner == {"keep": "me"}
    assert mutated["metadata"]["annotations"]["computegate.io/decision"] == "Admitted"


async def test_the_operator_keeps_stamped_pods_and_unstamped_ones_that_may_use_accelerators(
    webhook: Webhook,
) -> None:
    from dataclasses import replace

    from computegate.engine.consumption import live

    runtime = webhook.runtime
    cpu_only = {
        "metadata": {"name": "web", "namespace": "northwind"},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]},
    }
    before_install = gpu_pod("northwind", name="never-judged")  # ran before the webhooks were there
    allowed = gpu_pod("northwind", name="no-license-needed")
    allowed["metadata"]["annotations"] = {"computegate.io/code": "JurisdictionAllowed"}
    licensed = gpu_pod("globex", name="licensed")
    licensed["metadata"]["annotations"] = {
        "computegate.io/code": "Licensed",
        "computegate.io/license": "globex-lic",
    }
    for body in (cpu_only, before_install, allowed, licensed):
        runtime.upsert("Pod", body)
    assert set(runtime.state.pods) == {
        ("globex", "licensed"),
        ("northwind", "no-license-needed"),
        ("northwind", "never-judged"),
    }
    assert live(runtime.state, "globex-lic").accelerators == 1
    del licensed["metadata"]["annotations"]  # a stamp gone: still judged, no longer consuming
    runtime.upsert("Pod", licensed)
    assert ("globex", "licensed") in runtime.state.pods
    assert live(runtime.state, "globex-lic").accelerators == 0
    runtime.upsert("Pod", {**cpu_only, "metadata": {"name": "never-judged", "namespace": "northwind"}})
    assert ("northwind", "never-judged") not in runtime.state.pods  # now CPU-only: forgotten
    runtime.reviewer = replace(runtime.reviewer, exempt_namespaces=frozenset({"northwind"}))
    runtime.upsert("Pod", allowed)  # stamped: kept wherever it runs
    runtime.upsert("Pod", before_install)  # unstamped, in a namespace the registration exempts
    assert ("northwind", "never-judged") not in runtime.state.pods


@pytest.mark.parametrize(
    ("spec", "kept"),
    [
        ({"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": 1}}}]}, True),
        ({"initContainers": [{"name": "c", "resources": {"requests": {"amd.com/gpu": 1}}}]}, True),
        ({"containers": [{"name": "c", "env": [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}]}]}, True),
        ({"containers": [{"name": "c", "securityContext": {"privileged": True}}]}, True),
        ({"containers": [{"name": "c"}], "resourceClaims": [{"name": "gpu"}]}, True),
        ({"containers": [{"name": "c"}], "volumes": [{"name": "dev", "hostPath": {"path": "/dev"}}]}, True),
        ({"containers": [{"name": "c"}], "runtimeClassName": "nvidia"}, True),
        ({"containers": [{"name": "c", "resources": {"limits": {"cpu": "2", "memory": "1Gi"}}}]}, False),
        ({"containers": [{"name": "c", "env": [{"name": "HOME", "value": "/"}]}]}, False),
        ({"containers": ["not an object"]}, False),
    ],
)
def test_which_unstamped_pods_may_use_accelerators(spec: dict[str, Any], kept: bool) -> None:
    from computegate.webhook.runtime import may_use_accelerators

    assert may_use_accelerators({"metadata": {"name": "p"}, "spec": spec}) is kept
    cdi = {"metadata": {"annotations": {"cdi.k8s.io/gpu": "nvidia.com/gpu=0"}}, "spec": spec}
    assert may_use_accelerators(cdi)  # devices through the Container Device Interface
