"""The pod LIST and WATCH of our own (``webhook.podwatch``) against a stand-in API server:
pages followed, watch events applied, an expired watch listed again, and the pods a new LIST no
longer returns forgotten."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp.web
from kubernetes import client

from computegate.webhook.podwatch import PodWatch


def _pod(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": version}}


async def test_pages_events_and_an_expired_watch_are_followed(unused_tcp_port: int) -> None:
    lists = 0
    watches: list[str] = []

    async def pods(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        nonlocal lists
        if request.query.get("watch"):
            watches.append(request.query["resourceVersion"])
            response = aiohttp.web.StreamResponse()
            await response.prepare(request)
            if len(watches) == 1:
                events = [
                    {"type": "ADDED", "object": _pod("c", "11")},
                    {"type": "DELETED", "object": _pod("a", "13")},
                    {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "14"}}},
                ]
                for event in events:  # split across writes, as a real stream may be
                    text = json.dumps(event).encode() + b"\n"
                    await response.write(text[:7])
                    await response.write(text[7:])
            else:
                await response.write(json.dumps({"type": "ERROR", "object": {"code": 410}}).encode() + b"\n")
            await response.write_eof()
            return response
        lists += 1
        if lists == 1 and not request.query.get("continue"):
            body = {"items": [_pod("a", "1")], "metadata": {"continue": "next", "resourceVersion": "10"}}
        elif lists == 2:
            body = {"items": [_pod("b", "2")], "metadata": {"resourceVersion": "10"}}
        else:
            body = {"items": [_pod("c", "20")], "metadata": {"resourceVersion": "20"}}
        return aiohttp.web.json_response(body)

    app = aiohttp.web.Application()
    app.router.add_get("/api/v1/pods", pods)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    configuration = client.Configuration(host=f"http://127.0.0.1:{unused_tcp_port}")
    configuration.verify_ssl = False
    kept: dict[str, str] = {}
    listed: list[set[tuple[str, str]]] = []

    def on_pod(kind: str, body: Any) -> None:
        name = body["metadata"]["name"]
        if kind == "DELETED":
            kept.pop(name, None)
        else:
            kept[name] = body["metadata"]["resourceVersion"]

    def on_listed(keys: set[tuple[str, str]]) -> None:
        listed.append(keys)
        for name in [n for n in kept if ("ns", n) not in keys]:
            del kept[name]

    watch = PodWatch(configuration, on_pod=on_pod, on_listed=on_listed)
    task = asyncio.ensure_future(watch.run())
    try:
        for _ in range(100):
            if len(listed) == 2:
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await runner.cleanup()
    assert watch.synced.is_set()
    assert listed[0] == {("ns", "a"), ("ns", "b")}  # both pages of the first LIST
    assert watches[:2] == ["10", "14"]  # from the LIST's version, then from the bookmark
    assert listed[1] == {("ns", "c")}  # the 410 made it list again
    assert kept == {"c": "20"}  # "a" deleted by the watch, "b" gone from the new LIST
