"""MetricsMiddleware on a bare app: a raised error counts as 500, odd methods as OTHER; the
Redis pool gauge counts the connections lent out."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from foundation.shared.metrics import HttpMetrics, MetricsMiddleware, StateCollector
from foundation.shared.redis import create_redis
from foundation.shared.settings import ServiceSettings


def app_with(metrics: HttpMetrics) -> FastAPI:
    app = FastAPI()

    @app.get("/boom/{n}")
    async def boom(n: int) -> None:
        raise RuntimeError("boom")

    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


async def test_an_exception_counts_as_500_and_an_unknown_method_as_other() -> None:
    metrics = HttpMetrics("test")
    transport = httpx.ASGITransport(app=app_with(metrics), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/boom/1")).status_code == 500
        assert (await client.request("BREW", "/boom/2")).status_code == 405
    value = metrics.registry.get_sample_value
    assert (
        value(
            "http_requests_total", {"service": "test", "method": "GET", "route": "/boom/{n}", "status": "500"}
        )
        == 1
    )
    assert (
        value(
            "http_requests_total",
            {"service": "test", "method": "OTHER", "route": "/boom/{n}", "status": "405"},
        )
        == 1
    )


async def test_made_up_methods_share_one_series_and_grow_nothing() -> None:
    metrics = HttpMetrics("test")
    transport = httpx.ASGITransport(app=app_with(metrics), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for n in range(50):
            assert (await client.request(f"BREW{n}", "/boom/1")).status_code == 405
    labels = {"service": "test", "method": "OTHER", "route": "/boom/{n}", "status": "405"}
    assert metrics.registry.get_sample_value("http_requests_total", labels) == 50
    assert len(metrics._children) == 1  # one cached series, not one per method sent


def requests_counted(metrics: HttpMetrics) -> float:
    return sum(
        s.value for m in metrics.registry.collect() for s in m.samples if s.name == "http_requests_total"
    )


@pytest.mark.parametrize("path", ["/boom/1", "/no"])
async def test_two_apps_in_one_process_keep_their_own_registries(path: str) -> None:
    first, second = HttpMetrics("a"), HttpMetrics("b")
    transport = httpx.ASGITransport(app=app_with(first), raise_app_exceptions=False)
    app_with(second)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        await client.get(path)
    assert requests_counted(first) == 1
    assert requests_counted(second) == 0


async def test_the_redis_gauge_counts_the_connections_lent_out(redis_url: str, redis_prefix: str) -> None:
    redis = create_redis(ServiceSettings(redis_url=redis_url))
    collector = StateCollector(FastAPI(), "test")

    def in_use() -> float:
        [gauge] = [metric for metric in collector.collect() if metric.name == "redis_pool_in_use"]
        return gauge.samples[0].value

    try:
        await collector.refresh({"redis": redis})
        await redis.ping()
        assert in_use() == 0  # one connection made, and back in the pool
        waiting = [redis.blpop([f"{redis_prefix}never-pushed"], timeout=1) for _ in range(2)]
        holders = [asyncio.ensure_future(call) for call in waiting]
        await asyncio.sleep(0.2)
        assert in_use() == 2
        assert await asyncio.gather(*holders) == [None, None]
        assert in_use() == 0
    finally:
        await redis.aclose()
