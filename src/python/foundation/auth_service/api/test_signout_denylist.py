"""Signing out while Redis (the access-token deny-list) is away: 503, and nothing half done.

The Redis here is a server of the test's own (tests/helpers/faults.py), really stopped."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from foundation.auth_service.app import create_app
from foundation.auth_service.models import Session
from foundation.auth_service.services.sessions import ClientInfo, SessionService, TokenPair
from foundation.auth_service.settings import AuthServiceSettings
from foundation.shared.errors import ServiceUnavailable
from tests.helpers.apps import serve_app, state_of
from tests.helpers.auth import bearer
from tests.helpers.faults import ThrowawayRedis, eventually, throwaway_redis
from tests.helpers.users import register


@pytest.fixture()
def redis_server(tmp_path: Path) -> Iterator[ThrowawayRedis]:
    with throwaway_redis(tmp_path / "redis", persist=False) as server:
        yield server


@pytest.fixture()
async def served(
    make_settings: Callable[..., AuthServiceSettings], redis_server: ThrowawayRedis
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    app = create_app(make_settings(redis_url=redis_server.url))
    async with serve_app(app) as client:
        yield client, app


async def _revoked_rows(engine: AsyncEngine, family_id: uuid.UUID) -> int:
    async with engine.connect() as conn:
        count = await conn.scalar(
            select(func.count())
            .select_from(Session)
            .where(Session.family_id == family_id, Session.revoked_at.is_not(None))
        )
    return int(count or 0)


async def _session(app: FastAPI, user_id: uuid.UUID) -> TokenPair:
    service: SessionService = state_of(app)["session_service"]
    return await service.start_session(
        user_id, [], ClientInfo(ip="127.0.0.1"), method="password", amr=("pwd",)
    )


async def test_logout_with_the_deny_list_away_answers_503_and_a_retry_completes_it(
    served: tuple[httpx.AsyncClient, FastAPI], redis_server: ThrowawayRedis, engine: AsyncEngine
) -> None:
    client, app = served
    user = await register(client)
    pair = await _session(app, user.id)

    redis_server.kill()
    response = await client.post("/auth/logout", json={"refresh_token": pair.refresh_token})
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "redis_unavailable"
    assert response.headers["retry-after"] == "1"
    # The refresh token is dead all the same: the revocation committed before the write.
    assert await _revoked_rows(engine, pair.session_id) == 1
    spent = await client.post("/auth/refresh", json={"refresh_token": pair.refresh_token})
    assert spent.json()["code"] == "refresh_token_revoked"

    redis_server.restart()

    async def signed_out() -> bool:
        retry = await client.post("/auth/logout", json={"refresh_token": pair.refresh_token})
        return retry.status_code == 204

    await eventually(signed_out, what="logout retried once Redis is back")
    # The retry wrote the deny-list entry: the access token is refused.
    me = await client.get("/auth/me", headers=bearer(pair.access_token))
    assert me.status_code == 401, me.text


async def test_ending_sessions_with_the_deny_list_away_answers_503_and_a_retry_denies(
    served: tuple[httpx.AsyncClient, FastAPI], redis_server: ThrowawayRedis, engine: AsyncEngine
) -> None:
    # Over HTTP the bearer check itself answers 503 while Redis is away; these are requests
    # whose check passed just before Redis went.
    client, app = served
    user = await register(client)
    pairs = [await _session(app, user.id) for _ in range(2)]
    service: SessionService = state_of(app)["session_service"]

    redis_server.kill()
    with pytest.raises(ServiceUnavailable) as refused:
        async with service.db_sessions() as db:
            await service.revoke(db, user.id, pairs[0].session_id)
    assert refused.value.code == "redis_unavailable"
    with pytest.raises(ServiceUnavailable):
        async with service.db_sessions() as db:
            await service.logout_all(db, user.id)
    assert [await _revoked_rows(engine, pair.session_id) for pair in pairs] == [1, 1]

    redis_server.restart()

    async def deleted_again() -> bool:
        retry = await client.delete(
            f"/auth/sessions/{pairs[0].session_id}", headers=bearer(pairs[1].access_token)
        )
        return retry.status_code == 404  # ended already; its access tokens are denied again

    await eventually(deleted_again, what="DELETE retried once Redis is back")
    me = await client.get("/auth/me", headers=bearer(pairs[0].access_token))
    assert me.status_code == 401, me.text
