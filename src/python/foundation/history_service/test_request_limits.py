"""What a client event may be: how old its ``occurred_at``, how large its body (refused
before it is parsed)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx

from foundation.history_service.app import create_app
from foundation.history_service.settings import HistoryServiceSettings
from tests.helpers.apps import serve_app
from tests.helpers.auth import TestSigner, bearer, test_verifier


def headers_of(signer: TestSigner) -> dict[str, str]:
    return bearer(signer.issue(user_id=uuid.uuid4()))


async def test_an_occurred_at_older_than_the_window_is_refused(
    client: httpx.AsyncClient, signer: TestSigner
) -> None:
    headers = headers_of(signer)
    now = datetime.now(UTC)
    ancient = await client.post(
        "/history", json={"type": "app.opened", "occurred_at": "1970-01-01T00:00:00Z"}, headers=headers
    )
    assert ancient.status_code == 422
    assert ancient.headers["content-type"] == "application/problem+json"
    assert ancient.json()["code"] == "occurred_at_too_old"
    assert ancient.json()["errors"][0]["field"] == "occurred_at"
    too_old = (now - timedelta(days=31)).isoformat()
    answer = await client.post("/history", json={"type": "a.b", "occurred_at": too_old}, headers=headers)
    assert answer.json()["code"] == "occurred_at_too_old"
    recent = (now - timedelta(days=29)).isoformat()
    answer = await client.post("/history", json={"type": "a.b", "occurred_at": recent}, headers=headers)
    assert answer.status_code == 201, answer.text
    listed = (await client.get("/history", headers=headers)).json()["items"]
    assert [item["occurred_at"] for item in listed] == [answer.json()["occurred_at"]]


async def test_the_past_window_is_a_setting(settings: HistoryServiceSettings, signer: TestSigner) -> None:
    narrow = settings.model_copy(update={"history_max_past_seconds": 3600})
    async with serve_app(create_app(narrow, token_verifier=test_verifier(signer))) as client:
        two_hours_ago = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
        answer = await client.post(
            "/history", json={"type": "app.opened", "occurred_at": two_hours_ago}, headers=headers_of(signer)
        )
    assert (answer.status_code, answer.json()["code"]) == (422, "occurred_at_too_old")


async def chunks(total: int, piece: bytes) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        yield piece
        sent += len(piece)


async def test_a_body_over_the_limit_is_refused_before_it_is_parsed(
    client: httpx.AsyncClient, signer: TestSigner
) -> None:
    headers = {**headers_of(signer), "content-type": "application/json"}
    # Not JSON at all: parsed first, it would be a 422 `validation_error` (json_invalid).
    declared = await client.post("/history", content=b"{" * 70_000, headers=headers)
    assert (declared.status_code, declared.json()["code"]) == (413, "payload_too_large")
    assert declared.headers["content-type"] == "application/problem+json"
    # Chunked, without a Content-Length: counted as it arrives.
    streamed = await client.post("/history", content=chunks(200_000, b"{" * 4096), headers=headers)
    assert (streamed.status_code, streamed.json()["code"]) == (413, "payload_too_large")
    valid_but_huge = b'{"type":"a.b","data":{"x":"' + b"y" * 70_000 + b'"}}'
    streamed = await client.post("/history", content=chunks(1, valid_but_huge), headers=headers)
    assert (streamed.status_code, streamed.json()["code"]) == (413, "payload_too_large")
    small = await client.post("/history", content=chunks(1, b'{"type":"app.opened"}'), headers=headers)
    assert small.status_code == 201, small.text
