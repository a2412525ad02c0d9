"""Ending sessions while their refresh tokens are being rotated.

Each test starts many sessions, keeps every one of them refreshing as fast as it can, and
ends them all in the middle of it (logout-all, logout, ``DELETE /auth/sessions/{id}``, reuse
of a spent token). Afterwards no refresh token ever issued to those sessions may work, and
no live row may remain: a refresh in flight during the revocation must not leave a live
successor behind.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from foundation.auth_service.app import create_app
from foundation.auth_service.models import Session
from foundation.auth_service.services.sessions import ClientInfo, SessionService
from foundation.auth_service.settings import AuthServiceSettings
from tests.helpers.apps import serve_app, state_of
from tests.helpers.auth import bearer
from tests.helpers.users import register

FAMILIES = 32  # sessions per round
GENERATIONS = 4  # refresh tokens each has had when they are ended
BUDGET, MIN_ROUNDS = 2.0, 2  # seconds of rounds (at least this many) unless one leaks
# Refreshes each session keeps making after the revocation has answered: a survivor shows.
AFTER = 3


@dataclass
class Family:
    id: uuid.UUID
    access_token: str
    issued: list[str] = field(default_factory=list)  # every refresh token, oldest first
    refused: int | None = None  # the status that ended its rotation


@pytest.fixture()
async def racing(
    make_settings: Callable[..., AuthServiceSettings],
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    app = create_app(make_settings(db_pool_size=12))
    async with serve_app(app) as client:
        yield client, app


async def _families(app: FastAPI, user_id: uuid.UUID, count: int) -> list[Family]:
    # A session as sign-in opens it (the password check is what it skips: 48 argon2 runs).
    service: SessionService = state_of(app)["session_service"]
    families = []
    for _ in range(count):
        pair = await service.start_session(
            user_id, [], ClientInfo(ip="127.0.0.1"), method="password", amr=("pwd",)
        )
        families.append(Family(pair.session_id, pair.access_token, [pair.refresh_token]))
    return families


async def _churn(client: httpx.AsyncClient, family: Family, revoked: asyncio.Event) -> None:
    """Refresh with the newest token until refused; a few more times once the revocation has
    answered (a survivor keeps rotating)."""
    after = 0
    while after < AFTER:
        response = await client.post("/auth/refresh", json={"refresh_token": family.issued[-1]})
        if response.status_code != 200:
            family.refused = response.status_code
            return
        family.issued.append(response.json()["refresh_token"])
        if revoked.is_set():
            after += 1


async def _live_rows(engine: AsyncEngine, families: list[Family]) -> int:
    async with engine.connect() as conn:
        count = await conn.scalar(
            select(func.count())
            .select_from(Session)
            .where(
                Session.family_id.in_([family.id for family in families]),
                Session.replaced_by_id.is_(None),
                Session.revoked_at.is_(None),
            )
        )
    return int(count or 0)


async def _accepted(client: httpx.AsyncClient, family: Family) -> list[int]:
    """Present each of the family's refresh tokens, newest first (a live successor answers
    before an older token's reuse detection revokes it); the answers that were not 401."""
    statuses = []
    for token in reversed(family.issued):
        response = await client.post("/auth/refresh", json={"refresh_token": token})
        if response.status_code != 401:
            statuses.append(response.status_code)
    return statuses


async def _race(
    client: httpx.AsyncClient,
    app: FastAPI,
    user_id: uuid.UUID,
    revoke: Callable[[list[Family]], Awaitable[None]],
    engine: AsyncEngine,
) -> None:
    """Rounds of: new sessions rotating, all ended at once. Until one leaves a live row, or
    for ``BUDGET`` seconds; then every refresh token issued is presented."""
    families: list[Family] = []
    deadline, rounds, survivors = time.monotonic() + BUDGET, 0, 0
    while not survivors and (rounds < MIN_ROUNDS or time.monotonic() < deadline):
        rounds += 1
        batch = await _families(app, user_id, FAMILIES)
        revoked = asyncio.Event()
        churners = [asyncio.create_task(_churn(client, family, revoked)) for family in batch]
        while min(len(family.issued) for family in batch) < GENERATIONS:
            assert not any(task.done() for task in churners), [family.refused for family in batch]
            await asyncio.sleep(0.002)
        await revoke(batch)
        revoked.set()
        await asyncio.wait_for(asyncio.gather(*churners), timeout=30)
        families += batch
        survivors = await _live_rows(engine, families)

    answers = await asyncio.gather(*(_accepted(client, family) for family in families))
    accepted = [status for statuses in answers for status in statuses]
    issued = sum(len(family.issued) for family in families)
    print(f"rounds={rounds} families={len(families)} issued={issued} survivors={survivors}")
    assert (survivors, accepted) == (
        0,
        [],
    ), f"round {rounds}: {survivors} live rows; {len(accepted)} of {issued} refresh tokens accepted"


async def test_refreshes_racing_logout_all_leave_no_session_alive(
    racing: tuple[httpx.AsyncClient, FastAPI], engine: AsyncEngine
) -> None:
    client, app = racing
    user = await register(client)

    async def logout_all(batch: list[Family]) -> None:
        response = await client.post("/auth/logout-all", headers=bearer(batch[0].access_token))
        assert response.status_code == 204, response.text

    await _race(client, app, user.id, logout_all, engine)


async def test_refreshes_racing_logout_leave_no_session_alive(
    racing: tuple[httpx.AsyncClient, FastAPI], engine: AsyncEngine
) -> None:
    client, app = racing
    user = await register(client)

    async def logout_each(batch: list[Family]) -> None:
        # Another tab signs out with the token it holds, an older one of the same session.
        responses = await asyncio.gather(
            *(client.post("/auth/logout", json={"refresh_token": family.issued[0]}) for family in batch)
        )
        assert [response.status_code for response in responses] == [204] * len(batch)

    await _race(client, app, user.id, logout_each, engine)


async def test_refreshes_racing_session_deletion_leave_no_session_alive(
    racing: tuple[httpx.AsyncClient, FastAPI], engine: AsyncEngine
) -> None:
    client, app = racing
    user = await register(client)
    control = (await _families(app, user.id, 1))[0]

    async def delete_each(batch: list[Family]) -> None:
        responses = await asyncio.gather(
            *(
                client.delete(f"/auth/sessions/{family.id}", headers=bearer(control.access_token))
                for family in batch
            )
        )
        assert [response.status_code for response in responses] == [204] * len(batch)

    await _race(client, app, user.id, delete_each, engine)


async def test_refreshes_racing_reuse_detection_leave_no_session_alive(
    racing: tuple[httpx.AsyncClient, FastAPI], engine: AsyncEngine
) -> None:
    client, app = racing
    user = await register(client)

    async def replay_each(batch: list[Family]) -> None:
        # A thief replays the first token of each session, long spent: the family is revoked.
        responses = await asyncio.gather(
            *(client.post("/auth/refresh", json={"refresh_token": family.issued[0]}) for family in batch)
        )
        assert {response.json()["code"] for response in responses} == {"refresh_token_reused"}

    await _race(client, app, user.id, replay_each, engine)
