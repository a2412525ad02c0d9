# mypy: disable-error-code="index, arg-type, union-attr, misc, str-unpack, attr-defined"
# (redis-py's stream replies are typed too loosely to index without casts.)
from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence

import pytest
import redis.asyncio as aioredis
from sqlalchemy.exc import OperationalError

from foundation.events.conftest import Db, Handler
from foundation.events.consumer import ConsumerLag, StreamConsumer, is_infrastructure_error
from foundation.events.relay import Backoff
from foundation.events.schema import DEAD_LETTER_STREAM, STREAM, Event
from foundation.shared.redis import Keys
from tests.helpers.apps import closed_port_redis_url

MakeHandler = Callable[[str], Handler]


async def publish(redis: aioredis.Redis, prefix: str, *events: Event) -> list[bytes]:
    return [await redis.xadd(Keys(prefix)(STREAM), e.to_fields()) for e in events]  # type: ignore[arg-type]


def consumer(redis: aioredis.Redis, prefix: str, handler: Handler, **kwargs: object) -> StreamConsumer:
    options: dict[str, object] = {"prefix": prefix, "claim_idle": 0.05, "max_deliveries": 3}
    options.update(kwargs)
    return StreamConsumer(redis, "testers", handler, **options)  # type: ignore[arg-type]


async def drain(c: StreamConsumer) -> None:
    while await c.run_once():
        pass


async def test_handles_each_event_and_acknowledges_after_the_commit(
    db: Db, redis: aioredis.Redis, prefix: str, storing_handler: MakeHandler
) -> None:
    events = [Event(type="user.logged_in", user_id=uuid.uuid4()) for _ in range(5)]
    await publish(redis, prefix, *events)
    c = consumer(redis, prefix, storing_handler("a"), batch_size=2)
    await c.ensure_group()

    await drain(c)

    assert sorted(await db.processed_ids()) == sorted(e.id for e in events)
    assert await c.lag() == ConsumerLag(lag=0, pending=0)
    assert c.processed == 5


async def test_an_event_delivered_twice_is_stored_once(
    db: Db, redis: aioredis.Redis, prefix: str, storing_handler: MakeHandler
) -> None:
    event = Event(type="user.registered", user_id=uuid.uuid4())
    await publish(redis, prefix, event, event)
    c = consumer(redis, prefix, storing_handler("a"))
    await c.ensure_group()

    await drain(c)

    assert await db.processed_ids() == [event.id]
    assert (await c.lag()).total == 0


async def test_entries_of_a_consumer_that_died_before_acknowledging_are_claimed_and_handled_once(
    db: Db, redis: aioredis.Redis, prefix: str, storing_handler: MakeHandler
) -> None:
    events = [Event(type="user.logged_in", user_id=uuid.uuid4()) for _ in range(3)]
    await publish(redis, prefix, *events)
    dying = consumer(redis, prefix, storing_handler("dying"), consumer="dying")
    await dying.ensure_group()
    # It reads and commits the first event, then dies: nothing acknowledged.
    delivered = await redis.xreadgroup("testers", "dying", {Keys(prefix)(STREAM): ">"}, count=3)
    assert len(delivered[0][1]) == 3
    await storing_handler("dying")([events[0]])

    survivor = consumer(redis, prefix, storing_handler("survivor"), consumer="survivor")
    assert await survivor.run_once() == 0  # new entries: none; stale ones: not idle long enough yet
    await asyncio.sleep(0.06)
    assert await survivor.run_once() == 3

    assert sorted(await db.processed_ids()) == sorted(e.id for e in events)
    assert (await survivor.lag()).total == 0


async def test_a_poison_event_goes_to_the_dead_letter_stream_with_the_reason(
    db: Db, redis: aioredis.Redis, prefix: str, storing_handler: MakeHandler
) -> None:
    store = storing_handler("a")
    poison = Event(type="user.logged_in", user_id=uuid.uuid4(), data={"poison": True})
    good = [Event(type="user.logged_in", user_id=uuid.uuid4()) for _ in range(3)]

    async def handler(events: Sequence[Event]) -> None:
        if any(e.data.get("poison") for e in events):
            raise ValueError("cannot count this event")
        await store(events)

    await publish(redis, prefix, good[0], poison, *good[1:])
    c = consumer(redis, prefix, handler, max_deliveries=3)
    await c.ensure_group()
    await c.run_once()
    assert sorted(await db.processed_ids()) == sorted(e.id for e in good)  # the others go through

    deadline = time.monotonic() + 10
    while c.dead_lettered == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.06)
        await c.run_once()

    dead = await redis.xrange(Keys(prefix)(DEAD_LETTER_STREAM))
    assert len(dead) == 1
    fields = {k.decode(): v.decode() for k, v in dead[0][1].items()}
    assert Event.from_fields(fields).id == poison.id
    assert fields["dead_letter.group"] == "testers"
    assert fields["dead_letter.deliveries"] == "3"
    assert "ValueError: cannot count this event" in fields["dead_letter.reason"]
    assert (await c.lag()).total == 0


