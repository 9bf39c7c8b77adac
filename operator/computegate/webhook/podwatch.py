"""The pods, listed and watched by us rather than by Kopf.

Kopf's indexes keep a toggle per object and wake every waiting one on each change, so their
start-up grows faster than the square of the objects: at 2,000 pods a replica took 84-114 s to
become ready, and at 100,000 it never did (docs/benchmarks.md). Pods are by far the most
numerous kind, and the operator keeps only the few a decision stamped, so here they are read
as the API server's own clients read them: a paginated LIST, then a WATCH from its
resourceVersion (bookmarks on), again from a fresh LIST when the watch expires (410 Gone). The
bodies stay raw JSON until ``on_pod`` decides to keep one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

logger = logging.getLogger(__name__)

PODS = "/api/v1/pods"
PAGE = 500
WATCH_SECONDS = 300

# (event type: "ADDED", "MODIFIED" or "DELETED"; the pod's raw body)
OnPod = Callable[[str, Mapping[str, Any]], None]
# The (namespace, name) of every pod a complete LIST returned: the rest are gone.
OnListed = Callable[[set[tuple[str, str]]], None]


class _Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


@dataclass
class PodWatch:
    configuration: Any  # kubernetes.client.Configuration: the operator's own credentials
    on_pod: OnPod
    on_listed: OnListed
    synced: asyncio.Event = field(default_factory=asyncio.Event)

    def _ssl(self) -> ssl.SSLContext | bool:
        c = self.configuration
        if not c.verify_ssl:
            return False
        context = (
            ssl.create_default_context(cafile=c.ssl_ca_cert)
            if c.ssl_ca_cert
            else ssl.create_default_context()
        )
        if c.cert_file:
            context.load_cert_chain(c.cert_file, c.key_file)
        return context

    def _headers(self) -> dict[str, str]:
        # Read each time: an in-cluster token is rotated on disk and the client's hook re-reads it.
        c = self.configuration
        token = c.get_api_key_with_prefix("authorization") or c.get_api_key_with_prefix("BearerToken")
        if token and not token.lower().startswith("bearer "):
            token = f"Bearer {token}"
        return {"Accept": "application/json", **({"Authorization": token} if token else {})}

    async def run(self) -> None:
        """List and watch until cancelled; ``synced`` is set after the first complete LIST."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=WATCH_SECONDS + 30)
        connector = aiohttp.TCPConnector(ssl=self._ssl())
        async with aiohttp.ClientSession(
            self.configuration.host, connector=connector, timeout=timeout
        ) as session:
            while True:
                try:
                    version = await self._list(session)
                    self.synced.set()
                    while True:
                        version = await self._watch(session, version)
                except _Expired:
                    logger.info("The pod watch expired; listing the pods again")
                except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as error:
                    logger.warning("Listing or watching pods failed (retrying in 1 s): %s", error)
                    await asyncio.sleep(1)

    async def _list(self, session: aiohttp.ClientSession) -> str:
        seen: set[tuple[str, str]] = set()
        token = ""
        while True:
            params = {"limit": str(PAGE), **({"continue": token} if token else {})}
            async with session.get(PODS, params=params, headers=self._headers()) as response:
                if response.status == 410:
                    raise _Expired
                response.raise_for_status()
                page = json.loads(await response.read())
            for pod in page.get("items") or ():
                meta = pod.get("metadata") or {}
                seen.add((str(meta.get("namespace") or ""), str(meta.get("name") or "")))
                self.on_pod("ADDED", pod)
            token = str((page.get("metadata") or {}).get("continue") or "")
            if not token:
                self.on_listed(seen)
                return str((page.get("metadata") or {}).get("resourceVersion") or "")

    async def _watch(self, session: aiohttp.ClientSession, version: str) -> str:
        params = {
            "watch": "1",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
            "resourceVersion": version,
        }
        async with session.get(PODS, params=params, headers=self._headers()) as response:
            if response.status == 410:
                raise _Expired
            response.raise_for_status()
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        version = self._event(json.loads(line), version)
        return version

    def _event(self, event: Mapping[str, Any], version: str) -> str:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _Expired
            raise ValueError(f"the pod watch failed: {obj.get('message') or obj}")
        new_version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            self.on_pod(str(kind), obj)
        return new_version
