from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from foundation.auth_service.app import create_app
from foundation.auth_service.models import Session
from foundation.auth_service.services.passwords import PasswordHasher
from foundation.auth_service.settings import AuthServiceSettings
from foundation.events import schema
from tests.helpers.apps import closed_port_redis_url, serve_app, state_of
from tests.helpers.auth import TEST_AUDIENCE, TEST_ISSUER
from tests.helpers.users import (
    STRONG_PASSWORD,
    Tokens,
    login,
    refresh,
    register,
    signed_in_user,
    unique_email,
)


async def live_rows(engine: AsyncEngine, family_id: uuid.UUID) -> int:
    async with engine.connect() as conn:
        count = await conn.scalar(
            select(func.count())
            .select_from(Session)
            .where(
                Session.family_id == family_id, Session.replaced_by_id.is_(None), Session.revoked_at.is_(None)
            )
        )
    return int(count or 0)


# -- login ---------------------------------------------------------------------------------


async def test_login_answers_an_rfc6749_token_response_with_contract_claims(
    client: httpx.AsyncClient, outbox: Callable[..., Any]
) -> None:
    user = await register(client)
    response = await client.post("/auth/login", json={"email": user.email.upper(), "password": user.password})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert len(body["refresh_token"]) >= 43  # 256 bits, base64url
    header = jwt.get_unverified_header(body["access_token"])
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "EdDSA"
    assert header["kid"]
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert set(claims) == {"iss", "aud", "sub", "sid", "roles", "iat", "exp", "jti", "auth_time", "amr"}
    assert claims["amr"] == ["pwd"]
    assert claims["iss"] == TEST_ISSUER
    assert claims["aud"] == TEST_AUDIENCE
    assert claims["sub"] == str(user.id)
    assert claims["exp"] - claims["iat"] == 900
    events = await outbox(user.id)
    assert events[-1][0] == schema.USER_LOGGED_IN
    assert events[-1][1]["session_id"] == claims["sid"]


async def test_unknown_email_and_wrong_password_get_the_same_401(
    client: httpx.AsyncClient, app: FastAPI, outbox: Callable[..., Any]
) -> None:
    user = await register(client)
    hasher: PasswordHasher = state_of(app)["session_service"].hasher
    verifications: list[str | None] = []
    original = hasher.verify

    def counting_verify(stored_hash: str | None, password: str) -> bool:
        verifications.append(stored_hash)
        return original(stored_hash, password)

    hasher.verify = counting_verify  # type: ignore[method-assign]
    wrong = await client.post("/auth/login", json={"email": user.email, "password": "Wrong-password-123"})
    unknown = await client.post(
        "/auth/login", json={"email": unique_email(), "password": "Wrong-password-123"}
    )
    assert wrong.status_code == unknown.status_code == 401

    def without_instance(body: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in body.items() if k != "instance"}

    assert without_instance(wrong.json()) == without_instance(unknown.json())
    assert wrong.json()["code"] == "invalid_credentials"
    # Both paths pay for exactly one argon2 verification (the unknown email against a dummy hash).
    assert len(verifications) == 2
    assert verifications[1] is None
    assert (await outbox(user.id))[-1] == (
        schema.USER_LOGIN_FAILED,
        {"reason": "invalid_credentials", "ip": "127.0.0.1"},
    )


@pytest.mark.parametrize("body", [{}, {"email": "a@example.com"}, {"email": "", "password": "x"}])
async def test_login_with_missing_fields_is_422(client: httpx.AsyncClient, body: dict[str, str]) -> None:
    response = await client.post("/auth/login", json=body)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


