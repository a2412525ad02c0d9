"""Request framing through the gateway, over real sockets: the service sees exactly the request
the client sent, framed by the gateway, never a second request hidden in a body."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest

from foundation.gateway.app import create_app
from tests.helpers.auth import TestSigner, bearer, test_verifier
from tests.helpers.gateway_stack import (
    FakeService,
    gateway_settings,
    h2c_request,
    read_http_answer,
    serve_asgi,
)

SIGNER = TestSigner()


@dataclass
class Seen:
    line: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    connection: int


@dataclass
class RecordingService:
    """An HTTP/1.1 service that frames requests as RFC 9112 says (no length: no body) and
    records every request it parses, in order, with the connection it came on."""

    requests: list[Seen] = field(default_factory=list)
    connections: int = 0
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *lines = head[:-4].split(b"\r\n")
                headers = []
                for raw in lines:
                    name, _, value = raw.partition(b":")
                    headers.append((name.strip().lower(), value.strip()))
                length = sum(int(value) for name, value in headers if name == b"content-length")
                body = await reader.readexactly(length) if length else b""
                self.requests.append(Seen(line, headers, body, number))
                if b"/auth/refresh" in line:
                    await asyncio.sleep(0.3)  # a slower route: its answer comes after the next request
                answer = json.dumps({"line": line.decode(), "body_bytes": len(body)}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                    % (len(answer), answer)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def lines(self) -> list[bytes]:
        return [seen.line for seen in self.requests]


@pytest.fixture()
async def recording() -> AsyncIterator[RecordingService]:
    service = RecordingService()
    server = await asyncio.start_server(service.handle, "127.0.0.1", 0)
    service.port = server.sockets[0].getsockname()[1]
    try:
        yield service
    finally:
        server.close()


@pytest.fixture()
async def gateway(redis_url: str, redis_prefix: str, recording: RecordingService) -> AsyncIterator[str]:
    upstream = f"http://127.0.0.1:{recording.port}"
    # One pooled connection: every request to the service goes over the same keep-alive one.
    settings = gateway_settings(
        redis_url, redis_prefix, auth=upstream, history=upstream, stats=upstream, upstream_pool_size=1
    )
    async with serve_asgi(create_app(settings, token_verifier=test_verifier(SIGNER))) as url:
        yield url


async def raw_request(url: str, request: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(read_http_answer(reader), 5)
    finally:
        writer.close()


SMUGGLED = (
    b"POST /auth/refresh HTTP/1.1\r\nhost: auth\r\nx-forwarded-for: 6.6.6.6\r\n"
    b"content-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
)


@pytest.mark.parametrize(
    "connection", [b"content-length", b"keep-alive, Content-Length", b"transfer-encoding, content-length"]
)
async def test_a_body_naming_content_length_in_connection_cannot_smuggle_a_second_request(
    gateway: str, recording: RecordingService, connection: bytes
) -> None:
    attack = (
        b"POST /auth/login HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n"
        b"connection: %s\r\ncontent-length: %d\r\n\r\n%s" % (connection, len(SMUGGLED), SMUGGLED)
    )
    status, _, body = await raw_request(gateway, attack)
    # An innocent client next, over the same pooled connection: its own answer, nobody else's.
    async with (
        aiohttp.ClientSession() as client,
        client.post(gateway + "/auth/register", json={"email": "a@b.c"}) as response,
    ):
        innocent = response.status, await response.json()
    assert innocent == (200, {"line": "POST /auth/register HTTP/1.1", "body_bytes": 18})
    # The service never saw a second request hidden in the first one's body.
    assert recording.lines() == [b"POST /auth/login HTTP/1.1", b"POST /auth/register HTTP/1.1"]
    assert status == 200
    assert json.loads(body) == {"line": "POST /auth/login HTTP/1.1", "body_bytes": len(SMUGGLED)}
    login = recording.requests[0]
    assert login.body == SMUGGLED  # the whole body, as a body
    assert [v for n, v in login.headers if n == b"content-length"] == [str(len(SMUGGLED)).encode()]
    assert not [n for n, _ in login.headers if n == b"transfer-encoding"]


async def test_chunked_body_reaches_the_service_framed_by_the_gateway(
    gateway: str, recording: RecordingService
) -> None:
    chunked = (
        b"POST /auth/login HTTP/1.1\r\nhost: gateway\r\nconnection: transfer-encoding\r\n"
        b"transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    status, _, body = await raw_request(gateway, chunked)
    assert status == 200
    assert json.loads(body)["body_bytes"] == 11
    [seen] = recording.requests
    assert seen.body == b"hello world"
    assert [v for n, v in seen.headers if n == b"content-length"] == [b"11"]
    assert not [n for n, _ in seen.headers if n in (b"transfer-encoding", b"expect")]


@pytest.fixture()
async def echo_gateway(redis_url: str, redis_prefix: str) -> AsyncIterator[tuple[str, FakeService]]:
    async with FakeService("svc") as service:
        settings = gateway_settings(
            redis_url, redis_prefix, auth=service.url, history=service.url, stats=service.url
        )
        async with serve_asgi(create_app(settings, token_verifier=test_verifier(SIGNER))) as url:
            yield url, service


@pytest.mark.parametrize("declared", [False, True], ids=["no-content-length", "content-length"])
async def test_an_http2_body_reaches_the_service_intact(
    echo_gateway: tuple[str, FakeService], declared: bool
) -> None:
    url, service = echo_gateway
    payload = hashlib.sha256(b"h2").hexdigest().encode() * 300  # 19,200 bytes in several frames
    headers = [(b"content-type", b"application/octet-stream"), *_token()]
    if declared:
        headers.append((b"content-length", str(len(payload)).encode()))
    status, body = await h2c_request(url, "POST", "/history", headers, [payload[:7000], payload[7000:]])
    assert status == 200
    seen = json.loads(body)
    assert seen["body_bytes"] == len(payload)
    assert seen["body_sha256"] == hashlib.sha256(payload).hexdigest()
    assert service.requests[-1]["headers"]["content-length"] == str(len(payload))


def _token() -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(), value.encode()) for name, value in bearer(SIGNER.issue()).items()]
