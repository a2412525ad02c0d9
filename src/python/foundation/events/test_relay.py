# mypy: disable-error-code="index, arg-type, union-attr, misc, str-unpack, attr-defined, no-any-return"
# (redis-py's stream replies are typed too loosely to index without casts.)
from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy import func, select, update

from foundation.events.conftest import Db
from foundation.events.outbox import record
from foundation.events.relay import Backoff, OutboxRelay, advisory_lock_key
from foundation.events.schema import STREAM, Event
from foundation.shared.redis import Keys
from tests.helpers.apps import closed_port_redis_url


async def write_events(
    db: Db, count: int, user_id: uuid.UUID | None = None, type: str = "user.logged_in"
) -> list[uuid.UUID]:
    async with db.sessions() as session, session.begin():
        rows = [record(session, db.outbox, type, user_id or uuid.uuid4(), {"n": n}) for n in range(count)]
    return [row.event_id for row in rows]


async def stream_events(redis: aioredis.Redis, prefix: str) -> list[Event]:
    entries = await redis.xrange(Keys(prefix)(STREAM))
    return [Event.from_fields(fields) for _, fields in entries]


async def unpublished(db: Db) -> int:
    async with db.sessions() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(db.outbox).where(db.outbox.published_at.is_(None))
            )
            or 0
        )


async def test_publishes_rows_in_write_order_and_marks_them_published(
    db: Db, redis: aioredis.Redis, prefix: str
) -> None:
    user = uuid.uuid4()
    ids = await write_events(db, 7, user)
    relay = OutboxRelay(db.sessions, redis, db.outbox, prefix=prefix, batch_size=3)

    assert [await relay.run_once() for _ in range(4)] == [3, 3, 1, 0]

    events = await stream_events(redis, prefix)
    assert [e.id for e in events] == ids
    assert all(e.user_id == user and e.type == "user.logged_in" for e in events)
    assert [e.data["n"] for e in events] == list(range(7))
    assert await unpublished(db) == 0
    assert await relay.backlog() == 0


async def test_entries_carry_exactly_the_schema_fields_also_when_the_stream_is_capped(
    db: Db, redis: aioredis.Redis, prefix: str
) -> None:
    ids = await write_events(db, 5)
    relay = OutboxRelay(db.sessions, redis, db.outbox, prefix=prefix, stream_maxlen=1000)

    assert await relay.run_once() == 5

    entries = await redis.xrange(Keys(prefix)(STREAM))
    assert [set(fields) for _, fields in entries] == [
        {b"id", b"type", b"user_id", b"occurred_at", b"data", b"version"}
    ] * 5
    assert [e.id for e in await stream_events(redis, prefix)] == ids


async def test_events_of_a_rolled_back_transaction_are_never_published(
    db: Db, redis: aioredis.Redis, prefix: str
) -> None:
    async with db.sessions() as session:
        record(session, db.outbox, "user.registered", uuid.uuid4())
        await session.flush()
        await session.rollback()
    kept = await write_events(db, 1)

    await OutboxRelay(db.sessions, redis, db.outbox, prefix=prefix).run_once()

    assert [e.id for e in await stream_events(redis, prefix)] == kept


async def test_redis_down_keeps_rows_unpublished_and_they_drain_later_in_order(
    db: Db, redis: aioredis.Redis, prefix: str
) -> None:
    ids = await write_events(db, 5)
    down = aioredis.Redis.from_url(closed_port_redis_url(), socket_connect_timeout=0.5)
    try:
        with pytest.raises(RedisError):
            await OutboxRelay(db.sessions, down, db.outbox, prefix=prefix).run_once()
    finally:
        await down.aclose()
    assert await unpublished(db) == 5
    async with db.sessions() as session:
        assert set((await session.scalars(select(db.outbox.attempts))).all()) == {1}

    ids += await write_events(db, 3)  # the service keeps accepting changes meanwhile
    assert await OutboxRelay(db.sessions, redis, db.outbox, prefix=prefix).run_once() == 8
    assert [e.id for e in await stream_events(redis, prefix)] == ids


async def test_replicas_publish_one_at_a_time_and_never_reorder(
    db: Db, redis: aioredis.Redis, prefix: str
) -> None:
    relays = [OutboxRelay(db.sessions, redis, db.outbox, prefix=prefix, batch_size=7) for _ in range(3)]
    user = uuid.uuid4()
    written: list[uuid.UUID] = []

    async def produce() -> None:
        for _ in range(20):
            written.extend(await write_events(db, 5, user))
            await asyncio.sleep(0)

    async def publish(relay: OutboxRelay) -> None:
        for _ in range(40):
            await relay.run_once()
            await asyncio.sleep(0)

    await asyncio.gather(produce(), *(publish(r) for r in relays))
    while await relays[0].run_once():
        pass

    published = [e.id for e in await stream_events(redis, prefix)]
    assert published == written  # every event once, in the order it was written
    assert sum(r.published for r in relays) == 100


