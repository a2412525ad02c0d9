"""Session lifetimes and the grace window, with the service's clock moved by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from foundation.auth_service.app import create_app
from foundation.auth_service.settings import AuthServiceSettings
from tests.helpers.apps import serve_app, state_of
from tests.helpers.users import Tokens, refresh, signed_in_user

HOUR = 3600


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
async def timed(
    make_settings: Callable[..., AuthServiceSettings], clock: Clock
) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(
        make_settings(session_idle_timeout=HOUR, session_absolute_lifetime=3 * HOUR, refresh_grace_seconds=10)
    )
    async with serve_app(app) as client:
        state_of(app)["session_service"].clock = clock
        yield client


async def refresh_status(client: httpx.AsyncClient, tokens: Tokens) -> tuple[int, str | None]:
    response = await client.post("/auth/refresh", json={"refresh_token": tokens.refresh_token})
    return response.status_code, response.json().get("code")


async def test_an_idle_session_expires(timed: httpx.AsyncClient, clock: Clock) -> None:
    _, tokens = await signed_in_user(timed)
    clock.advance(HOUR + 1)
    assert await refresh_status(timed, tokens) == (401, "refresh_token_expired")


async def test_use_keeps_a_session_alive_until_its_absolute_lifetime(
    timed: httpx.AsyncClient, clock: Clock
) -> None:
    # Refresh every 50 minutes: never idle for an hour, yet the session ends after 3 hours.
    _, tokens = await signed_in_user(timed)
    start = clock.now
    while clock.now - start < timedelta(hours=2, minutes=30):
        clock.advance(50 * 60)
        tokens = await refresh(timed, tokens)
    clock.advance(50 * 60)  # 3 h 20 min after sign-in: past the absolute lifetime
    assert await refresh_status(timed, tokens) == (401, "refresh_token_expired")


async def test_the_grace_window_ends(timed: httpx.AsyncClient, clock: Clock) -> None:
    _, first = await signed_in_user(timed)
    await refresh(timed, first)
    clock.advance(11)
    assert await refresh_status(timed, first) == (401, "refresh_token_reused")