async def test_a_malformed_entry_is_dead_lettered_at_once(
    db: Db, redis: aioredis.Redis, prefix: str, storing_handler: MakeHandler
) -> None:
    good = Event(type="user.logged_in", user_id=uuid.uuid4())
    await redis.xadd(Keys(prefix)(STREAM), {"id": "not-a-uuid", "type": "x"})
    await redis.xadd(Keys(prefix)(STREAM), {"type": "x"})
    await publish(redis, prefix, good)
    c = consumer(redis, prefix, storing_handler("a"))
    await c.ensure_group()

    assert await c.run_once() == 3

    dead = await redis.xrange(Keys(prefix)(DEAD_LETTER_STREAM))
    assert [fields[b"dead_letter.reason"].startswith(b"malformed event") for _, fields in dead] == [
        True,
        True,
    ]
    assert await db.processed_ids() == [good.id]


async def test_a_database_outage_leaves_entries_pending_for_a_retry(
    db: Db, redis: aioredis.Redis, prefix: str, storing_handler: MakeHandler
) -> None:
    store = storing_handler("a")
    up = False

    async def handler(events: Sequence[Event]) -> None:
        if not up:
            raise OperationalError("INSERT", {}, ConnectionRefusedError("database is down"))
        await store(events)

    events = [Event(type="user.logged_in", user_id=uuid.uuid4()) for _ in range(2)]
    await publish(redis, prefix, *events)
    c = consumer(redis, prefix, handler)
    await c.ensure_group()
    with pytest.raises(OperationalError):
        await c.run_once()
    assert await c.lag() == ConsumerLag(lag=0, pending=2)

    up = True
    await asyncio.sleep(0.06)
    await drain(c)
    assert sorted(await db.processed_ids()) == sorted(e.id for e in events)
    assert c.dead_lettered == 0


async def test_loop_consumes_recreates_a_lost_group_and_stops_cleanly(
    db: Db, redis: aioredis.Redis, prefix: str, storing_handler: MakeHandler
) -> None:
    c = consumer(redis, prefix, storing_handler("a"), block=0.05, claim_idle=5)
    c.start()
    c.start()
    try:
        first = Event(type="user.registered", user_id=uuid.uuid4())
        await publish(redis, prefix, first)
        await wait_until(lambda: c.processed == 1)
        await redis.delete(Keys(prefix)(STREAM))  # the stream (and group) vanish
        second = Event(type="user.logged_in", user_id=uuid.uuid4())
        await asyncio.sleep(0.1)
        await publish(redis, prefix, second)
        await wait_until(lambda: c.processed == 2)
    finally:
        await c.aclose()
    assert sorted(await db.processed_ids()) == sorted([first.id, second.id])


async def test_loop_backs_off_while_redis_is_down(prefix: str, storing_handler: MakeHandler) -> None:
    down = aioredis.Redis.from_url(closed_port_redis_url(), socket_connect_timeout=0.2)
    c = StreamConsumer(down, "testers", storing_handler("a"), prefix=prefix, backoff=Backoff(0.01, 0.02))
    failures: list[str] = []
    original = c.ensure_group

    async def counting() -> None:
        failures.append("x")
        await original()

    c.ensure_group = counting  # type: ignore[method-assign]
    c.start()
    try:
        await wait_until(lambda: len(failures) >= 3)
    finally:
        await c.aclose()
        await down.aclose()


async def test_lag_counts_undelivered_and_pending_entries(redis: aioredis.Redis, prefix: str) -> None:
    async def never(events: Sequence[Event]) -> None:
        raise AssertionError("not called")

    c = consumer(redis, prefix, never)
    await c.ensure_group()
    await c.ensure_group()  # a second replica: the group exists already
    await publish(redis, prefix, *[Event(type="t") for _ in range(4)])
    assert await c.lag() == ConsumerLag(lag=4, pending=0)
    await redis.xreadgroup("testers", "other", {Keys(prefix)(STREAM): ">"}, count=1)
    lag = await c.lag()
    assert (lag.lag, lag.pending, lag.total) == (3, 1, 4)
    with pytest.raises(LookupError):
        await StreamConsumer(redis, "nobody", never, prefix=prefix).lag()


def test_infrastructure_errors_are_told_apart_from_bad_events() -> None:
    assert is_infrastructure_error(ConnectionRefusedError())
    assert is_infrastructure_error(OperationalError("x", {}, Exception()))
    assert not is_infrastructure_error(ValueError("bad data"))


async def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
