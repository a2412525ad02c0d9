"""Fixtures for auth-service tests: a migrated database per module, the real app in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from foundation.auth_service import migrations
from foundation.auth_service.app import create_app
from foundation.auth_service.models import OutboxEvent
from foundation.auth_service.settings import AuthServiceSettings
from foundation.database.engine import create_engine
from foundation.shared.settings import ServiceSettings
from tests.helpers.apps import serve_app
from tests.helpers.databases import migrated_database
from tests.helpers.users import auth_settings

database_url = migrated_database(migrations)


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture()
def make_settings(
    database_url: str, redis_url: str, redis_prefix: str, keys_dir: Path
) -> Callable[..., AuthServiceSettings]:
    def make(**overrides: Any) -> AuthServiceSettings:
        return auth_settings(database_url, redis_url, redis_prefix, keys_dir, **overrides)

    return make


@pytest.fixture()
def settings(make_settings: Callable[..., AuthServiceSettings]) -> AuthServiceSettings:
    return make_settings()


@pytest.fixture()
def app(settings: AuthServiceSettings) -> FastAPI:
    return create_app(settings)


@pytest.fixture()
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_app(app) as client:
        yield client


@pytest.fixture()
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(ServiceSettings(database_url=database_url, db_pool_size=2))
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture()
def outbox(engine: AsyncEngine) -> Callable[..., Any]:
    """``await outbox(user_id)`` -> [(type, data), ...] in write order."""

    async def events(user_id: Any) -> list[tuple[str, dict[str, Any]]]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(OutboxEvent.type, OutboxEvent.data)
                .where(OutboxEvent.user_id == user_id)
                .order_by(OutboxEvent.seq)
            )
            return [(row.type, row.data) for row in rows]

    return events
