"""Fixtures for the mail tests: a real SMTP server (the dev stack's catcher) and a mail
outbox table of our own in a fresh database on the real test server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Column, Integer, String, Table
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from foundation.database.base import new_base
from foundation.database.engine import create_engine, session_factory
from foundation.devstack.mail_catcher import MailCatcher
from foundation.mail.outbox import MailOutboxRow, mail_outbox_model
from foundation.shared.settings import ServiceSettings
from tests.helpers.databases import migrated_database

Base = new_base()
MailOutbox = mail_outbox_model(Base)

# What a service's compose step may write beside sending (auth-service: a token's hash).
writes = Table("writes", Base.metadata, Column("id", Integer, primary_key=True), Column("note", String(50)))


# A database of its own per module, with no migrations: the tables below are made by the tests.
mail_database_url = migrated_database(None)


@dataclass
class Db:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    outbox: type[MailOutboxRow]


@pytest.fixture()
async def db(mail_database_url: str) -> AsyncIterator[Db]:
    engine = create_engine(ServiceSettings(database_url=mail_database_url, db_pool_size=3))
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    try:
        yield Db(engine, session_factory(engine), MailOutbox)
    finally:
        await engine.dispose()


@pytest.fixture()
def catcher() -> Iterator[MailCatcher]:
    with MailCatcher() as running:
        yield running