async def test_repeated_failures_throttle_the_account_then_let_the_owner_back(
    make_settings: Callable[..., AuthServiceSettings],
) -> None:
    app = create_app(make_settings(login_max_failures_per_account=3, login_failure_window=2))
    async with serve_app(app) as client:
        user = await register(client)
        for _ in range(3):
            wrong = await client.post("/auth/login", json={"email": user.email, "password": "nope-nope-nope"})
            assert wrong.status_code == 401
        blocked = await client.post("/auth/login", json={"email": user.email, "password": user.password})
        assert blocked.status_code == 429
        assert blocked.json()["code"] == "too_many_attempts"
        assert 1 <= int(blocked.headers["retry-after"]) <= 2
        assert blocked.headers["ratelimit-policy"] == '"login-account";q=3;w=2'
        # Another account from the same address is unaffected.
        other = await register(client)
        assert (
            await client.post("/auth/login", json={"email": other.email, "password": other.password})
        ).status_code == 200
        # The window ends: the owner signs in again (poll with a deadline, no long sleep).
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            response = await client.post("/auth/login", json={"email": user.email, "password": user.password})
            if response.status_code != 429:
                break
            await asyncio.sleep(0.1)
        assert response.status_code == 200


async def test_repeated_failures_from_one_address_throttle_that_address_only(
    make_settings: Callable[..., AuthServiceSettings],
) -> None:
    app = create_app(make_settings(login_max_failures_per_ip=3))
    async with (
        serve_app(app, client_ip="198.51.100.7") as attacker,
        serve_app(app, client_ip="203.0.113.9") as owner,
    ):
        user = await register(attacker)
        for _ in range(3):
            await attacker.post("/auth/login", json={"email": unique_email(), "password": "guess-guess-1"})
        blocked = await attacker.post("/auth/login", json={"email": user.email, "password": user.password})
        assert blocked.status_code == 429
        assert int(blocked.headers["retry-after"]) >= 1
        assert (
            await owner.post("/auth/login", json={"email": user.email, "password": user.password})
        ).status_code == 200


async def test_forwarded_for_is_believed_only_from_a_trusted_proxy(
    make_settings: Callable[..., AuthServiceSettings], outbox: Callable[..., Any]
) -> None:
    app = create_app(make_settings(trusted_proxies="10.0.0.0/8"))
    async with (
        serve_app(app, client_ip="10.1.2.3") as via_gateway,
        serve_app(app, client_ip="192.0.2.1") as direct,
    ):
        user = await register(via_gateway)
        await via_gateway.post(
            "/auth/login",
            json={"email": user.email, "password": "wrong-wrong-1"},
            headers={"X-Forwarded-For": "192.0.2.99, 198.51.100.1, 10.9.9.9"},
        )
        await direct.post(
            "/auth/login",
            json={"email": user.email, "password": "wrong-wrong-1"},
            headers={"X-Forwarded-For": "1.2.3.4"},
        )
    ips = [data["ip"] for kind, data in await outbox(user.id) if kind == schema.USER_LOGIN_FAILED]
    assert ips == ["198.51.100.1", "192.0.2.1"]


async def test_login_still_works_when_redis_is_down(
    make_settings: Callable[..., AuthServiceSettings],
) -> None:
    async with serve_app(create_app(make_settings())) as client:
        user = await register(client)
    async with serve_app(create_app(make_settings(redis_url=closed_port_redis_url()))) as client:
        response = await client.post("/auth/login", json={"email": user.email, "password": user.password})
    assert response.status_code == 200


async def test_login_rehashes_a_password_hashed_with_older_parameters(
    make_settings: Callable[..., AuthServiceSettings], engine: AsyncEngine
) -> None:
    from foundation.auth_service.models import User

    async with serve_app(create_app(make_settings())) as client:
        user = await register(client)
    async with serve_app(create_app(make_settings(argon2_time_cost=3))) as client:
        await login(client, user)
    async with engine.connect() as conn:
        stored = await conn.scalar(select(User.password_hash).where(User.id == user.id))
    assert stored is not None
    assert ",t=3," in stored
    assert stored.startswith("$argon2id$")


# -- refresh -------------------------------------------------------------------------------


async def test_refresh_rotates_both_tokens_and_keeps_the_session(
    client: httpx.AsyncClient, outbox: Callable[..., Any]
) -> None:
    user, tokens = await signed_in_user(client)
    renewed = await refresh(client, tokens)
    assert renewed.refresh_token != tokens.refresh_token
    assert renewed.access_token != tokens.access_token
    assert renewed.session_id == tokens.session_id
    assert (await client.get("/auth/me", headers=renewed.headers)).status_code == 200
    assert (await outbox(user.id))[-1] == (schema.TOKEN_REFRESHED, {"session_id": str(tokens.session_id)})


