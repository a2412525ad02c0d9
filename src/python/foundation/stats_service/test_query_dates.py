"""`/stats/summary` reads its days as ISO dates only (the fuzzer found `until=0` taken for 1970)."""

from __future__ import annotations

import uuid

import httpx

from tests.helpers.auth import TestSigner, bearer


async def test_summary_days_are_iso_dates_not_numbers(client: httpx.AsyncClient, signer: TestSigner) -> None:
    admin = bearer(signer.issue(user_id=uuid.uuid4(), roles=["admin"]))
    for query in ({"until": "0"}, {"since": "20250131"}, {"until": "2025-01-31T00:00:00"}):
        answer = await client.get("/stats/summary", params=query, headers=admin)
        assert answer.status_code == 422, (query, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["code"] == "validation_error"
    ok = await client.get(
        "/stats/summary", params={"since": "2025-01-01", "until": "2025-01-31"}, headers=admin
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["since"] == "2025-01-01"
