"""Outbox rows written in plain SQL (``insert_sql`` / ``insert_params``) are the rows
``record`` writes: the relay publishes them alike."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, cast

import psycopg
import pytest
import redis.asyncio as aioredis

from foundation.database.direct import libpq_url
from foundation.events.conftest import Db
from foundation.events.outbox import insert_params, insert_sql, record
from foundation.events.relay import OutboxRelay
from foundation.events.schema import STREAM, Event
from foundation.shared.redis import Keys


@pytest.fixture()
async def conn(db: Db, events_database_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    connection = await psycopg.AsyncConnection.connect(libpq_url(events_database_url), autocommit=True)
    try:
        yield connection
    finally:
        await connection.close()


async def published(db: Db, redis: aioredis.Redis, prefix: str) -> list[Event]:
    while await OutboxRelay(db.sessions, redis, db.outbox, prefix=prefix).run_once():
        pass
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(Keys(prefix)(STREAM)))
    return [Event.from_fields(fields) for _, fields in entries]


async def test_a_row_written_in_sql_is_published_like_a_recorded_one(
    db: Db, conn: psycopg.AsyncConnection[Any], redis: aioredis.Redis, prefix: str
) -> None:
    user, at = uuid.uuid4(), datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    async with db.sessions() as session, session.begin():
        recorded = record(session, db.outbox, "user.logged_in", user, {"ip": "192.0.2.1"}, occurred_at=at)
    params = insert_params("user.logged_in", user, {"ip": "192.0.2.1"}, occurred_at=at, version=2)
    await conn.execute(insert_sql(), params)  # type: ignore[arg-type]
    await conn.execute(insert_sql(), insert_params("user.login_failed"))  # type: ignore[arg-type]

    first, second, anonymous = await published(db, redis, prefix)

    assert first.id == recorded.event_id and second.id == params["outbox_event_id"]
    for event in (first, second):
        assert (event.type, event.user_id, event.occurred_at, event.data) == (
            "user.logged_in",
            user,
            at,
            {"ip": "192.0.2.1"},
        )
    assert (first.version, second.version) == (1, 2)
    assert (anonymous.type, anonymous.user_id, anonymous.data) == ("user.login_failed", None, {})


async def test_with_a_source_one_row_is_written_per_source_row(
    db: Db, conn: psycopg.AsyncConnection[Any], redis: aioredis.Redis, prefix: str
) -> None:
    users = [uuid.uuid4(), uuid.uuid4()]
    event = insert_sql(
        source="changed", user_id="id", data="jsonb_build_object('n', n)", event_id="gen_random_uuid()"
    )
    statement = f"""
        WITH changed AS (SELECT * FROM unnest(%(ids)s::uuid[], %(ns)s::int[]) AS t(id, n)),
        event AS ({event})
        SELECT count(*) AS n FROM changed
    """  # noqa: S608
    none = f"WITH changed AS (SELECT NULL::uuid AS id, 0 AS n WHERE false) {event}"

    await conn.execute(statement, {"ids": users, "ns": [1, 2], **insert_params("user.refreshed")})
    await conn.execute(none, insert_params("user.refreshed"))  # type: ignore[arg-type]

    events = await published(db, redis, prefix)
    assert sorted((e.user_id, e.data["n"]) for e in events) == sorted(zip(users, [1, 2], strict=True))
    assert {e.type for e in events} == {"user.refreshed"}
    assert len({e.id for e in events}) == 2