async def test_reused_refresh_token_revokes_the_family(
    make_settings: Callable[..., AuthServiceSettings], outbox: Callable[..., Any], engine: AsyncEngine
) -> None:
    async with serve_app(create_app(make_settings(refresh_grace_seconds=0))) as client:
        user, first = await signed_in_user(client)
        second = await refresh(client, first)
        third = await refresh(client, second)

        reused = await client.post("/auth/refresh", json={"refresh_token": first.refresh_token})
        assert reused.status_code == 401
        assert reused.json()["code"] == "refresh_token_reused"
        # The whole family is gone: the newest refresh token and its access token too.
        latest = await client.post("/auth/refresh", json={"refresh_token": third.refresh_token})
        assert latest.status_code == 401
        assert latest.json()["code"] == "refresh_token_revoked"
        me = await client.get("/auth/me", headers=third.headers)
        assert me.status_code == 401
        assert me.json()["code"] == "session_revoked"
    assert await live_rows(engine, first.session_id) == 0
    kinds = [kind for kind, _ in await outbox(user.id)]
    assert kinds[-2:] == [schema.REFRESH_TOKEN_REUSED, schema.SESSION_REVOKED]


async def test_replays_of_one_family_at_once_revoke_it_without_a_deadlock(
    make_settings: Callable[..., AuthServiceSettings], engine: AsyncEngine
) -> None:
    # Every replay locks the family's head before its own row: they queue instead of
    # deadlocking (which PostgreSQL would break after a second, answering 503).
    async with serve_app(create_app(make_settings(refresh_grace_seconds=0, db_pool_size=10))) as client:
        for _ in range(3):
            _, tokens = await signed_in_user(client)
            chain = [tokens]
            for _ in range(8):
                chain.append(await refresh(client, chain[-1]))
            # The newest token too: a live refresh racing the replays of its family.
            responses = await asyncio.gather(
                *(client.post("/auth/refresh", json={"refresh_token": t.refresh_token}) for t in chain)
            )
            codes = [(r.status_code, r.json().get("code")) for r in responses]
            assert all(status in (200, 401) for status, _ in codes), codes
            assert {code for status, code in codes if status == 401} <= {
                "refresh_token_reused",
                "refresh_token_revoked",
            }
            assert "refresh_token_reused" in {code for _, code in codes}, codes
            assert await live_rows(engine, tokens.session_id) == 0


async def test_previous_token_within_the_grace_window_gets_the_same_successor(
    client: httpx.AsyncClient,
) -> None:
    _, first = await signed_in_user(client)
    second = await refresh(client, first)
    again = await refresh(client, first)  # another tab, a moment later
    assert again.refresh_token == second.refresh_token
    assert again.session_id == second.session_id
    # The successor is still the live token; the one before the previous is not in grace.
    third = await refresh(client, second)
    stale = await client.post("/auth/refresh", json={"refresh_token": first.refresh_token})
    assert stale.status_code == 401
    assert stale.json()["code"] == "refresh_token_reused"
    assert (
        await client.post("/auth/refresh", json={"refresh_token": third.refresh_token})
    ).status_code == 401


async def test_twenty_concurrent_refreshes_leave_exactly_one_live_successor(
    make_settings: Callable[..., AuthServiceSettings], engine: AsyncEngine
) -> None:
    async with serve_app(create_app(make_settings(db_pool_size=20, db_max_overflow=5))) as client:
        _, tokens = await signed_in_user(client)
        responses = await asyncio.gather(
            *(client.post("/auth/refresh", json={"refresh_token": tokens.refresh_token}) for _ in range(20))
        )
        assert [r.status_code for r in responses] == [200] * 20
        successors = {r.json()["refresh_token"] for r in responses}
        assert len(successors) == 1
        assert await live_rows(engine, tokens.session_id) == 1
        # And that successor works.
        (successor,) = successors
        assert (await client.post("/auth/refresh", json={"refresh_token": successor})).status_code == 200


@pytest.mark.parametrize("token", ["", "short", "x" * 600, "not a token!" * 3])
async def test_malformed_refresh_tokens_are_refused(client: httpx.AsyncClient, token: str) -> None:
    response = await client.post("/auth/refresh", json={"refresh_token": token})
    assert response.status_code in {401, 422}
    assert response.json()["code"] in {"invalid_refresh_token", "validation_error"}


