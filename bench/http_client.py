"""The benchmarks' HTTP/1.1 client: keep-alive connections on asyncio protocols, nothing more.

The load generators share the machine's two cores with what they measure, so every
microsecond the client spends is taken from the apps under test (as latency and lost
throughput). aiohttp's client costs 300-500 us of CPU per request here; this costs a fraction
of that. It speaks just enough HTTP/1.1 for our
own apps on loopback: one request at a time per connection, responses with Content-Length.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.parse
from typing import Any

CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


class Connection(asyncio.Protocol):
    """One keep-alive connection: ``request(raw)`` resolves to (status, body)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.done: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("connection closed"))

    def request(self, raw: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self.done = asyncio.get_running_loop().create_future()
        self.buffer.clear()
        self.transport.write(raw)
        return self.done

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.done is None or self.done.done():
            return
        match = CONTENT_LENGTH.search(self.buffer, 0, end + 2)
        if match is None:  # every app under test sends a length
            self.done.set_exception(ValueError("no content-length"))
            return
        length = int(match[1])
        if len(self.buffer) - end - 4 >= length:
            self.done.set_result((int(self.buffer[9:12]), bytes(self.buffer[end + 4 : end + 4 + length])))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Client:
    """A pool of keep-alive connections to one origin (``http://host:port``)."""

    def __init__(self, origin: str) -> None:
        parsed = urllib.parse.urlsplit(origin)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.netloc = parsed.netloc
        self.idle: list[Connection] = []

    def raw(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.netloc}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body or method in {"POST", "PUT", "PATCH"}:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        connection = None
        while self.idle and connection is None:
            connection = self.idle.pop()
            if connection.closed:  # the server closed it while it was idle
                connection = None
        if connection is None:
            _, connection = await asyncio.get_running_loop().create_connection(
                Connection, self.host, self.port
            )
        try:
            result = await connection.request(raw)
        except BaseException:  # a failed or abandoned (timed out) request: the connection goes
            connection.close()
            raise
        self.idle.append(connection)
        return result

    async def post_json(self, path: str, document: Any) -> tuple[int, Any]:
        body = json.dumps(document).encode()
        status, answer = await self.send(self.raw("POST", path, {"Content-Type": "application/json"}, body))
        return status, json.loads(answer) if answer else None

    def close(self) -> None:
        for connection in self.idle:
            connection.close()
        self.idle.clear()
