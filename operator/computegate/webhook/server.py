"""The admission webhooks' HTTPS server: aiohttp, our TLS files reloaded in place, one route.

``POST /<webhook>`` reads the body (at most ``MAX_BODY_BYTES``), parses it once into an
``AdmissionReviewRequest`` and hands it to ``admit(webhook, request)``, which returns the
answer's bytes. Everything that is not a review we can answer gets a 4xx with a one-line
JSON reason; any error past that point becomes a denial (fail closed), never an HTTP 5xx.

The certificate pair is loaded into one ``SSLContext`` and reloaded *into that context* when
the files change, so open connections and the listening socket stay up.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import ssl
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path

import aiohttp.web

from computegate.webhook.admission import AdmissionRequest, BadReview, answer, parse_review
from computegate.webhook.certs import ServingFiles

logger = logging.getLogger(__name__)

# The API server's own limit for a request body is 3 MiB; a review carries object and oldObject.
MAX_BODY_BYTES = 7 * 1024 * 1024

Admit = Callable[[str, AdmissionRequest], Awaitable[bytes]]


class WebhookServer:
    """HTTPS on ``addr:port`` for the webhooks in ``paths``, certificates from ``files``."""

    def __init__(
        self,
        *,
        files: ServingFiles,
        paths: Collection[str],
        addr: str = "127.0.0.1",
        port: int = 9443,
        reload_interval: float = 2.0,
        on_reload: Callable[[bytes], None] | None = None,
    ) -> None:
        self.files = files
        self.paths = frozenset(paths)
        self.addr = addr
        self.port = port
        self.reload_interval = reload_interval
        self.on_reload = on_reload
        self.listening = asyncio.Event()
        self.reloads = 0

    def _digest(self) -> str:
        hasher = hashlib.sha256()
        for path in (self.files.cert, self.files.key, self.files.ca):
            hasher.update(Path(path).read_bytes())
        return hasher.hexdigest()

    async def serve(self, admit: Admit) -> None:
        """Serve until cancelled."""

        async def handle(request: aiohttp.web.Request) -> aiohttp.web.Response:
            webhook = request.match_info["webhook"]
            if webhook not in self.paths:
                raise _client_error(aiohttp.web.HTTPNotFound, f"no webhook at {request.path}")
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
                review = parse_review(raw)
            except BadReview as error:
                raise _client_error(aiohttp.web.HTTPBadRequest, str(error)) from None
            uid = review.request.uid
            try:
                body = await admit(webhook, review.request)
            except LookupError as error:  # a resource this webhook does not judge
                raise _client_error(aiohttp.web.HTTPNotFound, str(error)) from None
            except Exception as error:  # fail closed: whatever went wrong, nothing is admitted
                logger.exception("Admission request %s failed; denying it", uid)
                message = f"ComputeGate could not judge this request ({type(error).__name__}); retry"
                body = answer(uid, allowed=False, message=message, code=500)
            return aiohttp.web.Response(body=body, content_type="application/json")

        context = ssl.create_default_context(purpose=ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.files.cert, self.files.key)
        digest = self._digest()
        app = aiohttp.web.Application(client_max_size=MAX_BODY_BYTES)
        app.add_routes([aiohttp.web.post("/{webhook:[a-z0-9-]+}", handle)])
        # In-flight reviews finish quickly; do not hold a shutdown for aiohttp's default 60 s.
        runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = aiohttp.web.TCPSite(runner, self.addr, self.port, ssl_context=context, reuse_address=True)
            await site.start()
            logger.info("Serving admission webhooks at https://%s:%d", self.addr, self.port)
            self.listening.set()
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


def _client_error(status: type[aiohttp.web.HTTPClientError], reason: str) -> aiohttp.web.HTTPClientError:
    # The reason goes in the body (a one-line JSON), and the status line stays ASCII-safe.
    return status(text=json.dumps({"error": reason}), content_type="application/json")