async def test_a_replica_without_the_lock_publishes_nothing(
    db: Db, redis: aioredis.Redis, prefix: str
) -> None:
    await write_events(db, 2)
    relay = OutboxRelay(db.sessions, redis, db.outbox, prefix=prefix)
    async with db.sessions() as other, other.begin():
        assert await other.scalar(select(func.pg_try_advisory_xact_lock(relay.lock_key)))
        assert await relay.run_once() == 0
    assert await relay.run_once() == 2


async def test_loop_publishes_new_rows_and_stops_cleanly(db: Db, redis: aioredis.Redis, prefix: str) -> None:
    relay = OutboxRelay(db.sessions, redis, db.outbox, prefix=prefix, poll_interval=0.01)
    relay.start()
    relay.start()  # idempotent
    try:
        ids = await write_events(db, 3)
        deadline = time.monotonic() + 10
        while len(await stream_events(redis, prefix)) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    finally:
        await relay.aclose()
    assert [e.id for e in await stream_events(redis, prefix)] == ids
    assert relay._task is None


async def test_notify_wakes_an_idle_relay_long_before_its_poll_interval(
    db: Db, redis: aioredis.Redis, prefix: str
) -> None:
    relay = OutboxRelay(db.sessions, redis, db.outbox, prefix=prefix, poll_interval=3600)
    relay.start()
    try:
        await asyncio.sleep(0.2)  # the first (empty) pass runs; the loop then sleeps for an hour
        deadline = time.monotonic() + 10
        ids = await write_events(db, 2)
        relay.notify()
        while len(await stream_events(redis, prefix)) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        published = [e.id for e in await stream_events(redis, prefix)]
        relay.notify()  # a notify with nothing to publish is harmless
        more = await write_events(db, 1)
        relay.notify()
        while len(await stream_events(redis, prefix)) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    finally:
        await relay.aclose()
    assert published == ids
    assert [e.id for e in await stream_events(redis, prefix)] == ids + more


async def test_with_linger_commits_right_behind_a_wake_up_share_its_pass(
    db: Db, redis: aioredis.Redis, prefix: str
) -> None:
    relay = OutboxRelay(db.sessions, redis, db.outbox, prefix=prefix, poll_interval=3600, linger=2.0)
    relay.start()
    try:
        await asyncio.sleep(0.2)  # the first (empty) pass runs; the loop then sleeps for an hour
        first = await write_events(db, 1)
        relay.notify()
        second = await write_events(db, 1)
        relay.notify()
        await asyncio.sleep(0.2)
        during_linger = await stream_events(redis, prefix)
        deadline = time.monotonic() + 15
        while len(await stream_events(redis, prefix)) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    finally:
        await relay.aclose()
    assert during_linger == []  # nothing goes out while the relay lingers ...
    assert [e.id for e in await stream_events(redis, prefix)] == first + second  # ... then both
    assert relay.published == 2


async def test_loop_retries_with_backoff_while_redis_is_down(db: Db, prefix: str) -> None:
    await write_events(db, 2)
    down = aioredis.Redis.from_url(closed_port_redis_url(), socket_connect_timeout=0.2)
    relay = OutboxRelay(db.sessions, down, db.outbox, prefix=prefix, backoff=Backoff(base=0.01, cap=0.02))
    relay.start()
    try:
        deadline = time.monotonic() + 10
        while relay.failures < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    finally:
        await relay.aclose()
        await down.aclose()
    assert relay.failures >= 3
    assert await unpublished(db) == 2


async def test_purge_deletes_only_rows_published_long_enough_ago(
    db: Db, redis: aioredis.Redis, prefix: str
) -> None:
    await write_events(db, 3)
    relay = OutboxRelay(db.sessions, redis, db.outbox, prefix=prefix)
    await relay.run_once()
    await write_events(db, 2)  # unpublished: never purged
    async with db.sessions() as session, session.begin():
        first = await session.scalar(select(func.min(db.outbox.seq)))
        await session.execute(
            update(db.outbox)
            .where(db.outbox.seq == first)
            .values(published_at=func.now() - timedelta(days=2))
        )

    assert await relay.purge_published() == 1
    assert await relay.purge_published(older_than=timedelta(0)) == 2
    assert await unpublished(db) == 2


def test_backoff_grows_to_its_cap_and_lock_keys_are_stable() -> None:
    backoff = Backoff(base=0.1, cap=1.0)
    assert all(0 <= backoff.delay(0) <= 0.1 for _ in range(50))
    assert all(0 <= backoff.delay(100) <= 1.0 for _ in range(50))
    assert advisory_lock_key("outbox") == advisory_lock_key("outbox") != advisory_lock_key("other")
    assert -(2**63) <= advisory_lock_key("outbox") < 2**63
