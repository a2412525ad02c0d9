"""Stats-service test fixtures: a migrated database per module, an app, signed tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from foundation.database.engine import create_engine, session_factory
from foundation.stats_service import migrations
from foundation.stats_service.app import create_app
from foundation.stats_service.settings import StatsServiceSettings
from tests.helpers.apps import serve_app
from tests.helpers.auth import TestSigner, test_verifier
from tests.helpers.databases import migrated_database

database_url = migrated_database(migrations)


@pytest.fixture(scope="module")
def signer() -> TestSigner:
    return TestSigner()


@pytest.fixture()
def settings(database_url: str, redis_url: str, redis_prefix: str) -> StatsServiceSettings:
    return StatsServiceSettings(
        environment="test",
        database_url=database_url,
        redis_url=redis_url,
        redis_key_prefix=redis_prefix,
        events_consumer_enabled=False,
    )


@pytest.fixture()
async def client(settings: StatsServiceSettings, signer: TestSigner) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_app(create_app(settings, token_verifier=test_verifier(signer))) as client:
        yield client


@pytest.fixture()
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(StatsServiceSettings(database_url=database_url))
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()
