"""The health port: ``/healthz`` (the process answers), ``/readyz`` (state synced and serving),
``/metrics`` (Prometheus). Plain HTTP on its own port, apart from the TLS webhook port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp.web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


@asynccontextmanager
async def serve_health(
    *, addr: str, port: int, ready: Callable[[], bool], registry: CollectorRegistry
) -> AsyncIterator[int]:
    """Serve until the context exits; yields the bound port (``port=0`` picks a free one)."""

    async def healthz(_: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(text="ok\n")

    async def readyz(_: aiohttp.web.Request) -> aiohttp.web.Response:
        if ready():
            return aiohttp.web.Response(text="ok\n")
        return aiohttp.web.Response(status=503, text="not ready: the watches have not synced yet\n")

    async def metrics(_: aiohttp.web.Request) -> aiohttp.web.Response:
        body = generate_latest(registry)
        return aiohttp.web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = aiohttp.web.Application()
    app.add_routes(
        [
            aiohttp.web.get("/healthz", healthz),
            aiohttp.web.get("/readyz", readyz),
            aiohttp.web.get("/metrics", metrics),
        ]
    )
    runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = aiohttp.web.TCPSite(runner, addr, port, reuse_address=True)
        await site.start()
        server = site._server  # aiohttp exposes the bound sockets only here
        sockets = getattr(server, "sockets", None) or []
        yield int(sockets[0].getsockname()[1]) if sockets else port
    finally:
        await runner.cleanup()
