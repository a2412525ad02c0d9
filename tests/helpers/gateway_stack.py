"""Test support: the gateway and small stand-in services over real HTTP on loopback.

``serve_asgi`` runs an ASGI app (the gateway) in this event loop with Granian's embedded
server; ``FakeService`` is an aiohttp.web app that answers any path by echoing what it
received, with a few behaviours chosen by path (slow, big, stream, status) for unhappy paths.
``read_http_answer`` reads one HTTP/1.1 answer from a raw socket (for clients that misbehave
on purpose); ``h2c_request`` is a minimal HTTP/2 client over cleartext (prior knowledge).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from starlette.types import ASGIApp

from foundation.devstack.embedded import free_port


async def wait_for_port(port: int, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if loop.time() > deadline:
                raise TimeoutError(f"nothing listens on port {port}") from None
            await asyncio.sleep(0.01)
        else:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return


@contextlib.asynccontextmanager
async def serve_asgi(
    app: ASGIApp, *, port: int | None = None, ssl_cert: Path | None = None, ssl_key: Path | None = None
) -> AsyncIterator[str]:
    """Serve ``app`` (lifespan included) on loopback; yields its base URL.

    Granian's embeddable server (``granian.server.embed``, documented in its README, marked
    experimental there): ``serve()`` as a task of this loop, ``stop()`` to end it.
    ``log_enabled=False`` is its switch for its own log lines."""
    from granian.constants import HTTPModes, Interfaces
    from granian.server.embed import Server

    port = port or free_port()
    server = Server(
        app,
        address="127.0.0.1",
        port=port,
        interface=Interfaces.ASGI,
        http=HTTPModes.auto,
        log_enabled=False,
        ssl_cert=ssl_cert,
        ssl_key=ssl_key,
    )
    task = asyncio.create_task(server.serve())
    try:
        await wait_for_port(port)
        yield f"{'https' if ssl_cert else 'http'}://127.0.0.1:{port}"
    finally:
        server.stop()  # type: ignore[no-untyped-call]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)


class FakeService:
    """A stand-in service. Any path echoes the request as JSON, except:

    - ``.../slow?seconds=S``: waits S seconds first;
    - ``.../big?bytes=N``: N bytes of ``x`` with a Content-Length;
    - ``.../stream?chunks=N&size=S``: N chunks of S bytes, chunked, no length;
    - ``.../stall?bytes=N``: announces ``2N`` bytes, sends N, then waits (to be killed);
    - ``.../limited?retry=S``: 429 with its own ``Retry-After`` and RateLimit fields;
    - ``.../status/NNN``: answers NNN (with a ``Connection: close, X-Hop`` and ``X-Hop`` to drop);
    - ``/ready``: ``ready_status`` after ``ready_delay`` seconds; ``/openapi.json``: ``openapi``;
    - ``/auth/.well-known/jwks.json``: ``jwks`` (counting fetches).
    """

    def __init__(self, name: str = "service") -> None:
        self.name = name
        self.ready_status = 200
        self.ready_delay = 0.0
        self.openapi: dict[str, Any] | None = None
        self.jwks: dict[str, Any] = {"keys": []}
        self.jwks_fetches = 0
        self.requests: list[dict[str, Any]] = []
        self.port = 0
        self.announce = False  # print "request <method> <path>" as each request arrives
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if self.announce:
            print("request", request.method, path, flush=True)
        if path == "/ready":
            if self.ready_delay:
                await asyncio.sleep(self.ready_delay)
            return web.json_response(
                {"status": "ok" if self.ready_status == 200 else "degraded"}, status=self.ready_status
            )
        if path == "/openapi.json":
            if self.openapi is None:
                return web.json_response({"detail": "no docs"}, status=404)
            return web.json_response(self.openapi)
        if path == "/auth/.well-known/jwks.json":
            self.jwks_fetches += 1
            return web.json_response(self.jwks)
        if path.endswith("/slow"):
            await asyncio.sleep(float(request.query.get("seconds", "5")))
        if path.endswith("/big"):
            size = int(request.query.get("bytes", "0"))
            return web.Response(body=b"x" * size, content_type="application/octet-stream")
        if path.endswith("/stall"):
            half = int(request.query.get("bytes", "1024"))
            stalled = web.StreamResponse(headers={"Content-Length": str(2 * half)})
            await stalled.prepare(request)
            await stalled.write(b"s" * half)
            if self.announce:
                print("stalled", path, flush=True)
            await asyncio.sleep(3600)
        if path.endswith("/stream"):
            response = web.StreamResponse()
            response.content_type = "application/octet-stream"
            await response.prepare(request)
            for _ in range(int(request.query.get("chunks", "1"))):
                await response.write(b"y" * int(request.query.get("size", "1024")))
            await response.write_eof()
            return response
        if path.endswith("/limited"):  # the service's own limit refuses, as auth-service's does
            wait = request.query.get("retry", "30")
            return web.json_response(
                {"status": 429, "code": "too_many_attempts"},
                status=429,
                headers={
                    "Retry-After": wait,
                    "RateLimit-Policy": '"login-account";q=3;w=60',
                    "RateLimit": f'"login-account";r=0;t={wait}',
                },
                content_type="application/problem+json",
            )
        if "/status/" in path:
            status = int(path.rsplit("/", 1)[1])
            return web.json_response(
                {"status": status},
                status=status,
                headers={
                    "Connection": "keep-alive, X-Hop",
                    "X-Hop": "secret",
                    "Keep-Alive": "timeout=5",
                    "X-Kept": "yes",
                },
            )
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
        record = {
            "service": self.name,
            "method": request.method,
            "path": path,
            "raw_path": request.raw_path,
            "query": request.query_string,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "header_list": [k.lower() for k in request.headers],
            "body_bytes": size,
            "body_sha256": digest.hexdigest(),
        }
        self.requests.append(record)
        return web.json_response(record, headers={"Set-Cookie": "probe=1; Path=/"})

    async def start(self, port: int | None = None) -> FakeService:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        self.port = port or free_port()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeService:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def read_http_answer(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes]:
    """One HTTP/1.1 answer: status, headers (lower-case names; a repeated one comma-joined), body."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head[:-4].split(b"\r\n")
    headers: dict[bytes, bytes] = {}
    for line in lines:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        headers[key] = headers[key] + b", " + value.strip() if key in headers else value.strip()
    if b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif b"chunked" in headers.get(b"transfer-encoding", b""):
        parts = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        await reader.readuntil(b"\r\n")
        body = b"".join(parts)
    else:
        body = b""
    return int(status_line.split()[1]), headers, body


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_STATUS = {0x88: 200, 0x89: 204, 0x8A: 206, 0x8B: 304, 0x8C: 400, 0x8D: 404, 0x8E: 500}


