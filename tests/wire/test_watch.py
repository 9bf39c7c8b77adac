"""Our own LIST and WATCH of the state (``webhook.watch``) against a stand-in API server: pages
followed, watch events applied, an expired watch listed again, a kind read in the version its
group prefers or not at all when the group is not served, and, through the ``Runtime``, the
objects a new LIST no longer returns removed from the state, readiness only once every kind
has been listed."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp.web
import pytest
from kubernetes import client

from computegate.catalog import builtin_catalog
from computegate.engine import ClusterState
from computegate.vocabulary import STATE_KINDS
from computegate.webhook.observe import Metrics, configure_decision_log
from computegate.webhook.review import Reviewer
from computegate.webhook.runtime import Runtime
from computegate.webhook.watch import Watches

KIND = {kind.kind: kind for kind in STATE_KINDS}
Handler = Callable[[aiohttp.web.Request], Awaitable[aiohttp.web.StreamResponse]]


def _object(name: str, version: str, namespace: str | None = "ns", **fields: Any) -> dict[str, Any]:
    meta = {"name": name, "resourceVersion": version, **({"namespace": namespace} if namespace else {})}
    return {"metadata": meta, **fields}


def _tenant(name: str, version: str) -> dict[str, Any]:
    spec = {"jurisdiction": "US", "kyc": {"status": "Verified"}, "namespaces": []}
    return _object(name, version, None, spec=spec)


async def _events(request: aiohttp.web.Request, *events: dict[str, Any]) -> aiohttp.web.StreamResponse:
    response = aiohttp.web.StreamResponse()
    await response.prepare(request)
    for event in events:  # split across writes, as a real stream may be
        text = json.dumps(event).encode() + b"\n"
        await response.write(text[:7])
        await response.write(text[7:])
    await response.write_eof()
    return response


async def _held(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
    """A watch with nothing to say, which ends as a real one does when its time is up."""
    response = aiohttp.web.StreamResponse()
    await response.prepare(request)
    await asyncio.sleep(0.5)
    await response.write_eof()
    return response


@contextlib.asynccontextmanager
async def _api_server(port: int, handler: Handler) -> AsyncIterator[client.Configuration]:
    app = aiohttp.web.Application()
    app.router.add_route("GET", "/{path:.*}", handler)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    configuration = client.Configuration(host=f"http://127.0.0.1:{port}")
    configuration.verify_ssl = False
    try:
        yield configuration
    finally:
        await runner.cleanup()


async def _run_until(watches: Watches, done: Callable[[], bool]) -> None:
    task = asyncio.ensure_future(watches.run())
    try:
        for _ in range(100):
            if done():
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_pages_events_and_an_expired_watch_are_followed(unused_tcp_port: int) -> None:
    lists = 0
    watches: list[str] = []

    async def pods(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        nonlocal lists
        assert request.path == "/api/v1/pods"
        if request.query.get("watch"):
            watches.append(request.query["resourceVersion"])
            if len(watches) == 1:
                return await _events(
                    request,
                    {"type": "ADDED", "object": _object("c", "11")},
                    {"type": "DELETED", "object": _object("a", "13")},
                    {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "14"}}},
                )
            return await _events(request, {"type": "ERROR", "object": {"code": 410}})
        lists += 1
        if lists == 1 and not request.query.get("continue"):
            body = {"items": [_object("a", "1")], "metadata": {"continue": "next", "resourceVersion": "10"}}
        elif lists == 2:
            body = {"items": [_object("b", "2")], "metadata": {"resourceVersion": "10"}}
        else:
            body = {"items": [_object("c", "20")], "metadata": {"resourceVersion": "20"}}
        return aiohttp.web.json_response(body)

    kept: dict[str, str] = {}
    listed: list[tuple[str, set[tuple[str, str]]]] = []

    def on_event(kind: str, event_type: str, body: Any) -> None:
        name = body["metadata"]["name"]
        if event_type == "DELETED":
            kept.pop(name, None)
        else:
            kept[name] = body["metadata"]["resourceVersion"]

    def on_listed(kind: str, keys: set[tuple[str, str]]) -> None:
        listed.append((kind, keys))
        for name in [n for n in kept if ("ns", n) not in keys]:
            del kept[name]

    async with _api_server(unused_tcp_port, pods) as configuration:
        watch = Watches(configuration, [KIND["Pod"]], on_event=on_event, on_listed=on_listed)
        await _run_until(watch, lambda: len(listed) >= 2)
    assert listed[0] == ("Pod", {("ns", "a"), ("ns", "b")})  # both pages of the first LIST
    assert watches[:2] == ["10", "14"]  # from the LIST's version, then from the bookmark
    assert listed[1] == ("Pod", {("ns", "c")})  # the 410 made it list again
    assert kept == {"c": "20"}  # "a" deleted by the watch, "b" gone from the new LIST


@pytest.mark.parametrize("served", [True, False])
async def test_a_group_is_read_in_its_preferred_version_or_not_at_all(
    unused_tcp_port: int, served: bool
) -> None:
    paths: list[str] = []

    async def api(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        paths.append(request.path)
        if request.path == "/apis/resource.k8s.io":
            if not served:
                raise aiohttp.web.HTTPNotFound
            group = {"name": "resource.k8s.io", "preferredVersion": {"version": "v1"}}
            return aiohttp.web.json_response({"kind": "APIGroup", **group})
        if request.path != "/apis/resource.k8s.io/v1/resourceclaims":
            raise aiohttp.web.HTTPNotFound
        if request.query.get("watch"):
            return await _held(request)
        claim = _object("gpu", "3", spec={"devices": {"requests": []}})
        return aiohttp.web.json_response({"items": [claim], "metadata": {"resourceVersion": "3"}})

    events: list[tuple[str, str, str]] = []
    listed: list[tuple[str, set[tuple[str, str]]]] = []
    async with _api_server(unused_tcp_port, api) as configuration:
        watches = Watches(
            configuration,
            [KIND["ResourceClaim"]],
            on_event=lambda kind, event_type, body: events.append(
                (kind, event_type, body["metadata"]["name"])
            ),
            on_listed=lambda kind, keys: listed.append((kind, keys)),
        )
        await _run_until(watches, lambda: bool(listed) and (not served or len(paths) >= 3))
    if served:
        assert events == [("ResourceClaim", "ADDED", "gpu")]
        assert listed == [("ResourceClaim", {("ns", "gpu")})]
        assert paths[:3] == ["/apis/resource.k8s.io", *["/apis/resource.k8s.io/v1/resourceclaims"] * 2]
    else:  # a cluster without Dynamic Resource Allocation: none, and listed at once
        assert events == []
        assert listed == [("ResourceClaim", set())]
        assert paths == ["/apis/resource.k8s.io"]


async def test_a_failed_list_is_tried_again_after_a_backoff(unused_tcp_port: int) -> None:
    asked: list[float] = []

    async def nodes(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        if request.query.get("watch"):
            return await _held(request)
        asked.append(asyncio.get_running_loop().time())
        if len(asked) == 1:
            raise aiohttp.web.HTTPServiceUnavailable
        node = _object("gpu-1", "4", None)
        return aiohttp.web.json_response({"items": [node], "metadata": {"resourceVersion": "4"}})

    listed: list[tuple[str, set[tuple[str, str]]]] = []
    async with _api_server(unused_tcp_port, nodes) as configuration:
        watches = Watches(
            configuration, [KIND["Node"]], on_event=lambda *_: None, on_listed=lambda *a: listed.append(a)
        )
        await _run_until(watches, lambda: bool(listed))
    assert listed == [("Node", {("", "gpu-1")})]
    assert len(asked) == 2 and asked[1] - asked[0] >= 0.9  # the first backoff is 1 s


async def test_deep_objects_and_a_failing_handler_do_not_stop_the_reader(unused_tcp_port: int) -> None:
    """The API server accepts JSON nested 10,000 levels deep (a claim's opaque parameters); an
    unexpected error in handling one object is logged, and the kind is listed again."""
    deep: Any = "leaf"
    for _ in range(4000):
        deep = [deep]
    claim = _object("deep", "5", spec={"devices": {"config": [{"opaque": {"parameters": {"a": deep}}}]}})

    async def claims(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        if request.path == "/apis/resource.k8s.io":
            return aiohttp.web.json_response({"preferredVersion": {"version": "v1"}})
        if request.query.get("watch"):
            return await _events(request, {"type": "MODIFIED", "object": {**claim, "status": {}}})
        return aiohttp.web.json_response({"items": [claim], "metadata": {"resourceVersion": "5"}})

    seen: list[str] = []
    listed: list[tuple[str, set[tuple[str, str]]]] = []

    def on_event(kind: str, event_type: str, body: Any) -> None:
        seen.append(event_type)
        if len(seen) == 1:
            raise KeyError("a bug in handling one object")

    async with _api_server(unused_tcp_port, claims) as configuration:
        watches = Watches(
            configuration, [KIND["ResourceClaim"]], on_event=on_event, on_listed=lambda *a: listed.append(a)
        )
        await _run_until(watches, lambda: "MODIFIED" in seen)
    assert seen[:2] == ["ADDED", "ADDED"]  # the first LIST failed in the handler; listed again
    assert listed[0] == ("ResourceClaim", {("ns", "deep")})
    assert "MODIFIED" in seen  # the deep object's watch event was decoded too


def _runtime() -> Runtime:
    state = ClusterState(builtin_catalog())
    return Runtime(
        state=state,
        reviewer=Reviewer(state),
        metrics=Metrics(),
        decisions=configure_decision_log(),
        kube=None,  # type: ignore[arg-type]  # no API call is made here
        server=None,  # type: ignore[arg-type]
        ledger=None,
    )


async def test_what_a_new_list_does_not_return_is_removed_from_the_state(unused_tcp_port: int) -> None:
    tenant_lists = 0
    tenant_listed = asyncio.Event()
    namespace_deleted = False

    async def api(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        nonlocal tenant_lists, namespace_deleted
        watch = bool(request.query.get("watch"))
        if request.path == "/apis/computegate.io/v1alpha1/tenants":
            if watch and tenant_lists == 1:  # the first watch expires: list again
                return await _events(request, {"type": "ERROR", "object": {"code": 410}})
            if watch:
                return await _held(request)
            tenant_lists += 1
            items = [_tenant("t1", "1"), _tenant("t2", "2")] if tenant_lists == 1 else [_tenant("t2", "5")]
            if tenant_lists == 2:
                tenant_listed.set()
            return aiohttp.web.json_response({"items": items, "metadata": {"resourceVersion": "5"}})
        if request.path == "/api/v1/namespaces":
            if watch and not namespace_deleted:
                namespace_deleted = True
                return await _events(request, {"type": "DELETED", "object": _object("old", "7", None)})
            if watch:
                return await _held(request)
            items = [_object("old", "1", None), _object("new", "2", None)]
            return aiohttp.web.json_response({"items": items, "metadata": {"resourceVersion": "6"}})
        if request.path == "/apis/resource.k8s.io":
            raise aiohttp.web.HTTPNotFound  # no Dynamic Resource Allocation here
        if watch:
            return await _held(request)
        return aiohttp.web.json_response({"items": [], "metadata": {"resourceVersion": "1"}})

    runtime = _runtime()
    async with _api_server(unused_tcp_port, api) as configuration:
        watches = Watches(configuration, STATE_KINDS, on_event=runtime.watched, on_listed=runtime.listed)
        await _run_until(watches, lambda: tenant_listed.is_set() and "old" not in runtime.state.namespaces)
    assert runtime.synced.is_set()
    assert set(runtime.state.tenants) == {"t2"}  # "t1" was not in the second LIST
    assert set(runtime.state.namespaces) == {"new"}  # "old" deleted by the watch
    assert runtime.licenses_changed.is_set()


def test_the_state_is_synced_only_once_every_kind_is_listed() -> None:
    runtime = _runtime()
    runtime.watched("Tenant", "ADDED", _tenant("t1", "1"))
    *first, last = STATE_KINDS
    for kind in first:
        runtime.listed(kind.kind, {("", "t1")} if kind.kind == "Tenant" else set())
    assert not runtime.synced.is_set()
    runtime.listed("Tenant", set())  # listed again, without "t1": still one kind missing
    assert not runtime.synced.is_set() and "t1" not in runtime.state.tenants
    runtime.listed(last.kind, set())
    assert runtime.synced.is_set()


def test_every_kind_has_a_path_in_each_version() -> None:
    paths = {kind.kind: kind.path(kind.version or "v1") for kind in STATE_KINDS}
    assert paths["Pod"] == "/api/v1/pods"
    assert paths["Tenant"] == "/apis/computegate.io/v1alpha1/tenants"
    assert paths["ResourceClaimTemplate"] == "/apis/resource.k8s.io/v1/resourceclaimtemplates"
