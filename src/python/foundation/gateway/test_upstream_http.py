"""The gateway's upstream HTTP/1.1 client against scripted peers on real sockets: the answers
our own services never give, but a service behind a gateway may (HEAD, 1xx, no length, a
connection closed at the wrong moment, bytes that are not HTTP)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from foundation.gateway.dev_cert import make_dev_cert
from foundation.gateway.upstream_http import (
    Base,
    UpstreamBusy,
    UpstreamDisconnected,
    UpstreamPool,
    UpstreamProtocolError,
    UpstreamUnreachable,
)

# Each answer script gets the request number on its connection (0, 1, ...) and returns the
# bytes to write, or None to close the connection without answering.
Script = Callable[[int], bytes | None]

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


class Peer:
    def __init__(self, script: Script, *, close_after: int | None = None) -> None:
        self.script = script
        self.close_after = close_after  # answers per connection, then close it (idle)
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            for number in range(1_000):
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                self.requests.append(head + body)
                answer = self.script(number)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if self.close_after is not None and number + 1 >= self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def peer(script: Script, **options: int) -> AsyncIterator[tuple[Peer, Base]]:
    scripted = Peer(script, **options)
    server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield scripted, Base.parse(f"http://127.0.0.1:{port}")
    finally:
        server.close()


def pool(read_timeout: float = 2.0, limit: int = 8) -> UpstreamPool:
    return UpstreamPool(limit=limit, connect_timeout=1.0, read_timeout=read_timeout, keepalive_timeout=30)


async def fetch(
    client: UpstreamPool, base: Base, method: str = "GET", body: bytes | None = None
) -> tuple[int, dict[bytes, bytes], bytes]:
    async with await client.request(base, method, b"/x?y=1", [], body) as answer:
        return answer.status, dict(answer.headers), await answer.read()


async def test_keep_alive_connections_are_reused_and_the_request_is_sent_as_given() -> None:
    async with peer(lambda _: OK) as (server, base):
        client = pool()
        for _ in range(3):
            assert await fetch(client, base, "POST", b"hello") == (200, {b"content-length": b"2"}, b"ok")
        await client.close()
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /x?y=1 HTTP/1.1\r\nhost: 127.0.0.1:")
    assert first.endswith(b"content-length: 5\r\n\r\nhello")


async def test_chunked_answer_is_decoded() -> None:
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    async with peer(lambda _: chunked) as (server, base):
        client = pool()
        assert (await fetch(client, base))[2] == b"abcde"
        assert (await fetch(client, base))[2] == b"abcde"
        await client.close()
    assert server.connections == 1


async def test_answer_to_head_has_no_body_whatever_its_length_says() -> None:
    async with peer(lambda _: b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n") as (server, base):
        client = pool()
        assert await fetch(client, base, "HEAD") == (200, {b"content-length": b"1000"}, b"")
        assert (await fetch(client, base, "HEAD"))[2] == b""
        await client.close()
    assert server.connections == 2  # not reused: the parser cannot tell it was a HEAD


@pytest.mark.parametrize("status", [204, 304])
async def test_answers_without_a_body_keep_the_connection(status: int) -> None:
    async with peer(lambda _: b"HTTP/1.1 %d X\r\n\r\n" % status) as (server, base):
        client = pool()
        assert (await fetch(client, base))[0] == status
        assert (await fetch(client, base))[0] == status
        await client.close()
    assert server.connections == 1


async def test_interim_answers_are_skipped() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n" + OK
    async with peer(lambda _: interim) as (_, base):
        client = pool()
        assert await fetch(client, base) == (200, {b"content-length": b"2"}, b"ok")
        await client.close()


async def test_a_body_without_length_ends_with_the_connection() -> None:
    async with peer(lambda _: b"HTTP/1.1 200 OK\r\n\r\nuntil the end", close_after=1) as (server, base):
        client = pool()
        assert (await fetch(client, base))[2] == b"until the end"
        assert (await fetch(client, base))[2] == b"until the end"
        await client.close()
    assert server.connections == 2


async def test_a_kept_connection_the_service_closed_while_idle_is_not_used() -> None:
    async with peer(lambda _: OK, close_after=1) as (server, base):
        client = pool()
        assert (await fetch(client, base))[0] == 200
        await asyncio.sleep(0.05)  # the service has closed it; the pool sees the close
        assert (await fetch(client, base))[0] == 200
        await client.close()
    assert server.connections == 2


async def test_a_kept_connection_closed_before_answering_is_reported_as_safe_to_retry() -> None:
    async with peer(lambda number: OK if number == 0 else None) as (_, base):
        client = pool()
        assert (await fetch(client, base))[0] == 200
        with pytest.raises(UpstreamDisconnected) as caught:
            await fetch(client, base)  # the same connection, closed on reading the request
        assert caught.value.before_answer
        await client.close()


async def test_an_answer_cut_short_is_an_error_not_a_short_body() -> None:
    async with peer(lambda _: b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", close_after=1) as (
        _,
        base,
    ):
        client = pool()
        with pytest.raises(UpstreamDisconnected) as caught:
            await fetch(client, base)
        assert not caught.value.before_answer
        await client.close()


async def test_a_connection_closed_before_the_answer_is_not_retryable_when_new() -> None:
    async with peer(lambda _: None) as (_, base):
        client = pool()
        with pytest.raises(UpstreamDisconnected) as caught:
            await fetch(client, base)
        assert not caught.value.before_answer  # a new connection: the service may have acted
        await client.close()


async def test_bytes_that_are_not_http_are_a_protocol_error() -> None:
    async with peer(lambda _: b"SSH-2.0-OpenSSH_9.2\r\n\r\n") as (_, base):
        client = pool()
        with pytest.raises(UpstreamProtocolError):
            await fetch(client, base)
        await client.close()


async def test_the_body_is_framed_by_its_own_length() -> None:
    async with peer(lambda _: OK) as (server, base):
        client = pool()
        assert (await fetch(client, base, "POST", b""))[0] == 200
        assert (await fetch(client, base, "GET"))[0] == 200
        await client.close()
    assert server.requests[0].endswith(b"content-length: 0\r\n\r\n")
    assert b"content-length" not in server.requests[1]


async def test_a_connection_that_answered_before_taking_the_whole_body_is_not_reused() -> None:
    connections = 0

    async def answer_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)  # answers before the body, keeps the connection, reads no more for now
        await writer.drain()
        await asyncio.sleep(0.5)
        with contextlib.suppress(ConnectionError):
            while await reader.read(1 << 20):
                pass
        writer.close()

    server = await asyncio.start_server(answer_at_once, "127.0.0.1", 0)
    base = Base.parse(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    client = pool()
    try:
        assert (await fetch(client, base, "POST", b"b" * (32 << 20)))[0] == 200
        assert (await fetch(client, base))[0] == 200
        assert connections == 2  # the first connection still had request bytes to send
    finally:
        await client.close()
        server.close()


async def test_no_free_slot_within_the_queue_timeout_is_busy_and_sends_nothing() -> None:
    async with peer(lambda _: OK) as (server, base):
        client = UpstreamPool(
            limit=1, connect_timeout=1, read_timeout=2, keepalive_timeout=30, queue_timeout=0.1
        )
        first = await client.request(base, "GET", b"/", [])
        with pytest.raises(UpstreamBusy):
            await fetch(client, base)
        assert len(server.requests) == 1
        assert await first.read() == b"ok"
        first.release()
        assert (await fetch(client, base))[0] == 200  # the slot is back
        await client.close()


async def test_silence_is_a_timeout_and_nothing_listening_is_unreachable() -> None:
    async with peer(lambda _: b"") as (_, base):  # reads the request, never answers
        client = pool(read_timeout=0.2)
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(TimeoutError):
            await fetch(client, base)
        assert loop.time() - began < 1
        await client.close()
    with pytest.raises(UpstreamUnreachable):
        await fetch(pool(), base)  # the peer is gone: its port refuses


async def test_at_most_limit_exchanges_at_once() -> None:
    async with peer(lambda _: OK) as (server, base):
        client = pool(limit=1)
        first = await client.request(base, "GET", b"/", [])
        second = asyncio.create_task(fetch(client, base))
        await asyncio.sleep(0.05)
        assert not second.done() and len(server.requests) == 1
        assert await first.read() == b"ok"
        first.release()
        assert (await second)[0] == 200
        await client.close()


async def test_a_large_answer_is_read_with_backpressure() -> None:
    size = 8 * 1024 * 1024
    big = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size + b"z" * size
    async with peer(lambda _: big) as (server, base):
        client = pool()
        async with await client.request(base, "GET", b"/", []) as answer:
            received = most_buffered = 0
            while chunk := await answer.read_chunk():
                received += len(chunk)
                most_buffered = max(most_buffered, answer._buffered)
                await asyncio.sleep(0.002)  # a slow reader: the connection must stop reading
        assert received == size
        assert most_buffered < 1024 * 1024
        assert (await fetch(client, base))[2] == b"z" * size  # and the connection still works
        await client.close()
    assert server.connections == 1


async def test_an_https_service_is_reached_over_verified_tls(tmp_path: Path) -> None:
    cert, key = make_dev_cert(tmp_path, names=["127.0.0.1"])
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    scripted = Peer(lambda _: OK)
    server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0, ssl=server_context)
    base = Base.parse(f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    trusting = UpstreamPool(
        limit=2,
        connect_timeout=1,
        read_timeout=2,
        keepalive_timeout=30,
        ssl_context=ssl.create_default_context(cafile=str(cert)),
    )
    try:
        assert await fetch(trusting, base) == (200, {b"content-length": b"2"}, b"ok")
        assert await fetch(trusting, base) == (200, {b"content-length": b"2"}, b"ok")
        assert scripted.connections == 1
        with pytest.raises(UpstreamUnreachable, match="CERTIFICATE_VERIFY_FAILED"):
            await fetch(pool(), base)  # the system's CAs do not know this certificate
    finally:
        await trusting.close()
        server.close()


def test_a_base_url_is_parsed_into_origin_and_path_prefix() -> None:
    base = Base.parse("http://history.internal:8002/api/")
    assert (base.origin.host, base.origin.port, base.origin.tls) == ("history.internal", 8002, False)
    assert base.origin.host_header == b"history.internal:8002"
    assert base.prefix == "/api"
    assert Base.parse("https://stats.internal").origin.port == 443
    with pytest.raises(ValueError, match="not an http"):
        Base.parse("ftp://files.internal")
