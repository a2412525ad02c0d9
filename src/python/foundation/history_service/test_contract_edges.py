"""Inputs the fuzzer found answered against the documented contract: a 500 for text
PostgreSQL cannot store, a number taken for a date, a body that is not UTF-8."""

from __future__ import annotations

import uuid

import httpx

from tests.helpers.auth import TestSigner, bearer


def headers_of(signer: TestSigner) -> dict[str, str]:
    return bearer(signer.issue(user_id=uuid.uuid4()))


async def test_event_data_postgresql_cannot_store_is_a_422_not_a_500(
    client: httpx.AsyncClient, signer: TestSigner
) -> None:
    headers = {**headers_of(signer), "content-type": "application/json"}
    bodies = [
        b'{"type": "app.opened", "data": {"a\\u0000b": 1}}',  # NUL in a key
        b'{"type": "app.opened", "data": {"x": ["ok", "nul \\u0000 inside"]}}',
        b'{"type": "app.opened", "data": {"x": "\\ud800"}}',  # a lone surrogate
    ]
    for body in bodies:
        answer = await client.post("/history", content=body, headers=headers)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["code"] == "invalid_event_data"
    fine = await client.post(
        "/history", content=b'{"type": "app.opened", "data": {"x": "\\\\u0000 is text"}}', headers=headers
    )
    assert fine.status_code == 201, fine.text
    assert fine.json()["data"] == {"x": "\\u0000 is text"}


async def test_times_are_iso_text_not_numbers(client: httpx.AsyncClient, signer: TestSigner) -> None:
    headers = headers_of(signer)
    for query in ({"until": "0.5"}, {"since": "1700000000"}, {"since": "2025-01-31"}):
        answer = await client.get("/history", params=query, headers=headers)
        assert answer.status_code == 422, (query, answer.text)
        assert answer.json()["code"] == "validation_error"
    numeric = await client.post("/history", json={"type": "app.opened", "occurred_at": 0}, headers=headers)
    assert (numeric.status_code, numeric.json()["code"]) == (422, "validation_error")
    ok = await client.get("/history", params={"since": "2025-01-31T00:00:00Z"}, headers=headers)
    assert ok.status_code == 200


async def test_a_type_filter_is_an_event_type(client: httpx.AsyncClient, signer: TestSigner) -> None:
    headers = headers_of(signer)
    nul = await client.get("/history", params={"type": "a\x00b"}, headers=headers)
    assert (nul.status_code, nul.json()["code"]) == (422, "validation_error")
    assert (await client.get("/history", params={"type": "app.opened"}, headers=headers)).status_code == 200


async def test_a_body_that_is_not_utf8_is_the_documented_malformed_body_problem(
    client: httpx.AsyncClient, signer: TestSigner
) -> None:
    headers = {**headers_of(signer), "content-type": "application/json"}
    answer = await client.post("/history", content=b"\xff\xfe{", headers=headers)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "malformed_body"
