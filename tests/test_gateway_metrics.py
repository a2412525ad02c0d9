"""GET /metrics at the gateway, over a real server: counted by upstream prefix, hidden from the ingress."""

from __future__ import annotations

import httpx

from foundation.gateway.app import create_app
from tests.helpers.auth import TestSigner, test_verifier
from tests.helpers.gateway_stack import FakeService, gateway_settings, serve_asgi
from tests.helpers.metrics import sample, scrape


async def test_counters_by_upstream_prefix_and_status(redis_url: str, redis_prefix: str) -> None:
    async with FakeService("auth") as auth, FakeService("history") as history, FakeService("stats") as stats:
        settings = gateway_settings(
            redis_url, redis_prefix, auth=auth.url, history=history.url, stats=stats.url
        )
        app = create_app(settings, token_verifier=test_verifier(TestSigner()))
        async with serve_asgi(app) as url, httpx.AsyncClient(base_url=url) as client:
            before = await scrape(client)
            assert (await client.get("/history/abc")).status_code == 401
            assert (await client.get("/history")).status_code == 401
            assert (await client.get("/auth/.well-known/jwks.json")).status_code == 200
            assert (await client.get("/nowhere/7")).status_code == 404
            forwarded = await client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
            after = await scrape(client)

    def moved(**labels: str) -> float:
        return (sample(after, "http_requests_total", service="gateway", **labels) or 0) - (
            sample(before, "http_requests_total", service="gateway", **labels) or 0
        )

    assert moved(method="GET", route="/history", status="401") == 2
    assert moved(method="GET", route="/auth", status="200") == 1
    assert moved(route="unmatched", status="404") == 1
    assert sample(after, "http_requests_total", route="/history/abc") is None
    assert sample(after, "http_requests_total", route="/metrics") is None
    assert (sample(after, "http_request_duration_seconds_count", route="/history") or 0) >= 2
    assert sample(after, "redis_pool_in_use", service="gateway") is not None
    # Through the ingress (which always adds X-Forwarded-For) /metrics is not there.
    assert forwarded.status_code == 404
    assert forwarded.headers["content-type"] == "application/problem+json"
