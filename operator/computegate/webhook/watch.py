"""The cluster's state, listed and watched by us rather than by Kopf.

Kopf 1.45's indexes keep a toggle per object in one ``asyncio.Condition`` and wake every waiting
object on each change, so their start-up grows faster than the square of the objects: with
1,000 tenants, 2,000 namespaces and 2,000 licenses a replica was ready only after 83 s, and at
a full-size cluster's pods never (docs/benchmarks.md). So every kind of ``STATE_KINDS`` is read
here as the API server's own clients read it: a paginated LIST, then a WATCH from its
resourceVersion (bookmarks on), again from a fresh LIST when the watch expires (410 Gone) or
fails (after a backoff). A complete LIST reports every key it returned (``on_listed``), so
that what it no longer returns can be forgotten. Bodies stay raw JSON until the runtime
decides to keep one (most pods it does not even parse).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from computegate.vocabulary import StateKind

logger = logging.getLogger(__name__)

PAGE = 500
JSON_DEPTH = 10_100  # the API server's limit (Go's decoder: 10,000), and room for our frames
WATCH_SECONDS = 300
BACKOFF_SECONDS = (1, 2, 5, 10)  # after consecutive failures; the last one repeats

# (kind, event type: "ADDED", "MODIFIED" or "DELETED", the object's raw body)
OnEvent = Callable[[str, str, Mapping[str, Any]], None]
# (kind, the (namespace or "", name) of every object a complete LIST returned): the rest are gone.
OnListed = Callable[[str, set[tuple[str, str]]], None]


class _Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


def object_key(body: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace or "", name): how the state keys an object of any kind."""
    meta = body.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


@dataclass
class Watches:
    """One LIST and WATCH per kind, over one connection pool, as the operator itself."""

    configuration: Any  # kubernetes.client.Configuration: the operator's own credentials
    kinds: Iterable[StateKind]
    on_event: OnEvent
    on_listed: OnListed

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

    def headers(self) -> dict[str, str]:
        # Read each time: an in-cluster token is rotated on disk and the client's hook re-reads it.
        c = self.configuration
        token = c.get_api_key_with_prefix("authorization") or c.get_api_key_with_prefix("BearerToken")
        if token and not token.lower().startswith("bearer "):
            token = f"Bearer {token}"
        return {"Accept": "application/json", **({"Authorization": token} if token else {})}

    async def run(self) -> None:
        """List and watch every kind until cancelled."""
        # The API server accepts JSON nested up to 10,000 levels (a claim's opaque parameters,
        # say); Python's decoder stops at the recursion limit, 1,000 by default.
        sys.setrecursionlimit(max(sys.getrecursionlimit(), JSON_DEPTH))
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=WATCH_SECONDS + 30)
        connector = aiohttp.TCPConnector(ssl=self._ssl())
        async with aiohttp.ClientSession(
            self.configuration.host, connector=connector, timeout=timeout
        ) as session:
            await asyncio.gather(
                *(
                    ListWatch(kind, session, self.headers, self.on_event, self.on_listed).run()
                    for kind in self.kinds
                )
            )


@dataclass
class ListWatch:
    """The objects of one kind: listed, then watched, listed again whenever the watch breaks."""

    kind: StateKind
    session: aiohttp.ClientSession
    headers: Callable[[], dict[str, str]]
    on_event: OnEvent
    on_listed: OnListed

    async def run(self) -> None:
        failures = 0
        version = self.kind.version
        while True:
            try:
                if version is None:
                    version = await self._preferred_version()
                    if version is None:
                        logger.info("%s is not served: no %s", self.kind.group, self.kind.plural)
                        self.on_listed(self.kind.kind, set())
                        return
                path = self.kind.path(version)
                resource_version = await self._list(path)
                while True:
                    resource_version = await self._watch(path, resource_version)
                    failures = 0  # a watch that lasted its time: the connection is sound
            except _Expired:
                logger.info("The watch of %s expired; listing them again", self.kind.plural)
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as error:
                failures = await self._back_off(failures, error)
            except Exception as error:  # one kind's reader never dies: the state would freeze
                logger.exception("Reading %s failed unexpectedly", self.kind.plural)
                failures = await self._back_off(failures, error)

    async def _back_off(self, failures: int, error: BaseException) -> int:
        delay = BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS) - 1)]
        logger.warning("Listing or watching %s failed (retrying in %d s): %s", self.kind.plural, delay, error)
        await asyncio.sleep(delay)
        return failures + 1

    async def _get(self, path: str, params: Mapping[str, str]) -> aiohttp.ClientResponse:
        return await self.session.get(path, params=params, headers=self.headers())

    async def _preferred_version(self) -> str | None:
        """The group's preferred version, as Kopf and kubectl choose it; None: not served."""
        async with await self._get(f"/apis/{self.kind.group}", {}) as response:
            if response.status == 404:
                return None
            response.raise_for_status()
            group = json.loads(await response.read())
        return str((group.get("preferredVersion") or {}).get("version") or "") or None

    async def _list(self, path: str) -> str:
        seen: set[tuple[str, str]] = set()
        token = ""
        while True:
            params = {"limit": str(PAGE), **({"continue": token} if token else {})}
            async with await self._get(path, params) as response:
                if response.status == 410:  # the continue token expired: start over
                    raise _Expired
                response.raise_for_status()
                page = json.loads(await response.read())
            for item in page.get("items") or ():
                seen.add(object_key(item))
                self.on_event(self.kind.kind, "ADDED", item)
            meta = page.get("metadata") or {}
            token = str(meta.get("continue") or "")
            if not token:
                self.on_listed(self.kind.kind, seen)
                return str(meta.get("resourceVersion") or "")

    async def _watch(self, path: str, version: str) -> str:
        params = {
            "watch": "1",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
            "resourceVersion": version,
        }
        async with await self._get(path, params) as response:
            if response.status == 410:
                raise _Expired
            response.raise_for_status()
            pending = bytearray()
            async for chunk in response.content.iter_any():
                # Only the new chunk is searched for the end of a line, so a large event costs
                # time in proportion to its size, whatever the chunking.
                start = len(pending)
                pending += chunk
                end = pending.find(b"\n", start)
                while end != -1:
                    line = bytes(pending[:end])
                    del pending[: end + 1]
                    if line.strip():
                        version = self._event(json.loads(line), version)
                    end = pending.find(b"\n")
        return version

    def _event(self, event: Mapping[str, Any], version: str) -> str:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _Expired
            raise ValueError(f"the watch of {self.kind.plural} failed: {obj.get('message') or obj}")
        new_version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            self.on_event(self.kind.kind, str(kind), obj)
        return new_version
