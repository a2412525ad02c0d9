from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from foundation.events import schema
from tests.helpers.apps import state_of
from tests.helpers.auth import TestSigner, bearer
from tests.helpers.users import STRONG_PASSWORD, login, refresh, register, signed_in_user, unique_email


async def test_register_creates_the_user_and_records_the_event(
    client: httpx.AsyncClient, outbox: Callable[..., Any]
) -> None:
    email = unique_email()
    response = await client.post("/auth/register", json={"email": email, "password": STRONG_PASSWORD})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "email", "created_at"}
    assert body["email"] == email
    assert await outbox(uuid.UUID(body["id"])) == [(schema.USER_REGISTERED, {"method": "password"})]


async def test_register_refuses_the_same_email_in_another_case(client: httpx.AsyncClient) -> None:
    email = unique_email("Case")
    await register(client, email)
    response = await client.post("/auth/register", json={"email": email.upper(), "password": STRONG_PASSWORD})
    assert response.status_code == 409
    assert response.json()["code"] == "email_taken"


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("Ab1!xyz", "to 128 characters"),
        ("x7#Lq" * 26, "to 128 characters"),
        ("password123", "common"),
        ("qwertyuiop", ""),
    ],
)
async def test_register_refuses_short_long_and_guessable_passwords(
    client: httpx.AsyncClient, password: str, reason: str
) -> None:
    response = await client.post("/auth/register", json={"email": unique_email(), "password": password})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "weak_password"
    assert reason in body["detail"]
    assert body["errors"][0]["field"] == "password"


async def test_register_refuses_a_password_made_of_the_email(client: httpx.AsyncClient) -> None:
    email = unique_email("margarethe")
    local = email.split("@")[0]
    response = await client.post("/auth/register", json={"email": email, "password": local})
    assert response.status_code == 422
    assert response.json()["code"] == "weak_password"


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "password": STRONG_PASSWORD},
        {"email": unique_email()},
        {"password": STRONG_PASSWORD},
        {},
    ],
)
async def test_register_with_invalid_fields_is_422_naming_them(
    client: httpx.AsyncClient, body: dict[str, str]
) -> None:
    response = await client.post("/auth/register", json=body)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    missing = {"email", "password"} - set(body) or {"email"}
    assert missing <= {error["field"] for error in response.json()["errors"]}


async def test_unicode_passwords_are_normalised(client: httpx.AsyncClient) -> None:
    # "ﬁ" (U+FB01) and "fi" are the same password after NFKC.
    user = await register(client, password="ﬁrefly-Tundra-77-Quartz")
    response = await client.post(
        "/auth/login", json={"email": user.email, "password": "firefly-Tundra-77-Quartz"}
    )
    assert response.status_code == 200


async def test_me_returns_the_signed_in_user(client: httpx.AsyncClient) -> None:
    user, tokens = await signed_in_user(client)
    response = await client.get("/auth/me", headers=tokens.headers)
    assert response.status_code == 200
    assert response.json()["id"] == str(user.id)
    assert response.json()["email"] == user.email
    assert response.json()["roles"] == []


async def test_me_without_a_token_is_401_missing_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/auth/me")
    assert response.status_code == 401
    assert response.json()["code"] == "missing_token"
    assert response.headers["www-authenticate"] == "Bearer"


async def test_me_with_a_token_from_a_foreign_key_is_401(client: httpx.AsyncClient) -> None:
    user, _ = await signed_in_user(client)
    forged = TestSigner().issue(user_id=user.id)
    response = await client.get("/auth/me", headers=bearer(forged))
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


async def test_delete_me_removes_the_account_ends_sessions_and_records_the_event(
    client: httpx.AsyncClient, outbox: Callable[..., Any]
) -> None:
    user, tokens = await signed_in_user(client)
    other_device = await login(client, user)

    response = await client.delete("/auth/me", headers=tokens.headers)
    assert response.status_code == 204

    assert (await client.get("/auth/me", headers=other_device.headers)).json()["code"] == "session_revoked"
    relogin = await client.post("/auth/login", json={"email": user.email, "password": user.password})
    assert relogin.status_code == 401
    refreshed = await client.post("/auth/refresh", json={"refresh_token": other_device.refresh_token})
    assert refreshed.status_code == 401
    assert (await outbox(user.id))[-1] == (schema.USER_DELETED, {})
    # The email is free again.
    await register(client, user.email)


async def test_delete_me_without_a_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.delete("/auth/me")
    assert response.status_code == 401


