"""GET /metrics of the history service: RED counters by route template, pool and outbox gauges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from foundation.events.outbox import record
from foundation.history_service.models import Outbox
from tests.helpers.auth import TestSigner, bearer
from tests.helpers.metrics import sample, scrape


async def test_counters_move_by_route_template_and_status(
    client: httpx.AsyncClient, signer: TestSigner
) -> None:
    labels = {"service": "history-service", "method": "GET", "route": "/history"}
    before = await scrape(client)
    assert (await client.get("/history")).status_code == 401
    assert (await client.get("/history")).status_code == 401
    assert (await client.get("/history", headers=bearer(signer.issue()))).status_code == 200
    assert (await client.get("/no/such/path/42")).status_code == 404
    after = await scrape(client)

    assert (sample(after, "http_requests_total", **labels, status="401") or 0) - (
        sample(before, "http_requests_total", **labels, status="401") or 0
    ) == 2
    assert sample(after, "http_requests_total", **labels, status="200") == 1 + (
        sample(before, "http_requests_total", **labels, status="200") or 0
    )
    assert sample(after, "http_requests_total", route="unmatched", status="404") is not None
    assert sample(after, "http_requests_total", route="/no/such/path/42") is None  # never the raw path
    assert sample(after, "http_request_duration_seconds_count", **labels) == 3 + (
        sample(before, "http_request_duration_seconds_count", **labels) or 0
    )
    assert sample(after, "http_requests_total", route="/metrics") is None  # not counting itself


async def test_pool_and_outbox_gauges_are_read_at_scrape_time(client: httpx.AsyncClient) -> None:
    text = await scrape(client)
    service = {"service": "history-service"}
    assert (sample(text, "db_pool_size", **service) or 0) >= 1
    assert sample(text, "db_pool_checked_out", **service) is not None
    assert sample(text, "redis_pool_in_use", **service) is not None
    lag = sample(text, "outbox_lag_seconds", **service)
    assert lag is not None and lag >= 0
    assert sample(text, "outbox_unpublished", **service) is not None


async def test_metrics_is_not_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert "/metrics" not in document["paths"]


async def test_outbox_gauges_show_an_unpublished_row(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with sessions() as session, session.begin():
        record(session, Outbox, "test.metrics", None, occurred_at=datetime.now(UTC) - timedelta(minutes=5))
    text = await scrape(client)
    assert (sample(text, "outbox_lag_seconds", service="history-service") or 0) >= 299
    assert (sample(text, "outbox_unpublished", service="history-service") or 0) >= 1