def _h2_frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def _hpack_string(data: bytes) -> bytes:
    # An HPACK integer with a 7-bit prefix (no Huffman coding), then the bytes.
    length, out = len(data), bytearray()
    if length < 127:
        out.append(length)
    else:
        out.append(127)
        length -= 127
        while length >= 128:
            out.append((length & 0x7F) | 0x80)
            length >>= 7
        out.append(length)
    return bytes(out) + data


async def h2c_request(
    url: str,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    body: list[bytes],
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    """One HTTP/2 request over cleartext, the body in the given DATA frames (no length unless a
    header says so). Returns the status (0 when not one of HPACK's static ones) and the body."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    fields = [(b":method", method.encode()), (b":scheme", b"http"), (b":path", path.encode())]
    fields += [(b":authority", f"{host}:{port}".encode()), *headers]
    block = b"".join(b"\x00" + _hpack_string(name) + _hpack_string(value) for name, value in fields)
    out = [H2_PREFACE, _h2_frame(4, 0, 0, b""), _h2_frame(1, 0x4 if body else 0x5, 1, block)]
    out += [_h2_frame(0, 0x1 if i == len(body) - 1 else 0, 1, part) for i, part in enumerate(body)]
    writer.write(b"".join(out))
    status, parts = 0, []
    try:
        async with asyncio.timeout(timeout):
            while True:
                head = await reader.readexactly(9)
                length, kind, flags = int.from_bytes(head[:3], "big"), head[3], head[4]
                stream = int.from_bytes(head[5:], "big") & 0x7FFFFFFF
                payload = await reader.readexactly(length)
                if kind == 4 and not flags & 0x1:
                    writer.write(_h2_frame(4, 0x1, 0, b""))  # acknowledge the server's settings
                elif kind == 7:
                    raise ConnectionError(f"GOAWAY {payload[4:8].hex()}")
                elif stream == 1 and kind == 3:
                    raise ConnectionError(f"RST_STREAM {payload.hex()}")
                elif stream == 1 and kind == 1:
                    status = H2_STATUS.get(payload[0], 0)
                elif stream == 1 and kind == 0:
                    parts.append(payload)
                if stream == 1 and kind in (0, 1) and flags & 0x1:
                    return status, b"".join(parts)
    finally:
        writer.close()


def closed_url() -> str:
    """An http URL nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


def gateway_settings(
    redis_url: str, redis_prefix: str, *, auth: str | list[str], history: str, stats: str, **overrides: Any
) -> Any:
    """GatewaySettings for a test: generous limits unless the test sets its own."""
    from foundation.gateway.settings import GatewaySettings

    values: dict[str, Any] = {
        "environment": "test",
        "log_format": "json",
        "redis_url": redis_url,
        "redis_key_prefix": redis_prefix,
        "auth_url": auth,
        "history_url": history,
        "stats_url": stats,
        "rate_limit_user": "100000/60",
        "rate_limit_anonymous": "100000/60",
        "rate_limit_strict": "100000/60",
    }
    values.update(overrides)
    return GatewaySettings(**values)


async def _serve_forever(port: int) -> None:
    service = FakeService("process")
    service.announce = True
    await service.start(port)
    print("ready", service.port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":  # a FakeService in a process of its own, for fault tests
    import sys

    asyncio.run(_serve_forever(int(sys.argv[1])))