async def test_unknown_refresh_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/refresh", json={"refresh_token": "A" * 43})
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_refresh_token"


async def test_refresh_of_a_deactivated_user_is_refused(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    from sqlalchemy import update

    from foundation.auth_service.models import User

    user, tokens = await signed_in_user(client)
    async with engine.begin() as conn:
        await conn.execute(update(User).where(User.id == user.id).values(is_active=False))
    response = await client.post("/auth/refresh", json={"refresh_token": tokens.refresh_token})
    assert response.status_code == 401
    assert response.json()["code"] == "refresh_token_expired"
    relogin = await client.post("/auth/login", json={"email": user.email, "password": user.password})
    assert relogin.status_code == 401
    assert relogin.json()["code"] == "invalid_credentials"


# -- what the token routes accept ----------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "application/vnd.api+json"],
)
async def test_sign_in_and_refresh_take_any_json_media_type_and_answer_uncached_json(
    client: httpx.AsyncClient, content_type: str
) -> None:
    user = await register(client)
    headers = {"content-type": content_type, "x-request-id": "req-fast-1"}
    payload = f'{{"email": "{user.email}", "password": "{user.password}"}}'
    signed_in = await client.post("/auth/login", content=payload, headers=headers)
    assert signed_in.status_code == 200
    refresh_body = f'{{"refresh_token": "{signed_in.json()["refresh_token"]}"}}'
    refreshed = await client.post("/auth/refresh", content=refresh_body, headers=headers)
    assert refreshed.status_code == 200
    for response in (signed_in, refreshed):
        assert response.headers["content-type"] == "application/json"
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["pragma"] == "no-cache"
        assert response.headers["x-request-id"] == "req-fast-1"
        assert set(response.json()) == {"access_token", "token_type", "expires_in", "refresh_token"}
    unknown = await client.post(
        "/auth/refresh", content='{"refresh_token": "' + "A" * 43 + '"}', headers=headers
    )
    assert unknown.status_code == 401
    assert unknown.headers["content-type"] == "application/problem+json"
    assert unknown.headers["x-request-id"] == "req-fast-1"
    assert unknown.json()["code"] == "invalid_refresh_token"
    assert unknown.json()["instance"] == "/auth/refresh"


