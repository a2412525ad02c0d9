from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from foundation.events.consumer import StreamConsumer
from foundation.events.schema import (
    HISTORY_RECORDED,
    STREAM,
    USER_DELETED,
    USER_LOGGED_IN,
    USER_LOGIN_FAILED,
    USER_REGISTERED,
    Event,
)
from foundation.history_service.app import create_app
from foundation.history_service.models import HistoryEvent
from foundation.history_service.services.ingest import HistoryIngest
from foundation.history_service.settings import HistoryServiceSettings
from foundation.shared.redis import Keys
from tests.helpers.apps import serve_app
from tests.helpers.auth import TestSigner, bearer, test_verifier


async def stored(sessions: async_sessionmaker[AsyncSession], user_id: uuid.UUID) -> list[HistoryEvent]:
    async with sessions() as session:
        rows = await session.scalars(
            select(HistoryEvent).where(HistoryEvent.user_id == user_id).order_by(HistoryEvent.occurred_at)
        )
        return list(rows.all())


async def test_an_event_delivered_twice_is_stored_once(
    sessions: async_sessionmaker[AsyncSession], settings: HistoryServiceSettings
) -> None:
    user = uuid.uuid4()
    event = Event(type=USER_LOGGED_IN, user_id=user, data={"method": "password"})
    redis = aioredis.Redis.from_url(str(settings.redis_url))
    prefix = f"{settings.redis_key_prefix}{uuid.uuid4().hex[:6]}:"
    try:
        for _ in range(2):
            await redis.xadd(Keys(prefix)(STREAM), event.to_fields())  # type: ignore[arg-type]
        consumer = StreamConsumer(redis, "history", HistoryIngest(sessions), prefix=prefix)
        await consumer.ensure_group()
        while await consumer.run_once():
            pass
        assert (await consumer.lag()).total == 0
    finally:
        await redis.aclose()
    rows = await stored(sessions, user)
    assert [(r.id, r.type, r.data, r.source) for r in rows] == [
        (event.id, USER_LOGGED_IN, {"method": "password"}, "stream")
    ]


async def test_the_same_event_twice_in_one_batch_is_stored_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    user = uuid.uuid4()
    event = Event(type=USER_REGISTERED, user_id=user)
    await HistoryIngest(sessions)([event, event])
    assert len(await stored(sessions, user)) == 1


async def test_user_deleted_removes_their_history_and_ignores_their_late_events(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    gone, kept = uuid.uuid4(), uuid.uuid4()
    ingest = HistoryIngest(sessions)
    await ingest([Event(type=USER_REGISTERED, user_id=gone), Event(type=USER_REGISTERED, user_id=kept)])
    await ingest(
        [
            Event(type=USER_LOGGED_IN, user_id=gone),
            Event(type=USER_DELETED, user_id=gone),
            Event(type=USER_LOGGED_IN, user_id=kept),
        ]
    )
    await ingest([Event(type=USER_LOGGED_IN, user_id=gone)])  # a retry arriving after the deletion

    assert await stored(sessions, gone) == []
    assert [r.type for r in await stored(sessions, kept)] == [USER_REGISTERED, USER_LOGGED_IN]


async def test_events_without_a_user_and_own_announcements_are_not_stored(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    user = uuid.uuid4()
    async with sessions() as session:
        before = await session.scalar(select(func.count()).select_from(HistoryEvent))
    await HistoryIngest(sessions)(
        [
            Event(type=USER_LOGIN_FAILED, user_id=None),
            Event(type=HISTORY_RECORDED, user_id=user, data={"type": "a.b"}),
        ]
    )
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(HistoryEvent)) == before


async def test_the_running_service_consumes_the_stream(settings: HistoryServiceSettings) -> None:
    signer = TestSigner()
    prefix = f"{settings.redis_key_prefix}{uuid.uuid4().hex[:6]}:"
    live = settings.model_copy(
        update={"events_consumer_enabled": True, "events_relay_enabled": True, "redis_key_prefix": prefix}
    )
    user = uuid.uuid4()
    event = Event(type=USER_LOGGED_IN, user_id=user, occurred_at=datetime.now(UTC) - timedelta(seconds=1))
    redis = aioredis.Redis.from_url(str(settings.redis_url))
    try:
        async with serve_app(create_app(live, token_verifier=test_verifier(signer))) as client:
            await redis.xadd(Keys(prefix)(STREAM), event.to_fields())  # type: ignore[arg-type]
            headers = bearer(signer.issue(user_id=user))
            deadline = time.monotonic() + 10
            items: list[object] = []
            while not items and time.monotonic() < deadline:
                items = (await client.get("/history", headers=headers)).json()["items"]
                await asyncio.sleep(0.02)
            # The client's own event goes out through the relay running in the lifespan.
            await client.post("/history", json={"type": "app.opened"}, headers=headers)
            while time.monotonic() < deadline and await redis.xlen(Keys(prefix)(STREAM)) < 2:
                await asyncio.sleep(0.02)
            assert await redis.xlen(Keys(prefix)(STREAM)) == 2
    finally:
        await redis.delete(Keys(prefix)(STREAM))
        await redis.aclose()
    assert [item["id"] for item in items] == [str(event.id)]  # type: ignore[index]
