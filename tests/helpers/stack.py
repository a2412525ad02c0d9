"""auth-service, history-service and stats-service together, in-process, on real servers.

Each app runs its real lifespan: auth-service with its outbox relay, history-service with its
relay and consumer group, stats-service with its consumer group. They share one Redis (and key
prefix) and each has its own database, as deployed; history and stats verify the access tokens
auth-service signs (with its key store, as they would through its JWKS).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from foundation.auth.signing import LocalKeySource
from foundation.auth.verifier import TokenVerifier
from foundation.auth_service import migrations as auth_migrations
from foundation.auth_service.app import create_app as create_auth_app
from foundation.database.engine import create_engine
from foundation.database.provisioning import drop_database
from foundation.history_service import migrations as history_migrations
from foundation.history_service.app import create_app as create_history_app
from foundation.history_service.settings import HistoryServiceSettings
from foundation.shared.settings import ServiceSettings
from foundation.stats_service import migrations as stats_migrations
from foundation.stats_service.app import create_app as create_stats_app
from foundation.stats_service.settings import StatsServiceSettings
from tests.helpers.apps import AppClient, serve_app
from tests.helpers.auth import TEST_AUDIENCE, TEST_ISSUER
from tests.helpers.databases import create_migrated_database
from tests.helpers.faults import FAULTS_APPLICATION
from tests.helpers.users import auth_settings


@dataclass(frozen=True)
class Databases:
    auth: str
    history: str
    stats: str


def migrated_databases(postgres_url: str) -> Iterator[Databases]:
    """A fresh, migrated database for each service; dropped afterwards."""
    urls = Databases(
        auth=create_migrated_database(postgres_url, auth_migrations),
        history=create_migrated_database(postgres_url, history_migrations),
        stats=create_migrated_database(postgres_url, stats_migrations),
    )
    try:
        yield urls
    finally:
        for url in (urls.auth, urls.history, urls.stats):
            drop_database(url)


@pytest.fixture(scope="module")
def databases(postgres_url: str) -> Iterator[Databases]:
    yield from migrated_databases(postgres_url)


@dataclass
class Stack:
    auth_app: FastAPI
    history_app: FastAPI
    stats_app: FastAPI
    auth: AppClient
    history: AppClient
    stats: AppClient
    auth_db: AsyncEngine  # the test's own connection to auth-service's database (reads only)
    history_db: AsyncEngine
    stats_db: AsyncEngine

    async def outbox_of(self, users: set[uuid.UUID]) -> list[tuple[uuid.UUID, str, uuid.UUID]]:
        """auth-service's outbox rows of these users: (event id, type, user id)."""
        async with self.auth_db.connect() as conn:
            rows = await conn.execute(
                text("SELECT event_id, type, user_id FROM outbox WHERE user_id = ANY(:users) ORDER BY seq"),
                {"users": list(users)},
            )
            return [(row[0], row[1], row[2]) for row in rows]

    async def unpublished(self) -> int:
        async with self.auth_db.connect() as conn:
            count = await conn.scalar(text("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
        return int(count or 0)

    async def history_ids(self, users: set[uuid.UUID]) -> Counter[uuid.UUID]:
        """How many history rows each event id has (straight from the table: 1 means once)."""
        async with self.history_db.connect() as conn:
            rows = await conn.execute(
                text("SELECT id FROM history_events WHERE user_id = ANY(:users)"), {"users": list(users)}
            )
            return Counter(row[0] for row in rows)

    async def timeline(self, headers: dict[str, str]) -> list[dict[str, Any]]:
        """A user's whole timeline through GET /history."""
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
            answer = await self.history.get("/history", params=params, headers=headers)
            assert answer.status_code == 200, answer.text
            items += answer.json()["items"]
            cursor = answer.json()["next_cursor"]
            if not cursor:
                return items

    async def stats_of(self, headers: dict[str, str]) -> dict[str, Any]:
        answer = await self.stats.get("/stats/me", headers=headers)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body


async def start_stack(
    exit_stack: AsyncExitStack,
    databases: Databases,
    redis_url: str,
    keys_dir: Path,
    *,
    prefix: str = "",
    auth: dict[str, Any] | None = None,
    consumers: dict[str, Any] | None = None,
) -> Stack:
    """Start the three services (stopped by ``exit_stack``). ``auth``: auth-service settings
    to override; ``consumers``: history and stats settings to override."""
    auth_overrides: dict[str, Any] = {
        "outbox_relay_enabled": True,
        "outbox_linger": 0.0,
        "outbox_poll_interval": 0.2,
        "db_pool_size": 3,
        "db_max_overflow": 2,
    }
    auth_overrides.update(auth or {})
    auth_app = create_auth_app(auth_settings(databases.auth, redis_url, prefix, keys_dir, **auth_overrides))
    auth_client = await exit_stack.enter_async_context(serve_app(auth_app))
    verifier = TokenVerifier(
        LocalKeySource(auth_client.state["signing_keys"]), issuer=TEST_ISSUER, audience=TEST_AUDIENCE
    )
    common: dict[str, Any] = {
        "environment": "test",
        "redis_url": redis_url,
        "redis_key_prefix": prefix,
        "db_pool_size": 3,
        "db_max_overflow": 2,
        "jwt_issuer": TEST_ISSUER,
        "jwt_audience": TEST_AUDIENCE,
    }
    common.update(consumers or {})
    history_app = create_history_app(
        HistoryServiceSettings(database_url=databases.history, **common), token_verifier=verifier
    )
    stats_app = create_stats_app(
        StatsServiceSettings(database_url=databases.stats, **common), token_verifier=verifier
    )
    history_client = await exit_stack.enter_async_context(serve_app(history_app))
    stats_client = await exit_stack.enter_async_context(serve_app(stats_app))
    engines = []
    for url in (databases.auth, databases.history, databases.stats):
        engine = create_engine(
            ServiceSettings(
                service_name=FAULTS_APPLICATION, database_url=url, db_pool_size=1, db_max_overflow=0
            )
        )
        exit_stack.push_async_callback(engine.dispose)
        engines.append(engine)
    return Stack(auth_app, history_app, stats_app, auth_client, history_client, stats_client, *engines)
