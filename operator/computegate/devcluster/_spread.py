"""One loopback endpoint in front of several webhook replicas, as a Service is in a cluster.

A TCP forwarder: each connection the API server opens goes to the next replica in turn, and
TLS passes through untouched (every replica serves the same certificate). It is what
``computegate dev up --webhook-replicas N`` and the tests run, on a laptop and in CI alike,
so that no proxy needs to be installed. ``delay`` holds every answer back, which lets a test
make the API server give up on a webhook that has already acted (a reservation without a pod).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Spreader", "main"]

Address = tuple[str, int]


@dataclass
class Spreader:
    backends: Sequence[Address]
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port, known once listening
    delay: float = 0.0  # seconds to hold back each answer
    connections: dict[Address, int] = field(default_factory=dict)
    _next: itertools.cycle[Address] | None = None

    async def serve(self, ready: threading.Event | None = None) -> None:
        self._next = itertools.cycle(self.backends)
        server = await asyncio.start_server(self._relay, self.host, self.port)
        self.port = server.sockets[0].getsockname()[1]
        if ready is not None:
            ready.set()
        async with server:
            await server.serve_forever()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        assert self._next is not None
        backend = next(self._next)
        self.connections[backend] = self.connections.get(backend, 0) + 1
        try:
            backend_reader, backend_writer = await asyncio.open_connection(*backend)
        except OSError:
            client_writer.close()  # the API server sees a failed call: its failure policy applies
            return
        await asyncio.gather(
            self._pipe(client_reader, backend_writer, answers=False),
            self._pipe(backend_reader, client_writer, answers=True),
            return_exceptions=True,
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, answers: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if answers and self.delay:  # read each time: kept-alive connections too
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()

    def start_in_thread(self) -> threading.Thread:
        """Serve from a daemon thread (tests); returns once listening, ``port`` set."""
        ready = threading.Event()
        thread = threading.Thread(target=lambda: asyncio.run(self.serve(ready)), daemon=True)
        thread.start()
        if not ready.wait(10):
            raise RuntimeError("the forwarder did not start listening")
        return thread


def _address(text: str) -> Address:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m computegate.devcluster._spread")
    parser.add_argument("--listen", type=_address, required=True, help="HOST:PORT to listen on")
    parser.add_argument("--backend", type=_address, action="append", required=True, help="HOST:PORT (repeat)")
    args = parser.parse_args(argv)
    host, port = args.listen
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(Spreader(args.backend, host, port).serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
