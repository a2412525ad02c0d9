"""foundation.database.lifespan: the state every database service opens, closed again by its
exit stack, also when start-up fails half-way."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text

from foundation.auth.keys import StaticKeySource
from foundation.auth.verifier import TokenVerifier
from foundation.database.lifespan import ServiceState, service_lifespan
from foundation.shared.settings import ServiceSettings
from tests.helpers.auth import TEST_AUDIENCE, TEST_ISSUER


class ClosingKeys(StaticKeySource):
    def __init__(self) -> None:
        super().__init__({"keys": []})
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


def settings(postgres_url: str, redis_url: str) -> ServiceSettings:
    return ServiceSettings(database_url=postgres_url, redis_url=redis_url)


async def test_the_state_is_live_while_the_app_runs_and_closed_after(
    postgres_url: str, redis_url: str
) -> None:
    keys = ClosingKeys()
    verifier = TokenVerifier(keys, issuer=TEST_ISSUER, audience=TEST_AUDIENCE)

    def nothing_more(stack: Any, base: ServiceState) -> ServiceState:
        return base

    lifespan = service_lifespan(settings(postgres_url, redis_url), verifier, nothing_more)
    async with lifespan(FastAPI()) as state:
        async with state["engine"].connect() as connection:
            assert (await connection.execute(text("SELECT 1"))).scalar() == 1
        assert await state["redis"].ping()
        assert state["token_verifier"] is verifier
        assert not keys.closed
    assert keys.closed
    assert state["engine"].pool.checkedin() == 0  # disposed: no connection kept


async def test_a_start_up_that_fails_half_way_closes_what_it_opened(
    postgres_url: str, redis_url: str
) -> None:
    keys = ClosingKeys()
    verifier = TokenVerifier(keys, issuer=TEST_ISSUER, audience=TEST_AUDIENCE)

    def fail(stack: Any, base: ServiceState) -> ServiceState:
        raise RuntimeError("cannot start")

    lifespan = service_lifespan(settings(postgres_url, redis_url), verifier, fail)
    with pytest.raises(RuntimeError, match="cannot start"):
        async with lifespan(FastAPI()):
            pass
    assert keys.closed
