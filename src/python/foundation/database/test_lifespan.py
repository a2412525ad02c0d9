"""foundation.database.lifespan: the state every database service opens, closed again by its
exit stack, also when start-up fails half-way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text

from foundation.auth.keys import StaticKeySource
from foundation.auth.verifier import TokenVerifier
from foundation.database.lifespan import ServiceState, service_lifespan
from foundation.shared.lifespan import Lifespan
from foundation.shared.settings import ServiceSettings
from tests.helpers.auth import TEST_AUDIENCE, TEST_ISSUER


class ClosingKeys(StaticKeySource):
    def __init__(self) -> None:
        super().__init__({"keys": []})
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


def lifespan_with(
    postgres_url: str, redis_url: str, open_more: Callable[[Any, ServiceState], ServiceState]
) -> tuple[Lifespan[ServiceState], ClosingKeys, TokenVerifier]:
    keys = ClosingKeys()
    verifier = TokenVerifier(keys, issuer=TEST_ISSUER, audience=TEST_AUDIENCE)
    settings = ServiceSettings(database_url=postgres_url, redis_url=redis_url)
    return service_lifespan(settings, verifier, open_more), keys, verifier


async def test_the_state_is_live_while_the_app_runs_and_closed_after(
    postgres_url: str, redis_url: str
) -> None:
    lifespan, keys, verifier = lifespan_with(postgres_url, redis_url, lambda stack, base: base)
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
    def fail(stack: Any, base: ServiceState) -> ServiceState:
        raise RuntimeError("cannot start")

    lifespan, keys, _ = lifespan_with(postgres_url, redis_url, fail)
    with pytest.raises(RuntimeError, match="cannot start"):
        async with lifespan(FastAPI()):
            pass
    assert keys.closed