async def test_a_body_sent_in_pieces_is_read_whole(client: httpx.AsyncClient) -> None:
    user = await register(client)
    payload = f'{{"email": "{user.email}", "password": "{user.password}"}}'.encode()

    async def pieces() -> Any:
        for start in range(0, len(payload), 7):
            yield payload[start : start + 7]

    response = await client.post(
        "/auth/login", content=pieces(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        ('{"email": "a@example.com", "password": ', "application/json"),  # cut short
        ("email=a%40example.com&password=x", "application/x-www-form-urlencoded"),
        ('{"email": "a@example.com", "password": "' + "x" * 20_000 + '"}', "application/json"),
        ('["a@example.com", "violet-Harbor-93"]', "application/json"),
    ],
)
async def test_bodies_that_are_not_a_plain_sign_in_get_the_usual_422(
    client: httpx.AsyncClient, content: str, content_type: str
) -> None:
    response = await client.post("/auth/login", content=content, headers={"content-type": content_type})
    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert problem["errors"], problem


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        ('{"refresh_token": ', {"content-type": "application/json"}, 422),  # cut short
        ('{"refresh_token": 7}', {"content-type": "application/json"}, 422),
        ('{"token": "' + "A" * 43 + '"}', {"content-type": "application/json"}, 422),
        ("refresh_token=" + "A" * 43, {"content-type": "application/x-www-form-urlencoded"}, 422),
        ('{"refresh_token": "' + "A" * 43 + '"}', {"content-type": "text/plain"}, 422),
        ('{"refresh_token": "' + "A" * 43 + '"}', {}, 422),  # no content type: not read as JSON
        (b'{"refresh_token": "\xff"}', {"content-type": "application/json"}, 400),  # not UTF-8
    ],
)
async def test_refresh_bodies_are_refused_as_a_declared_body_would_be(
    client: httpx.AsyncClient, content: str | bytes, headers: dict[str, str], status: int
) -> None:
    response = await client.post("/auth/refresh", content=content, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    if status == 422:
        assert problem["code"] == "validation_error"
        assert problem["errors"] and all(e["location"] == "body" for e in problem["errors"]), problem
        assert "A" * 43 not in response.text  # the input is not echoed
    else:
        assert problem["code"] == "malformed_body"


def test_the_token_routes_document_their_bodies_answers_and_problems(app: FastAPI) -> None:
    document = app.openapi()
    schemas = document["components"]["schemas"]
    for path, body, properties in (
        ("/auth/login", "LoginRequest", {"email", "password"}),
        ("/auth/refresh", "RefreshRequest", {"refresh_token"}),
    ):
        operation = document["paths"][path]["post"]
        content = operation["requestBody"]["content"]
        assert operation["requestBody"]["required"] is True
        assert content["application/json"]["schema"] == {"$ref": f"#/components/schemas/{body}"}
        assert set(schemas[body]["properties"]) == properties
        ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": "#/components/schemas/TokenResponse"}
        statuses = {"200", "400", "401", "422", "503"} | ({"403", "429"} if path == "/auth/login" else set())
        assert set(operation["responses"]) == statuses
        for status in statuses - {"200"}:
            assert set(operation["responses"][status]["content"]) == {"application/problem+json"}


# -- logout --------------------------------------------------------------------------------


async def test_logout_ends_the_session_and_its_access_tokens(
    client: httpx.AsyncClient, outbox: Callable[..., Any]
) -> None:
    user, tokens = await signed_in_user(client)
    other = await login(client, user)
    response = await client.post("/auth/logout", json={"refresh_token": tokens.refresh_token})
    assert response.status_code == 204
    assert (
        await client.post("/auth/refresh", json={"refresh_token": tokens.refresh_token})
    ).status_code == 401
    me = await client.get("/auth/me", headers=tokens.headers)
    assert me.status_code == 401
    assert me.json()["code"] == "session_revoked"
    # The user's other session is untouched.
    assert (await client.get("/auth/me", headers=other.headers)).status_code == 200
    assert (await outbox(user.id))[-1] == (schema.USER_LOGGED_OUT, {"session_id": str(tokens.session_id)})


async def test_logout_with_an_unknown_or_spent_token_is_204(client: httpx.AsyncClient) -> None:
    _, tokens = await signed_in_user(client)
    assert (await client.post("/auth/logout", json={"refresh_token": "B" * 43})).status_code == 204
    assert (await client.post("/auth/logout", json={"refresh_token": "??"})).status_code == 204
    await client.post("/auth/logout", json={"refresh_token": tokens.refresh_token})
    assert (
        await client.post("/auth/logout", json={"refresh_token": tokens.refresh_token})
    ).status_code == 204


async def test_logout_without_a_body_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/logout", json={})
    assert response.status_code == 422


def test_tokens_helper_reads_the_session_id() -> None:
    tokens = Tokens(jwt.encode({"sid": str(uuid.UUID(int=7))}, "k" * 32, algorithm="HS256"), "r", 1)
    assert tokens.session_id == uuid.UUID(int=7)


async def test_sign_in_and_register_answer_503_while_the_database_pools_are_exhausted(
    make_settings: Callable[..., AuthServiceSettings],
) -> None:
    """Sign-in (on the direct pool) and registration (on the ORM's) turn a pool wait that
    runs out into 503 `database_unavailable` with Retry-After, not a 500."""
    app = create_app(make_settings(db_pool_size=1, db_max_overflow=0, db_pool_timeout=0.2))
    async with serve_app(app) as client:
        async with state_of(app)["direct_sql"].pool.connection(), state_of(app)["engine"].connect():
            signing_in = await client.post(
                "/auth/login", json={"email": unique_email(), "password": STRONG_PASSWORD}
            )
            registering = await client.post(
                "/auth/register", json={"email": unique_email(), "password": STRONG_PASSWORD}
            )
        for answer in (signing_in, registering):
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"] == "1"
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["code"] == "database_unavailable"
        # With the connections back, the same requests work.
        assert (await register(client)).email