async def test_events_reach_the_stream_through_the_outbox_relay(
    make_settings: Callable[..., Any], redis_url: str, redis_prefix: str
) -> None:
    import asyncio
    import time

    import redis.asyncio as aioredis

    from foundation.auth_service.app import create_app
    from foundation.shared.redis import Keys
    from tests.helpers.apps import serve_app

    prefix = f"{redis_prefix}relay:"
    app = create_app(
        make_settings(outbox_relay_enabled=True, outbox_poll_interval=0.02, redis_key_prefix=prefix)
    )
    stream = Keys(prefix)(schema.STREAM)
    reader = aioredis.Redis.from_url(redis_url)
    try:
        async with serve_app(app) as client:
            user = await register(client)
            deadline = time.monotonic() + 10
            events: list[schema.Event] = []
            while time.monotonic() < deadline:
                entries: list[tuple[bytes, dict[bytes, bytes]]] = await reader.xrange(stream)  # type: ignore[assignment]
                events = [schema.Event.from_fields(fields) for _, fields in entries]
                if any(e.user_id == user.id for e in events):
                    break
                await asyncio.sleep(0.02)
        assert [(e.type, e.user_id) for e in events if e.user_id == user.id] == [
            (schema.USER_REGISTERED, user.id)
        ]
    finally:
        await reader.aclose()


async def test_commits_wake_the_relay_without_waiting_for_its_poll(
    make_settings: Callable[..., Any], redis_url: str, redis_prefix: str
) -> None:
    import asyncio
    import time

    import redis.asyncio as aioredis

    from foundation.auth_service.app import create_app
    from foundation.shared.redis import Keys
    from tests.helpers.apps import serve_app

    prefix = f"{redis_prefix}wake:"
    # A poll an hour apart: only the wake-up on commit can publish within the test.
    app = create_app(
        make_settings(outbox_relay_enabled=True, outbox_poll_interval=3600, redis_key_prefix=prefix)
    )
    stream = Keys(prefix)(schema.STREAM)
    reader = aioredis.Redis.from_url(redis_url)
    wanted = [schema.USER_REGISTERED, schema.USER_LOGGED_IN, schema.TOKEN_REFRESHED]
    try:
        async with serve_app(app) as client:
            await asyncio.sleep(0.2)  # the relay's first pass (at start) is done
            user, tokens = await signed_in_user(client)  # session commit, then direct-pool writes
            refreshed = await client.post("/auth/refresh", json={"refresh_token": tokens.refresh_token})
            assert refreshed.status_code == 200
            deadline = time.monotonic() + 5
            seen: list[str] = []
            while time.monotonic() < deadline:
                entries: list[tuple[bytes, dict[bytes, bytes]]] = await reader.xrange(stream)  # type: ignore[assignment]
                seen = [
                    e.type for e in (schema.Event.from_fields(f) for _, f in entries) if e.user_id == user.id
                ]
                if seen == wanted:
                    break
                await asyncio.sleep(0.02)
        assert seen == wanted
    finally:
        await reader.aclose()


async def test_access_tokens_carry_the_sign_in_time_and_refresh_keeps_it(
    client: httpx.AsyncClient, app: Any
) -> None:
    user = await register(client)
    service = state_of(app)["session_service"]
    real_clock = service.clock
    signed_in_at = real_clock() - timedelta(seconds=1_000)
    service.clock = lambda: signed_in_at
    tokens = await login(client, user)
    service.clock = real_clock
    assert tokens.claims["auth_time"] == int(signed_in_at.timestamp())
    assert (await refresh(client, tokens)).claims["auth_time"] == int(signed_in_at.timestamp())


async def test_delete_me_with_a_fresh_sign_in_is_allowed(client: httpx.AsyncClient) -> None:
    _, tokens = await signed_in_user(client)
    assert abs(tokens.claims["auth_time"] - time.time()) < 5
    assert (await client.delete("/auth/me", headers=tokens.headers)).status_code == 204


async def test_delete_me_with_a_stale_sign_in_is_401_fresh_authentication_required(
    client: httpx.AsyncClient, app: Any
) -> None:
    user = await register(client)
    service = state_of(app)["session_service"]
    real_clock = service.clock
    old = real_clock() - timedelta(seconds=301)
    service.clock = lambda: old
    stale = await login(client, user)
    service.clock = real_clock
    # Refreshing keeps the old sign-in time: a refresh token is no proof of who is there.
    refreshed = await refresh(client, stale)

    for tokens in (stale, refreshed):
        response = await client.delete("/auth/me", headers=tokens.headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "fresh_authentication_required"
        assert response.headers["www-authenticate"] == (
            'Bearer error="insufficient_user_authentication", max_age=300'
        )
    assert (await client.get("/auth/me", headers=refreshed.headers)).status_code == 200  # still there

    fresh = await login(client, user)
    assert (await client.delete("/auth/me", headers=fresh.headers)).status_code == 204


async def test_delete_me_with_a_token_without_auth_time_is_refused(
    client: httpx.AsyncClient, app: Any
) -> None:
    user, tokens = await signed_in_user(client)
    issuer = state_of(app)["session_service"].issuer
    bare = issuer.issue(user.id, uuid.UUID(tokens.claims["sid"]))  # as tokens were before auth_time
    response = await client.delete("/auth/me", headers=bearer(bare.token))
    assert (response.status_code, response.json()["code"]) == (401, "fresh_authentication_required")
