"""The fixtures history-service and stats-service tests share: a signer, the service's test
settings on the module's database and Redis prefix, a client of its app, and sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, NamedTuple

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from foundation.auth.verifier import TokenVerifier
from foundation.database.engine import create_engine, session_factory
from foundation.shared.settings import ServiceSettings
from tests.helpers.apps import serve_app
from tests.helpers.auth import TestSigner, test_verifier


class ServiceFixtures(NamedTuple):
    signer: Any
    settings: Any
    client: Any
    sessions: Any


def service_fixtures(
    create_app: Callable[..., FastAPI], settings_class: type[ServiceSettings], **test_settings: Any
) -> ServiceFixtures:
    """Fixtures for a conftest: ``signer, settings, client, sessions = service_fixtures(...)``.
    ``test_settings`` are the service's own (e.g. its background loops switched off)."""

    @pytest.fixture(scope="module")
    def signer() -> TestSigner:
        return TestSigner()

    @pytest.fixture()
    def settings(database_url: str, redis_url: str, redis_prefix: str) -> ServiceSettings:
        return settings_class(
            environment="test",
            database_url=database_url,
            redis_url=redis_url,
            redis_key_prefix=redis_prefix,
            **test_settings,
        )

    @pytest.fixture()
    async def client(settings: ServiceSettings, signer: TestSigner) -> AsyncIterator[httpx.AsyncClient]:
        verifier: TokenVerifier = test_verifier(signer)
        async with serve_app(create_app(settings, token_verifier=verifier)) as client:
            yield client

    @pytest.fixture()
    async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
        engine = create_engine(settings_class(database_url=database_url))
        try:
            yield session_factory(engine)
        finally:
            await engine.dispose()

    return ServiceFixtures(signer, settings, client, sessions)
