"""GET /metrics of the stats service: counters by route template, pool gauges, no outbox."""

from __future__ import annotations

import httpx

from tests.helpers.metrics import sample, scrape


async def test_counters_move_and_pool_gauges_are_present(client: httpx.AsyncClient) -> None:
    me = {"service": "stats-service", "method": "GET", "route": "/stats/me"}
    before = await scrape(client)
    assert (await client.get("/stats/me")).status_code == 401
    assert (await client.delete("/stats/me")).status_code == 405
    after = await scrape(client)

    assert sample(after, "http_requests_total", **me, status="401") == 1 + (
        sample(before, "http_requests_total", **me, status="401") or 0
    )
    assert sample(after, "http_requests_total", **{**me, "method": "DELETE"}, status="405") == 1 + (
        sample(before, "http_requests_total", **{**me, "method": "DELETE"}, status="405") or 0
    )
    service = {"service": "stats-service"}
    assert (sample(after, "db_pool_size", **service) or 0) >= 1
    assert sample(after, "redis_pool_in_use", **service) is not None
    assert sample(after, "outbox_lag_seconds", **service) is None  # stats has no outbox
    document = (await client.get("/openapi.json")).json()
    assert "/metrics" not in document["paths"]
