"""A slow client costs only its own request: bodies are read under a deadline before the
gateway takes one of its upstream slots, and waiting for a slot is bounded too."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from foundation.gateway.app import create_app
from tests.helpers.auth import TestSigner, bearer, test_verifier
from tests.helpers.gateway_stack import FakeService, gateway_settings, read_http_answer, serve_asgi

SIGNER = TestSigner()
TOKEN = bearer(SIGNER.issue(ttl=3600))


@contextlib.asynccontextmanager
async def gateway(
    redis_url: str, redis_prefix: str, **overrides: Any
) -> AsyncIterator[tuple[str, FakeService]]:
    async with FakeService("svc") as service:
        settings = gateway_settings(
            redis_url, redis_prefix, auth=service.url, history=service.url, stats=service.url, **overrides
        )
        async with serve_asgi(create_app(settings, token_verifier=test_verifier(SIGNER))) as url:
            yield url, service


async def trickle(url: str, *, declared: int = 1000, every: float = 0.1, stop_after: float = 8.0) -> Any:
    """POST a body one byte at a time; returns the gateway's answer (status, headers, body)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"POST /history HTTP/1.1\r\nhost: gateway\r\nauthorization: {TOKEN['Authorization']}\r\n"
        f"content-type: application/octet-stream\r\ncontent-length: {declared}\r\n\r\n"
    )
    writer.write(head.encode())
    answer = asyncio.create_task(read_http_answer(reader))
    try:
        loop = asyncio.get_running_loop()
        stop = loop.time() + stop_after
        while not answer.done() and loop.time() < stop:
            with contextlib.suppress(ConnectionError):
                writer.write(b"x")
                await writer.drain()
            await asyncio.wait([answer], timeout=every)
        return await asyncio.wait_for(answer, 1)
    finally:
        answer.cancel()
        writer.close()


async def test_clients_trickling_their_bodies_do_not_hold_the_upstream_slots(
    redis_url: str, redis_prefix: str
) -> None:
    async with gateway(redis_url, redis_prefix, upstream_pool_size=3, request_body_timeout=1.0) as (
        url,
        service,
    ):
        slow = [asyncio.create_task(trickle(url)) for _ in range(3)]
        await asyncio.sleep(0.3)  # all three are sending their bodies now
        loop = asyncio.get_running_loop()
        began = loop.time()
        async with aiohttp.ClientSession() as client:

            async def normal() -> tuple[int, Any]:
                async with client.post(url + "/history", json={"type": "x"}, headers=TOKEN) as response:
                    return response.status, await response.json()

            status, body = await asyncio.wait_for(normal(), 3)  # generous: it takes milliseconds
        assert status == 200 and body["body_bytes"] == len(b'{"type": "x"}')
        assert loop.time() - began < 3
        answers = await asyncio.wait_for(asyncio.gather(*slow), 10)
    for status, headers, raw in answers:
        assert status == 408
        assert headers[b"content-type"] == b"application/problem+json"
        assert json.loads(raw)["code"] == "request_timeout"
    assert [r["method"] for r in service.requests] == ["POST"]  # no partial body ever reached it


async def test_a_request_that_cannot_get_an_upstream_slot_in_time_is_a_503_problem(
    redis_url: str, redis_prefix: str
) -> None:
    async with (
        gateway(redis_url, redis_prefix, upstream_pool_size=1, upstream_queue_timeout=0.3) as (url, _),
        aiohttp.ClientSession() as client,
    ):
        busy = asyncio.create_task(client.get(url + "/history/slow?seconds=2", headers=TOKEN))
        await asyncio.sleep(0.2)  # it holds the only slot
        loop = asyncio.get_running_loop()
        began = loop.time()
        async with client.get(url + "/history", headers=TOKEN) as response:
            assert response.status == 503
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["Retry-After"] == "1"
            assert (await response.json())["code"] == "upstream_busy"
        assert loop.time() - began < 1.5
        async with await busy as first:
            assert first.status == 200  # the one that had the slot is unaffected


@pytest.mark.parametrize("declared", [100, 0], ids=["content-length", "chunked"])
async def test_a_body_that_stops_arriving_is_a_408_problem(
    redis_url: str, redis_prefix: str, declared: int
) -> None:
    async with gateway(redis_url, redis_prefix, request_body_timeout=0.5) as (url, service):
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        framing = f"content-length: {declared}" if declared else "transfer-encoding: chunked"
        writer.write(
            f"POST /history HTTP/1.1\r\nhost: gw\r\nauthorization: {TOKEN['Authorization']}\r\n"
            f"{framing}\r\n\r\n".encode() + (b"part" if declared else b"4\r\npart\r\n")
        )
        try:
            status, headers, body = await asyncio.wait_for(read_http_answer(reader), 5)
        finally:
            writer.close()
    assert status == 408
    assert json.loads(body)["code"] == "request_timeout"
    assert not service.requests
