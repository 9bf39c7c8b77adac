"""Kopf's webhook server with our TLS files, reloaded in place, and a guard in front of Kopf.

Kopf's own ``WebhookServer`` restarts its listener when certificate files change and answers
a malformed review with an unhandled error (HTTP 500). This subclass keeps Kopf's interface
(``settings.admission.server``) but:

- loads ``tls.crt``/``tls.key`` into one ``SSLContext`` and reloads them *into that context*
  when the files change, so open connections and the listening socket stay up;
- checks every body against the ``AdmissionReview`` model first: unreadable, oversized or
  wrong-version bodies get a 4xx with a one-line reason, and nothing reaches a handler that
  the handler cannot read;
- turns any error that escapes Kopf into a denial (fail closed), never an HTTP 5xx.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import ssl
from collections.abc import AsyncIterator, Callable, Collection
from pathlib import Path
from typing import Any

import aiohttp.web
import kopf

from computegate.webhook.admission import BadReview, parse_review
from computegate.webhook.certs import ServingFiles
from computegate.webhook.configuration import (
    MUTATE_WORKLOADS,
    VALIDATE_NAMESPACES,
    VALIDATE_RESOURCE_CLAIMS,
    VALIDATE_SCALE,
    VALIDATE_WORKLOADS,
)

logger = logging.getLogger(__name__)

# The API server's own limit for a request body is 3 MiB; a review carries object and oldObject.
MAX_BODY_BYTES = 7 * 1024 * 1024
MAX_JSON_DEPTH = 200
HANDLER_PATHS = frozenset(
    {VALIDATE_WORKLOADS, VALIDATE_SCALE, VALIDATE_RESOURCE_CLAIMS, VALIDATE_NAMESPACES, MUTATE_WORKLOADS}
)


class ReloadingWebhookServer(kopf.WebhookServer):
    """HTTPS on ``addr:port`` with certificates from ``files``, checked every ``reload_interval``."""

    def __init__(
        self,
        *,
        files: ServingFiles,
        addr: str = "127.0.0.1",
        port: int = 9443,
        host: str | None = None,
        reload_interval: float = 2.0,
        on_reload: Callable[[bytes], None] | None = None,
        paths: Collection[str] = HANDLER_PATHS,
    ) -> None:
        super().__init__(addr=addr, port=port, host=host, certfile=files.cert, pkeyfile=files.key)
        self.files = files
        self.reload_interval = reload_interval
        self.on_reload = on_reload
        self.listening = asyncio.Event()
        self.reloads = 0
        self.paths = frozenset(paths)

    def _digest(self) -> str:
        hasher = hashlib.sha256()
        for path in (self.files.cert, self.files.key, self.files.ca):
            hasher.update(Path(path).read_bytes())
        return hasher.hexdigest()

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(purpose=ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.files.cert, self.files.key)
        return context

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        async def serve(request: aiohttp.web.Request) -> aiohttp.web.Response:
            # Kopf allows what no handler claims; a path we do not serve must not be an allow.
            if request.match_info["id"] not in self.paths:
                raise _bad_request(f"no webhook at {request.path}", aiohttp.web.HTTPNotFound)
            return await guarded_serve(fn, request)

        context = self._context()
        digest = self._digest()
        app = aiohttp.web.Application(client_max_size=MAX_BODY_BYTES)
        app.add_routes([aiohttp.web.post("/{id:[a-z0-9-]+}", serve)])
        # In-flight reviews finish quickly; do not hold a shutdown for aiohttp's default 60 s.
        runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = aiohttp.web.TCPSite(runner, self.addr, self.port, ssl_context=context, reuse_address=True)
            await site.start()
            host = self.host or self.addr
            url = f"https://{host}:{self.port}"
            logger.info("Serving admission webhooks at %s", url)
            self.listening.set()
            yield kopf.WebhookClientConfig(
                url=url, caBundle=base64.b64encode(self.files.ca.read_bytes()).decode()
            )
            while True:
                await asyncio.sleep(self.reload_interval)
                try:
                    current = self._digest()
                    if current == digest:
                        continue
                    # Same context object: new handshakes use the new pair, nothing restarts.
                    context.load_cert_chain(self.files.cert, self.files.key)
                except (OSError, ssl.SSLError) as error:
                    # Mid-rotation (a key without its certificate yet): keep serving the old pair.
                    logger.warning("Not reloading the serving certificate yet: %s", error)
                    continue
                digest = current
                self.reloads += 1
                logger.info("Reloaded the serving certificate from %s", self.files.cert)
                if self.on_reload is not None:
                    self.on_reload(self.files.ca.read_bytes())
        finally:
            self.listening.clear()
            await runner.cleanup()


def _too_deep(data: object, limit: int = MAX_JSON_DEPTH) -> bool:
    stack: list[tuple[object, int]] = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)
    return False


def _bad_request(reason: str, status: type[aiohttp.web.HTTPClientError]) -> aiohttp.web.HTTPClientError:
    # The reason goes in the body (a one-line JSON), and the status line stays ASCII-safe.
    return status(text=json.dumps({"error": reason}), content_type="application/json")


async def guarded_serve(fn: Any, request: aiohttp.web.Request) -> aiohttp.web.Response:
    """Check one request, pass it to Kopf, and map every failure to a 4xx or a denial."""
    try:
        raw = await request.read()
    except aiohttp.web.HTTPRequestEntityTooLarge:
        raise aiohttp.web.HTTPRequestEntityTooLarge(
            MAX_BODY_BYTES,
            request.content_length or MAX_BODY_BYTES + 1,
            text=json.dumps({"error": f"the body exceeds {MAX_BODY_BYTES} bytes"}),
            content_type="application/json",
        ) from None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise _bad_request(f"the body is not JSON: {error}", aiohttp.web.HTTPBadRequest) from None
    if _too_deep(data):
        raise _bad_request(f"the body nests deeper than {MAX_JSON_DEPTH} levels", aiohttp.web.HTTPBadRequest)
    try:
        review = parse_review(data)
    except BadReview as error:
        raise _bad_request(str(error), aiohttp.web.HTTPBadRequest) from None
    uid = review.request.uid
    sslpeer = request.transport.get_extra_info("peercert") if request.transport else None
    try:
        response = await fn(
            data, webhook=request.match_info["id"], sslpeer=sslpeer, headers=dict(request.headers)
        )
    except kopf.AdmissionError as error:
        response = deny(uid, str(error), error.code or 403)
    except Exception as error:  # fail closed: whatever went wrong, the object is not admitted
        # Kopf's request errors (its WebhookError family) are not exported: match them by name.
        kinds = {cls.__name__ for cls in type(error).__mro__}
        if "UnknownResourceError" in kinds:
            raise _bad_request(str(error), aiohttp.web.HTTPNotFound) from None
        if "WebhookError" in kinds:
            raise _bad_request(str(error), aiohttp.web.HTTPBadRequest) from None
        logger.exception("Admission request %s failed; denying it", uid)
        response = deny(uid, f"ComputeGate could not judge this request ({type(error).__name__}); retry", 500)
    status = (response.get("response") or {}).get("status")
    if isinstance(status, dict) and not status.get("reason"):
        # Kopf sets no reason; with one, kubectl says "Error from server (Forbidden): ...".
        status["reason"] = _REASONS.get(status.get("code") or 0, "")
    return aiohttp.web.json_response(response)


_REASONS = {400: "BadRequest", 403: "Forbidden", 500: "InternalError"}


def deny(uid: str, message: str, code: int) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {
            "uid": uid,
            "allowed": False,
            "status": {"code": code, "message": message, "reason": _REASONS.get(code, "")},
        },
    }
