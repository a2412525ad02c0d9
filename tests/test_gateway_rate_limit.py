"""Rate limits in Redis: per user, per address, stricter on sign-in, exact across replicas."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from foundation.auth.denylist import SessionDenyList
from foundation.gateway.app import create_app
from tests.helpers.apps import closed_port_redis_url, silent_redis_url
from tests.helpers.auth import TestSigner, bearer, test_verifier
from tests.helpers.gateway_stack import FakeService, gateway_settings, serve_asgi

SIGNER = TestSigner()


async def start_gateways(
    stack: AsyncExitStack, redis_url: str, prefix: str, service: FakeService, count: int = 1, **overrides: Any
) -> list[str]:
    urls = []
    for _ in range(count):
        settings = gateway_settings(
            redis_url, prefix, auth=service.url, history=service.url, stats=service.url, **overrides
        )
        urls.append(
            await stack.enter_async_context(
                serve_asgi(create_app(settings, token_verifier=test_verifier(SIGNER)))
            )
        )
    return urls


@pytest.fixture()
async def service() -> AsyncIterator[FakeService]:
    async with FakeService("svc") as fake:
        yield fake


def ratelimit(headers: Any) -> dict[str, int]:
    match = re.fullmatch(r'"(\w+)";r=(\d+);t=(\d+)', headers["RateLimit"])
    assert match, headers["RateLimit"]
    return {"r": int(match[2]), "t": int(match[3])}


async def test_user_limit_counts_down_then_refuses_with_retry_after(
    redis_url: str, redis_prefix: str, service: FakeService
) -> None:
    prefix = f"{redis_prefix}{uuid.uuid4().hex[:6]}:"
    async with AsyncExitStack() as stack, aiohttp.ClientSession() as client:
        [url] = await start_gateways(stack, redis_url, prefix, service, rate_limit_user="3/60")
        headers = bearer(SIGNER.issue())
        remaining = []
        for _ in range(3):
            async with client.get(url + "/history", headers=headers) as response:
                assert response.status == 200
                assert response.headers["RateLimit-Policy"] == '"user";q=3;w=60'
                remaining.append(ratelimit(response.headers)["r"])
        async with client.get(url + "/history", headers=headers) as response:
            assert response.status == 429
            body = await response.json()
            retry_after = int(response.headers["Retry-After"])
            assert ratelimit(response.headers)["r"] == 0
    assert remaining == [2, 1, 0]
    assert body["code"] == "rate_limited"
    assert 58 <= retry_after <= 60
    assert len(service.requests) == 3
    # Another user has a budget of their own.


async def test_each_user_and_each_address_has_its_own_budget(
    redis_url: str, redis_prefix: str, service: FakeService
) -> None:
    prefix = f"{redis_prefix}{uuid.uuid4().hex[:6]}:"
    async with AsyncExitStack() as stack, aiohttp.ClientSession() as client:
        [url] = await start_gateways(
            stack, redis_url, prefix, service, rate_limit_user="1/60", rate_limit_anonymous="2/60"
        )
        for _ in range(2):
            async with client.get(url + "/history", headers=bearer(SIGNER.issue())) as response:
                assert response.status == 200  # two different users
        user = bearer(SIGNER.issue(user_id=uuid.uuid4()))
        async with (
            client.get(url + "/history", headers=user) as first,
            client.get(url + "/history", headers=user) as second,
        ):
            assert (first.status, second.status) == (200, 429)
        # Anonymous traffic (here: the JWKS) counts per address under its own policy.
        statuses = []
        for _ in range(3):
            async with client.get(url + "/auth/.well-known/jwks.json") as response:
                statuses.append(response.status)
                policy = response.headers["RateLimit-Policy"]
        assert statuses == [200, 200, 429]
        assert policy == '"anonymous";q=2;w=60'


async def test_sign_in_routes_have_the_stricter_limit(
    redis_url: str, redis_prefix: str, service: FakeService
) -> None:
    prefix = f"{redis_prefix}{uuid.uuid4().hex[:6]}:"
    async with AsyncExitStack() as stack, aiohttp.ClientSession() as client:
        [url] = await start_gateways(
            stack, redis_url, prefix, service, rate_limit_strict="2/60", rate_limit_anonymous="100/60"
        )
        login = [(await client.post(url + "/auth/login", json={})).status for _ in range(3)]
        register = [(await client.post(url + "/auth/register", json={})).status for _ in range(3)]
        async with client.post(url + "/auth/login", json={}) as response:
            assert response.headers["RateLimit-Policy"] == '"login";q=2;w=60'
        jwks = (await client.get(url + "/auth/.well-known/jwks.json")).status
    assert login == [200, 200, 429]
    assert register == [200, 200, 429]
    assert jwks == 200  # not a sign-in route


async def test_failed_token_attempts_count_against_the_address(
    redis_url: str, redis_prefix: str, service: FakeService
) -> None:
    prefix = f"{redis_prefix}{uuid.uuid4().hex[:6]}:"
    async with AsyncExitStack() as stack, aiohttp.ClientSession() as client:
        [url] = await start_gateways(stack, redis_url, prefix, service, rate_limit_anonymous="2/60")
        statuses = []
        for _ in range(3):
            async with client.get(url + "/history", headers={"Authorization": "Bearer forged"}) as response:
                statuses.append(response.status)
                assert "RateLimit" in response.headers
    assert statuses == [401, 401, 429]


async def test_a_revoked_session_counts_against_the_address_not_the_user(
    redis_url: str, redis_prefix: str, service: FakeService
) -> None:
    prefix = f"{redis_prefix}{uuid.uuid4().hex[:6]}:"
    session = uuid.uuid4()
    redis = aioredis.Redis.from_url(redis_url)
    try:
        await SessionDenyList(redis, prefix).deny(session, 60)
    finally:
        await redis.aclose()
    async with AsyncExitStack() as stack, aiohttp.ClientSession() as client:
        [url] = await start_gateways(stack, redis_url, prefix, service, rate_limit_anonymous="1/60")
        revoked = bearer(SIGNER.issue(session_id=session))
        first = await client.get(url + "/history", headers=revoked)
        second = await client.get(url + "/history", headers=revoked)
        assert (first.status, second.status) == (401, 429)
        assert (await first.json())["code"] == "session_revoked"
        assert first.headers["RateLimit-Policy"].startswith('"anonymous"')
        # A valid session of its own is unaffected.
        assert (await client.get(url + "/history", headers=bearer(SIGNER.issue()))).status == 200
    assert len(service.requests) == 1


async def test_forwarded_for_is_believed_only_from_a_trusted_proxy(
    redis_url: str, redis_prefix: str, service: FakeService
) -> None:
    async with AsyncExitStack() as stack, aiohttp.ClientSession() as client:
        trusting_prefix = f"{redis_prefix}{uuid.uuid4().hex[:6]}:"
        [trusting] = await start_gateways(
            stack,
            redis_url,
            trusting_prefix,
            service,
            rate_limit_strict="1/60",
            trusted_proxies="127.0.0.0/8",
        )
        first = await client.post(
            trusting + "/auth/login", json={}, headers={"X-Forwarded-For": "203.0.113.1"}
        )
        other = await client.post(
            trusting + "/auth/login", json={}, headers={"X-Forwarded-For": "203.0.113.2"}
        )
        again = await client.post(
            trusting + "/auth/login", json={}, headers={"X-Forwarded-For": "9.9.9.9, 203.0.113.1"}
        )
        assert (first.status, other.status, again.status) == (200, 200, 429)
        seen = service.requests[-1]["headers"]
        assert seen["x-forwarded-for"] == "203.0.113.2, 127.0.0.1"

        plain_prefix = f"{redis_prefix}{uuid.uuid4().hex[:6]}:"
        [plain] = await start_gateways(stack, redis_url, plain_prefix, service, rate_limit_strict="1/60")
        first = await client.post(plain + "/auth/login", json={}, headers={"X-Forwarded-For": "203.0.113.1"})
        spoofed = await client.post(
            plain + "/auth/login", json={}, headers={"X-Forwarded-For": "203.0.113.9"}
        )
        assert (first.status, spoofed.status) == (200, 429)


async def test_limit_is_exact_across_two_replicas_sharing_redis(
    redis_url: str, redis_prefix: str, service: FakeService
) -> None:
    prefix = f"{redis_prefix}{uuid.uuid4().hex[:6]}:"
    limit = 25
    async with (
        AsyncExitStack() as stack,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as client,
    ):
        # A generous Redis timeout: on a busy machine a timed-out call would fail open (by design).
        urls = await start_gateways(
            stack, redis_url, prefix, service, count=2, rate_limit_user=f"{limit}/60", redis_timeout=5
        )
        headers = bearer(SIGNER.issue())

        async def one(i: int) -> tuple[int, str | None]:
            async with client.get(urls[i % 2] + "/history", headers=headers) as response:
                await response.read()
                return response.status, response.headers.get("Retry-After")

        results = await asyncio.gather(*(one(i) for i in range(4 * limit)))
    statuses = [status for status, _ in results]
    assert sorted(set(statuses)) == [200, 429]
    assert statuses.count(200) == limit
    assert statuses.count(429) == 3 * limit
    assert all(retry is not None and 1 <= int(retry) <= 60 for status, retry in results if status == 429)
    assert len(service.requests) == limit


async def test_limit_recovers_after_the_window(
    redis_url: str, redis_prefix: str, service: FakeService
) -> None:
    prefix = f"{redis_prefix}{uuid.uuid4().hex[:6]}:"
    async with AsyncExitStack() as stack, aiohttp.ClientSession() as client:
        [url] = await start_gateways(stack, redis_url, prefix, service, rate_limit_user="2/1")
        headers = bearer(SIGNER.issue())
        statuses = [(await client.get(url + "/history", headers=headers)).status for _ in range(3)]
        assert statuses == [200, 200, 429]
        deadline = time.monotonic() + 3
        while True:
            async with client.get(url + "/history", headers=headers) as response:
                if response.status == 200:
                    break
                assert int(response.headers["Retry-After"]) == 1
            assert time.monotonic() < deadline, "the limit did not recover"
            await asyncio.sleep(0.05)


async def test_without_redis_general_traffic_fails_open_and_sign_in_fails_closed(
    redis_prefix: str, service: FakeService
) -> None:
    async with AsyncExitStack() as stack, aiohttp.ClientSession() as client:
        [url] = await start_gateways(stack, closed_port_redis_url(), redis_prefix, service)
        async with client.get(url + "/history", headers=bearer(SIGNER.issue())) as response:
            assert response.status == 200
            assert "RateLimit" not in response.headers
        async with client.post(url + "/auth/login", json={}) as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "1"
            assert (await response.json())["code"] == "rate_limiter_unavailable"
        async with client.get(url + "/health") as response:
            body = await response.json()
    assert body["down"][-1] == "redis"
    assert body["gateway"]["rate_limits"]["redis"].startswith("down")
    assert body["gateway"]["rate_limits"]["on_redis_failure"] == {"general": "open", "sign_in": "closed"}


@pytest.mark.parametrize("rate_limit_enabled", [True, False], ids=["rate-limit", "deny-list-only"])
async def test_a_redis_that_never_answers_costs_a_request_the_redis_timeout(
    redis_prefix: str, service: FakeService, rate_limit_enabled: bool
) -> None:
    async with AsyncExitStack() as stack, aiohttp.ClientSession() as client:
        redis_url = await stack.enter_async_context(silent_redis_url())
        [url] = await start_gateways(
            stack, redis_url, redis_prefix, service, redis_timeout=0.3, rate_limit_enabled=rate_limit_enabled
        )
        began = time.monotonic()
        async with client.get(url + "/history", headers=bearer(SIGNER.issue())) as response:
            assert response.status == 200  # general traffic fails open
        assert time.monotonic() - began < 2
        async with client.get(url + "/health") as response:
            body = await response.json()
        assert body["gateway"]["rate_limits"]["redis"].startswith("down")
        if rate_limit_enabled:
            async with client.post(url + "/auth/login", json={}) as response:
                assert response.status == 503  # sign-in fails closed


async def test_fail_modes_are_configurable(redis_prefix: str, service: FakeService) -> None:
    async with AsyncExitStack() as stack, aiohttp.ClientSession() as client:
        [url] = await start_gateways(
            stack,
            closed_port_redis_url(),
            redis_prefix,
            service,
            rate_limit_fail_mode="closed",
            rate_limit_strict_fail_mode="open",
        )
        async with client.get(url + "/history", headers=bearer(SIGNER.issue())) as response:
            assert response.status == 503
        async with client.post(url + "/auth/login", json={}) as response:
            assert response.status == 200


async def test_rate_limits_can_be_switched_off(
    redis_url: str, redis_prefix: str, service: FakeService
) -> None:
    async with AsyncExitStack() as stack, aiohttp.ClientSession() as client:
        [url] = await start_gateways(
            stack, redis_url, redis_prefix, service, rate_limit_enabled=False, rate_limit_strict="1/60"
        )
        statuses = [(await client.post(url + "/auth/login", json={})).status for _ in range(3)]
        assert statuses == [200, 200, 200]


async def test_a_429_carries_one_retry_after_and_one_set_of_ratelimit_fields(
    redis_url: str, redis_prefix: str, service: FakeService
) -> None:
    prefix = f"{redis_prefix}{uuid.uuid4().hex[:6]}:"
    async with AsyncExitStack() as stack, aiohttp.ClientSession() as client:
        [url] = await start_gateways(stack, redis_url, prefix, service, rate_limit_user="1/60")
        # The service refuses (its own limit): its answer's fields reach the client, once each.
        async with client.get(url + "/history/limited?retry=17", headers=bearer(SIGNER.issue())) as response:
            assert response.status == 429
            assert response.headers.getall("Retry-After") == ["17"]
            assert response.headers.getall("RateLimit") == ['"login-account";r=0;t=17']
            assert response.headers.getall("RateLimit-Policy") == ['"login-account";q=3;w=60']
        # The edge refuses (the user's limit): one of each too.
        user = bearer(SIGNER.issue(user_id=uuid.uuid4()))
        await (await client.get(url + "/history", headers=user)).read()
        async with client.get(url + "/history", headers=user) as response:
            assert response.status == 429
            assert len(response.headers.getall("Retry-After")) == 1
            assert len(response.headers.getall("RateLimit")) == 1
            assert len(response.headers.getall("RateLimit-Policy")) == 1
            assert ratelimit(response.headers)["t"] == int(response.headers["Retry-After"])


async def test_every_forwarded_for_line_counts_and_the_client_cannot_pick_its_bucket(
    redis_url: str, redis_prefix: str, service: FakeService
) -> None:
    # A trusted proxy that adds its own X-Forwarded-For line after the client's.
    prefix = f"{redis_prefix}{uuid.uuid4().hex[:6]}:"
    async with AsyncExitStack() as stack, aiohttp.ClientSession() as client:
        [url] = await start_gateways(
            stack, redis_url, prefix, service, rate_limit_strict="1/60", trusted_proxies="127.0.0.0/8"
        )
        statuses = []
        for forged in ("198.51.100.1", "198.51.100.2"):
            lines = [("X-Forwarded-For", forged), ("X-Forwarded-For", "203.0.113.7")]
            async with client.post(url + "/auth/login", json={}, headers=lines) as response:
                statuses.append(response.status)
        assert statuses == [200, 429]  # one client, one bucket, whatever it writes itself
        seen = service.requests[-1]["headers"]
        assert seen["x-forwarded-for"] == "198.51.100.1, 203.0.113.7, 127.0.0.1"
