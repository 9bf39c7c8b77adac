"""The webhook's HTTPS server, in process, with the operator's runtime behind it.

No API server: the Kubernetes calls (Events, reading a controller) go to a recorder.
Everything between the socket and the engine is the production code.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from computegate.catalog import builtin_catalog
from computegate.engine import ClusterState
from computegate.statefiles import Document, parse_state_object
from computegate.webhook.certs import generate_serving_files
from computegate.webhook.configuration import WEBHOOK_PATHS
from computegate.webhook.ledger import LedgerWriter
from computegate.webhook.observe import Metrics, configure_decision_log
from computegate.webhook.review import Reviewer
from computegate.webhook.runtime import Runtime
from computegate.webhook.server import WebhookServer

STATE = """
apiVersion: v1
kind: Node
metadata: {name: gpu-h100, labels: {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}}
status: {capacity: {nvidia.com/gpu: "8"}}
---
apiVersion: computegate.io/v1alpha1
kind: Tenant
metadata: {name: northwind}
spec: {jurisdiction: US, kyc: {status: Verified}, namespaces: [northwind]}
---
apiVersion: computegate.io/v1alpha1
kind: Tenant
metadata: {name: globex}
spec: {jurisdiction: SA, kyc: {status: Verified}, namespaces: [globex]}
"""


@dataclass
class RecordingKube:
    """Stands in for the API calls: Events are recorded, nothing else is needed here."""

    events: list[dict[str, Any]] = field(default_factory=list)

    async def post_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    async def read_controller(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return None


@dataclass
class Webhook:
    url: str
    session: aiohttp.ClientSession
    runtime: Runtime
    kube: RecordingKube
    server: WebhookServer
    cert_dir: Path

    async def post(self, path: str, body: bytes | str | dict[str, Any]) -> tuple[int, Any]:
        if isinstance(body, dict):
            response = await self.session.post(f"{self.url}/{path}", json=body)
        else:
            data = io.BytesIO(body.encode() if isinstance(body, str) else body)
            response = await self.session.post(
                f"{self.url}/{path}", data=data, headers={"Content-Type": "application/json"}
            )
        async with response:
            try:
                return response.status, await response.json(content_type=None)
            except ValueError:
                return response.status, await response.text()


def state_from(text: str) -> ClusterState:
    state = ClusterState(builtin_catalog())
    for index, body in enumerate(yaml.safe_load_all(text), start=1):
        state.upsert(parse_state_object(Document(Path("state"), index, body)))
    return state


@pytest.fixture
async def webhook(tmp_path: Path, unused_tcp_port: int) -> AsyncIterator[Webhook]:
    files = generate_serving_files(tmp_path / "certs", ["127.0.0.1"])
    server = WebhookServer(
        files=files, paths=WEBHOOK_PATHS, addr="127.0.0.1", port=unused_tcp_port, reload_interval=0.1
    )
    state = state_from(STATE)
    kube = RecordingKube()
    metrics = Metrics()
    runtime = Runtime(
        state=state,
        reviewer=Reviewer(state),
        metrics=metrics,
        decisions=configure_decision_log(),
        kube=kube,  # type: ignore[arg-type]
        server=server,
        ledger=LedgerWriter(kube, state, metrics),  # type: ignore[arg-type]
    )
    runtime.synced.set()
    serving = asyncio.ensure_future(server.serve(runtime.admit))
    await asyncio.wait_for(server.listening.wait(), timeout=10)
    context = ssl.create_default_context(cafile=str(files.ca))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        yield Webhook(
            f"https://127.0.0.1:{unused_tcp_port}", session, runtime, kube, server, tmp_path / "certs"
        )
    serving.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await serving
