"""A service killed in the middle of a request: the client gets a 502 problem (or, when the
head of the answer had already been sent, a cut body), never a hang; the gateway goes on
serving, and reaches the service again once it is back. Real processes on loopback."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest

from foundation.devstack.embedded import free_port
from foundation.devstack.paths import package_source_dir
from foundation.devstack.plan import child_pythonpath
from foundation.gateway.app import create_app
from tests.helpers.auth import TestSigner, bearer, test_verifier
from tests.helpers.gateway_stack import FakeService, gateway_settings, serve_asgi

SIGNER = TestSigner()
TOKEN = bearer(SIGNER.issue(ttl=3600))


class ServiceProcess:
    """``tests.helpers.gateway_stack``'s FakeService in a child process, killed with SIGKILL."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        # The sources first, then what this process imports (under Pants: its PEX's packages).
        env = {**os.environ, "PYTHONPATH": child_pythonpath(package_source_dir())}
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.helpers.gateway_stack",
            str(self.port),
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        assert (await self.line()).startswith("ready")

    async def line(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        return (await asyncio.wait_for(self.process.stdout.readline(), 10)).decode().strip()

    async def wait_for(self, prefix: str) -> None:
        while not (await self.line()).startswith(prefix):
            pass

    async def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        await self.process.wait()


@pytest.fixture()
async def killable() -> AsyncIterator[ServiceProcess]:
    service = ServiceProcess(free_port())
    await service.start()
    try:
        yield service
    finally:
        if service.process is not None and service.process.returncode is None:
            await service.kill()


@pytest.fixture()
async def gateway(redis_url: str, redis_prefix: str, killable: ServiceProcess) -> AsyncIterator[str]:
    async with FakeService("stats") as stats:
        settings = gateway_settings(
            redis_url,
            redis_prefix,
            auth=stats.url,
            history=f"http://127.0.0.1:{killable.port}",
            stats=stats.url,
            upstream_read_timeout=30,  # a hang would show as the test's own timeout, not a 504
        )
        async with serve_asgi(create_app(settings, token_verifier=test_verifier(SIGNER))) as url:
            yield url


async def status_and_body(
    client: aiohttp.ClientSession, method: str, url: str, body: bytes | None = None
) -> tuple[int, str, dict[str, object]]:
    async with client.request(method, url, headers=TOKEN, data=body) as response:
        return response.status, response.headers["content-type"], await response.json(content_type=None)


async def test_a_service_killed_mid_request_is_a_502_and_the_gateway_goes_on(
    gateway: str, killable: ServiceProcess
) -> None:
    async with aiohttp.ClientSession() as client:
        assert (await status_and_body(client, "GET", gateway + "/history"))[0] == 200  # a pooled connection
        # An idempotent request (retried once on a fresh connection), then one with a body (never).
        for method, sent in (("GET", None), ("POST", b"b" * 300_000)):
            slow = gateway + "/history/slow?seconds=60"
            pending = asyncio.create_task(status_and_body(client, method, slow, sent))
            await killable.wait_for("request")
            await killable.kill()
            status, kind, body = await asyncio.wait_for(pending, 5)
            assert (status, kind) == (502, "application/problem+json")
            assert body["code"] in ("upstream_error", "upstream_unreachable")
            # The gateway still serves the other services, and this one once it is back.
            assert (await status_and_body(client, "GET", gateway + "/stats/me"))[0] == 200
            assert (await status_and_body(client, "GET", gateway + "/history"))[0] == 502
            await killable.start()
            assert (await status_and_body(client, "GET", gateway + "/history"))[0] == 200


async def test_a_service_killed_mid_answer_is_a_502_before_the_head_or_a_cut_body_after(
    gateway: str, killable: ServiceProcess
) -> None:
    async with aiohttp.ClientSession() as client:
        # A small answer is read whole before the head is sent: still time for a 502.
        pending = asyncio.create_task(status_and_body(client, "GET", gateway + "/history/stall?bytes=4096"))
        await killable.wait_for("stalled")
        await killable.kill()
        status, kind, body = await asyncio.wait_for(pending, 5)
        assert (status, kind, body["code"]) == (502, "application/problem+json", "upstream_error")

        # A large one streams: the client has its head, then the body stops short, at once.
        await killable.start()
        async with client.get(gateway + "/history/stall?bytes=200000", headers=TOKEN) as response:
            assert response.status == 200
            assert response.headers["Content-Length"] == "400000"
            await killable.wait_for("stalled")
            await killable.kill()
            with pytest.raises(aiohttp.ClientPayloadError):
                await asyncio.wait_for(response.read(), 5)
        await killable.start()
        assert (await status_and_body(client, "GET", gateway + "/history"))[0] == 200
