"""GET /metrics of the auth service, through a real server: counters by route, outbox gauges."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.helpers.gateway_stack import serve_asgi
from tests.helpers.metrics import sample, scrape


async def test_counters_and_gauges_through_a_real_server(app: FastAPI) -> None:
    me = {"service": "auth-service", "method": "GET", "route": "/auth/me"}
    async with serve_asgi(app) as url, httpx.AsyncClient(base_url=url) as client:
        before = await scrape(client)
        for _ in range(3):
            assert (await client.get("/auth/me")).status_code == 401
        assert (await client.get("/auth/nothing-here")).status_code == 404
        after = await scrape(client)

    assert sample(after, "http_requests_total", **me, status="401") == 3 + (
        sample(before, "http_requests_total", **me, status="401") or 0
    )
    assert (sample(after, "http_requests_total", route="unmatched", status="404") or 0) >= 1
    assert sample(after, "http_requests_total", route="/auth/nothing-here") is None
    service = {"service": "auth-service"}
    assert (sample(after, "db_pool_size", **service) or 0) >= 1
    assert sample(after, "db_pool_checked_out", **service) is not None
    assert sample(after, "redis_pool_in_use", **service) is not None
    lag = sample(after, "outbox_lag_seconds", **service)
    assert lag is not None and lag >= 0
    assert sample(after, "outbox_unpublished", **service) is not None
