"""GET /health at the gateway: each service's /ready and Redis, checked concurrently."""

from __future__ import annotations

import time

import aiohttp

from foundation.gateway.app import create_app
from tests.helpers.apps import closed_port_redis_url
from tests.helpers.auth import TestSigner, test_verifier
from tests.helpers.gateway_stack import FakeService, closed_url, gateway_settings, serve_asgi


async def get_health(settings: object) -> tuple[int, dict[str, object]]:
    app = create_app(settings, token_verifier=test_verifier(TestSigner()))  # type: ignore[arg-type]
    async with serve_asgi(app) as url, aiohttp.ClientSession() as client, client.get(url + "/health") as r:
        return r.status, await r.json()


async def test_health_is_ok_when_every_service_and_redis_answer(redis_url: str, redis_prefix: str) -> None:
    async with FakeService("auth") as auth, FakeService("history") as history, FakeService("stats") as stats:
        status, body = await get_health(
            gateway_settings(redis_url, redis_prefix, auth=auth.url, history=history.url, stats=stats.url)
        )
    assert status == 200
    assert body["status"] == "ok"
    assert body["down"] == []
    assert body["services"] == {"auth": "ok", "history": "ok", "stats": "ok"}
    assert body["redis"] == "ok"
    limits = body["gateway"]["rate_limits"]  # type: ignore[index]
    assert limits["on_redis_failure"] == {"general": "open", "sign_in": "closed"}


async def test_health_names_a_service_that_is_not_ready_or_not_running(
    redis_url: str, redis_prefix: str
) -> None:
    async with FakeService("auth") as auth, FakeService("history") as history:
        history.ready_status = 503
        status, body = await get_health(
            gateway_settings(redis_url, redis_prefix, auth=auth.url, history=history.url, stats=closed_url())
        )
    assert status == 503
    assert body["status"] == "degraded"
    assert sorted(body["down"]) == ["history", "stats"]  # type: ignore[arg-type]
    services = body["services"]
    assert services["auth"] == "ok"  # type: ignore[index]
    assert services["history"] == "down: /ready answered 503"  # type: ignore[index]
    assert services["stats"].startswith("down")  # type: ignore[index]


async def test_health_names_redis_when_it_is_down(redis_prefix: str) -> None:
    async with FakeService("auth") as auth, FakeService("history") as history, FakeService("stats") as stats:
        status, body = await get_health(
            gateway_settings(
                closed_port_redis_url(), redis_prefix, auth=auth.url, history=history.url, stats=stats.url
            )
        )
    assert status == 503
    assert body["down"] == ["redis"]
    assert body["redis"].startswith("down")  # type: ignore[union-attr]
    assert body["gateway"]["rate_limits"]["redis"].startswith("down")  # type: ignore[index]


async def test_a_hanging_service_costs_health_only_its_timeout(redis_url: str, redis_prefix: str) -> None:
    async with FakeService("auth") as auth, FakeService("history") as history, FakeService("stats") as stats:
        history.ready_delay = 30
        settings = gateway_settings(
            redis_url, redis_prefix, auth=auth.url, history=history.url, stats=stats.url, health_timeout=0.3
        )
        started = time.monotonic()
        status, body = await get_health(settings)
        elapsed = time.monotonic() - started
    assert status == 503
    assert body["down"] == ["history"]
    assert body["services"]["history"] == "down: timeout"  # type: ignore[index]
    assert elapsed < 5  # one timeout, not a hang


async def test_several_replicas_are_ok_only_when_all_are(redis_url: str, redis_prefix: str) -> None:
    async with FakeService("a1") as a1, FakeService("other") as other:
        dead = closed_url()
        status, body = await get_health(
            gateway_settings(
                redis_url, redis_prefix, auth=f"{a1.url},{dead}", history=other.url, stats=other.url
            )
        )
    assert status == 503
    assert body["down"] == ["auth"]
    assert dead in body["services"]["auth"]  # type: ignore[index]


async def test_ready_reports_the_gateways_own_redis(redis_url: str, redis_prefix: str) -> None:
    settings = gateway_settings(
        redis_url, redis_prefix, auth=closed_url(), history=closed_url(), stats=closed_url()
    )
    app = create_app(settings, token_verifier=test_verifier(TestSigner()))
    async with serve_asgi(app) as url, aiohttp.ClientSession() as client, client.get(url + "/ready") as r:
        assert r.status == 200
        assert (await r.json())["checks"] == {"redis": "ok"}


async def test_ready_is_503_naming_redis_when_it_is_down(redis_prefix: str) -> None:
    settings = gateway_settings(
        closed_port_redis_url(), redis_prefix, auth=closed_url(), history=closed_url(), stats=closed_url()
    )
    app = create_app(settings, token_verifier=test_verifier(TestSigner()))
    async with serve_asgi(app) as url, aiohttp.ClientSession() as client, client.get(url + "/ready") as r:
        assert r.status == 503
        body = await r.json()
    assert body["status"] == "degraded"
    assert body["checks"]["redis"].startswith("down")
