"""Fixtures for the relay and consumer tests: a small outbox table and a processed-events
table of our own, in a fresh database on the real test server."""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis
from sqlalchemy import Column, String, Table, Uuid, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from foundation.database.base import new_base
from foundation.database.engine import create_engine, session_factory
from foundation.events.outbox import OutboxRow, outbox_model
from foundation.events.schema import Event
from foundation.shared.settings import ServiceSettings
from tests.helpers.databases import migrated_database

Base = new_base()
Outbox = outbox_model(Base)

# What a consumer under test stores: one row per event id (the dedupe a real service does).
processed = Table(
    "processed",
    Base.metadata,
    Column("event_id", Uuid, primary_key=True),
    Column("type", String(100), nullable=False),
    Column("consumer", String(100), nullable=False),
)


# A database of its own per module, with no migrations: the tables below are made by the tests.
events_database_url = migrated_database(None)


@dataclass
class Db:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    outbox: type[OutboxRow]

    async def processed_ids(self) -> list[uuid.UUID]:
        async with self.sessions() as session:
            return list((await session.scalars(select(processed.c.event_id))).all())


@pytest.fixture()
async def db(events_database_url: str) -> AsyncIterator[Db]:
    engine = create_engine(ServiceSettings(database_url=events_database_url, db_pool_size=5))
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    try:
        yield Db(engine, session_factory(engine), Outbox)
    finally:
        await engine.dispose()


@pytest.fixture()
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture()
def prefix(redis_prefix: str) -> str:
    """A prefix per test (the module's prefix plus a unique part), cleaned with the module's."""
    return f"{redis_prefix}{uuid.uuid4().hex[:8]}:"


Handler = Callable[[Sequence[Event]], Awaitable[None]]


@pytest.fixture()
def storing_handler(db: Db) -> Callable[[str], Handler]:
    """Makes handlers that store each event id once, committing before they return."""

    def make(name: str = "test") -> Handler:
        return functools.partial(_store, db, name)

    return make


async def _store(db: Db, name: str, events: Sequence[Event]) -> None:
    async with db.sessions() as session, session.begin():
        await session.execute(
            pg_insert(processed)
            .values([{"event_id": e.id, "type": e.type, "consumer": name} for e in events])
            .on_conflict_do_nothing()
        )
