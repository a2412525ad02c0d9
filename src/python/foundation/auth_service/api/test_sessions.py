from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx

from foundation.events import schema
from tests.helpers.users import login, refresh, signed_in_user


async def test_sessions_lists_live_sessions_newest_first_marking_the_current_one(
    client: httpx.AsyncClient,
) -> None:
    user, first = await signed_in_user(client)
    second = await login(client, user, **{"User-Agent": "phone/1.0"})
    first = await refresh(client, first)
    ended = await login(client, user)
    await client.post("/auth/logout", json={"refresh_token": ended.refresh_token})

    response = await client.get("/auth/sessions", headers=first.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["next_cursor"] is None
    assert [item["id"] for item in body["items"]] == [str(second.session_id), str(first.session_id)]
    newest, oldest = body["items"]
    assert newest["current"] is False
    assert oldest["current"] is True
    assert newest["user_agent"] == "phone/1.0"
    assert newest["ip"] == "127.0.0.1"
    assert newest["last_used_at"] == newest["created_at"]
    assert oldest["last_used_at"] > oldest["created_at"]  # it was refreshed


async def test_sessions_are_cursor_paginated(client: httpx.AsyncClient) -> None:
    user, tokens = await signed_in_user(client)
    for _ in range(4):
        await login(client, user)
    first = (await client.get("/auth/sessions", params={"limit": 3}, headers=tokens.headers)).json()
    assert len(first["items"]) == 3
    assert first["next_cursor"]
    rest = (
        await client.get(
            "/auth/sessions", params={"limit": 3, "cursor": first["next_cursor"]}, headers=tokens.headers
        )
    ).json()
    assert len(rest["items"]) == 2
    assert rest["next_cursor"] is None
    ids = [item["id"] for item in first["items"] + rest["items"]]
    assert len(set(ids)) == 5


async def test_sessions_refuses_a_bad_cursor_or_limit(client: httpx.AsyncClient) -> None:
    _, tokens = await signed_in_user(client)
    bad_cursor = await client.get("/auth/sessions", params={"cursor": "!!!"}, headers=tokens.headers)
    assert bad_cursor.status_code == 400
    assert bad_cursor.json()["code"] == "invalid_cursor"
    wrong_shape = await client.get("/auth/sessions", params={"cursor": "eyJhIjoxfQ"}, headers=tokens.headers)
    assert wrong_shape.status_code == 400
    assert wrong_shape.json()["code"] == "invalid_cursor"
    too_many = await client.get("/auth/sessions", params={"limit": 500}, headers=tokens.headers)
    assert too_many.status_code == 422


async def test_sessions_without_a_token_is_401(client: httpx.AsyncClient) -> None:
    assert (await client.get("/auth/sessions")).status_code == 401
    assert (await client.delete(f"/auth/sessions/{uuid.uuid4()}")).status_code == 401
    assert (await client.post("/auth/logout-all")).status_code == 401


async def test_deleting_a_session_refuses_its_access_token_at_once(
    client: httpx.AsyncClient, outbox: Callable[..., Any]
) -> None:
    user, laptop = await signed_in_user(client)
    phone = await login(client, user)
    response = await client.delete(f"/auth/sessions/{phone.session_id}", headers=laptop.headers)
    assert response.status_code == 204
    refused = await client.get("/auth/me", headers=phone.headers)
    assert refused.status_code == 401
    assert refused.json()["code"] == "session_revoked"
    assert (
        await client.post("/auth/refresh", json={"refresh_token": phone.refresh_token})
    ).status_code == 401
    assert (await client.get("/auth/me", headers=laptop.headers)).status_code == 200
    assert (await outbox(user.id))[-1] == (
        schema.SESSION_REVOKED,
        {"session_id": str(phone.session_id), "reason": "user"},
    )


async def test_deleting_someone_elses_or_an_unknown_or_ended_session_is_404(
    client: httpx.AsyncClient,
) -> None:
    user, mine = await signed_in_user(client)
    _, theirs = await signed_in_user(client)
    ended = await login(client, user)
    await client.post("/auth/logout", json={"refresh_token": ended.refresh_token})
    for session_id in (theirs.session_id, uuid.uuid4(), ended.session_id):
        response = await client.delete(f"/auth/sessions/{session_id}", headers=mine.headers)
        assert response.status_code == 404
        assert response.json()["code"] == "session_not_found"
    assert (await client.get("/auth/me", headers=theirs.headers)).status_code == 200


async def test_deleting_a_session_with_a_malformed_id_is_422(client: httpx.AsyncClient) -> None:
    _, tokens = await signed_in_user(client)
    assert (await client.delete("/auth/sessions/not-a-uuid", headers=tokens.headers)).status_code == 422


async def test_logout_all_ends_every_session(client: httpx.AsyncClient, outbox: Callable[..., Any]) -> None:
    user, first = await signed_in_user(client)
    second = await login(client, user)
    response = await client.post("/auth/logout-all", headers=first.headers)
    assert response.status_code == 204
    for tokens in (first, second):
        assert (await client.get("/auth/me", headers=tokens.headers)).json()["code"] == "session_revoked"
        assert (
            await client.post("/auth/refresh", json={"refresh_token": tokens.refresh_token})
        ).status_code == 401
    events = await outbox(user.id)
    revoked = {data["session_id"] for kind, data in events if kind == schema.SESSION_REVOKED}
    assert revoked == {str(first.session_id), str(second.session_id)}
    assert events[-1] == (schema.USER_LOGGED_OUT, {"all_sessions": True, "count": 2})
    # A new sign-in works afterwards.
    fresh = await login(client, user)
    assert (await client.get("/auth/me", headers=fresh.headers)).status_code == 200
