# mypy: disable-error-code="index, arg-type, union-attr, misc, str-unpack, attr-defined, no-any-return"
# (redis-py's stream replies are typed too loosely to index without casts.)
"""Events end to end: a producer's outbox -> relay -> Redis stream -> history and stats.

The producer here is a small outbox table of our own (the same `outbox_model` auth-service
uses); history-service and stats-service run as apps with their consumers in the lifespan,
and everything is checked through their HTTP APIs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from foundation.database.base import new_base
from foundation.database.engine import create_engine, session_factory
from foundation.database.provisioning import drop_database
from foundation.devstack.embedded import EmbeddedRedis
from foundation.events.outbox import outbox_model, record
from foundation.events.relay import Backoff, OutboxRelay
from foundation.events.schema import (
    DEAD_LETTER_STREAM,
    STREAM,
    TOKEN_REFRESHED,
    USER_DELETED,
    USER_LOGGED_IN,
    USER_LOGGED_OUT,
    USER_REGISTERED,
)
from foundation.history_service import migrations as history_migrations
from foundation.history_service.app import create_app as create_history_app
from foundation.history_service.settings import HistoryServiceSettings
from foundation.shared.redis import Keys
from foundation.shared.settings import ServiceSettings
from foundation.stats_service import migrations as stats_migrations
from foundation.stats_service.app import create_app as create_stats_app
from foundation.stats_service.settings import StatsServiceSettings
from tests.helpers.apps import serve_app
from tests.helpers.auth import TestSigner, bearer, test_verifier
from tests.helpers.databases import create_migrated_database

ProducerBase = new_base()
ProducerOutbox = outbox_model(ProducerBase)


@pytest.fixture(scope="module")
def databases(postgres_url: str) -> Iterator[dict[str, str]]:
    urls = {
        "producer": create_migrated_database(postgres_url, None),
        "history": create_migrated_database(postgres_url, history_migrations),
        "stats": create_migrated_database(postgres_url, stats_migrations),
    }
    try:
        yield urls
    finally:
        for url in urls.values():
            drop_database(url)


@dataclass
class Stack:
    producer: async_sessionmaker[AsyncSession]
    relay: OutboxRelay
    history: httpx.AsyncClient
    stats: httpx.AsyncClient
    redis: aioredis.Redis
    prefix: str
    signer: TestSigner

    async def produce(self, *events: tuple[str, uuid.UUID | None, dict[str, Any]]) -> list[uuid.UUID]:
        async with self.producer() as session, session.begin():
            rows = [record(session, ProducerOutbox, kind, user, data) for kind, user, data in events]
        return [row.event_id for row in rows]

    def headers(self, user_id: uuid.UUID, *roles: str) -> dict[str, str]:
        return bearer(self.signer.issue(user_id=user_id, roles=roles))

    async def history_of(self, user_id: uuid.UUID) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
            answer = await self.history.get("/history", params=params, headers=self.headers(user_id))
            assert answer.status_code == 200, answer.text
            items += answer.json()["items"]
            cursor = answer.json()["next_cursor"]
            if not cursor:
                return items

    async def stats_of(self, user_id: uuid.UUID) -> dict[str, Any]:
        answer = await self.stats.get("/stats/me", headers=self.headers(user_id))
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    async def settled(self) -> None:
        """Wait until the outbox is empty and both groups have handled everything."""
        await eventually(self._settled, timeout=30)

    async def _settled(self) -> bool:
        if await self.relay.backlog():
            return False
        try:
            groups = await self.redis.xinfo_groups(Keys(self.prefix)(STREAM))
        except aioredis.ResponseError:
            return False
        last = (await self.redis.xrevrange(Keys(self.prefix)(STREAM), count=1) or [(b"0-0", {})])[0][0]
        names = {g["name"]: g for g in groups}
        return all(
            name in names and names[name]["pending"] == 0 and names[name]["last-delivered-id"] == last
            for name in (b"history", b"stats")
        )


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.02)


async def start_stack(
    databases: dict[str, str], redis_url: str, prefix: str, exit_stack: AsyncExitStack
) -> Stack:
    engine = create_engine(ServiceSettings(database_url=databases["producer"]))
    exit_stack.push_async_callback(engine.dispose)
    async with engine.begin() as conn:
        await conn.run_sync(ProducerBase.metadata.drop_all)
        await conn.run_sync(ProducerBase.metadata.create_all)
    producer = session_factory(engine)
    redis = aioredis.Redis.from_url(redis_url, socket_connect_timeout=0.5, socket_timeout=2)
    exit_stack.push_async_callback(redis.aclose)
    relay = OutboxRelay(
        producer, redis, ProducerOutbox, prefix=prefix, poll_interval=0.02, backoff=Backoff(0.02, 0.2)
    )
    signer = TestSigner()
    common: dict[str, Any] = {
        "environment": "test",
        "redis_url": redis_url,
        "redis_key_prefix": prefix,
        "events_claim_idle_seconds": 0.5,
        "events_max_deliveries": 2,
    }
    history_app = create_history_app(
        HistoryServiceSettings(database_url=databases["history"], **common),
        token_verifier=test_verifier(signer),
    )
    stats_app = create_stats_app(
        StatsServiceSettings(database_url=databases["stats"], **common), token_verifier=test_verifier(signer)
    )
    history = await exit_stack.enter_async_context(serve_app(history_app))
    stats = await exit_stack.enter_async_context(serve_app(stats_app))
    relay.start()
    exit_stack.push_async_callback(relay.aclose)
    return Stack(producer, relay, history, stats, redis, prefix, signer)


@pytest.fixture()
async def stack(databases: dict[str, str], redis_url: str, redis_prefix: str) -> AsyncIterator[Stack]:
    async with AsyncExitStack() as exit_stack:
        yield await start_stack(databases, redis_url, f"{redis_prefix}{uuid.uuid4().hex[:6]}:", exit_stack)


async def test_an_event_reaches_history_and_stats_exactly_once_even_when_published_twice(
    stack: Stack,
) -> None:
    user = uuid.uuid4()
    ids = await stack.produce(
        (USER_REGISTERED, user, {"method": "password"}), (USER_LOGGED_IN, user, {"method": "password"})
    )
    await stack.settled()
    # The relay crashed after XADD but before marking the rows: they are published again.
    async with stack.producer() as session, session.begin():
        await session.execute(update(ProducerOutbox).values(published_at=None))
    await stack.settled()
    assert await stack.redis.xlen(Keys(stack.prefix)(STREAM)) == 4

    history = await stack.history_of(user)
    assert sorted(item["id"] for item in history) == sorted(str(i) for i in ids)
    stats = await stack.stats_of(user)
    assert stats["logins"] == 1
    assert stats["events_by_type"] == {USER_LOGGED_IN: 1, USER_REGISTERED: 1}


async def test_client_events_flow_through_history_into_stats_and_equal_a_recount(stack: Stack) -> None:
    users = [uuid.uuid4() for _ in range(3)]
    for n, user in enumerate(users):
        await stack.produce((USER_REGISTERED, user, {}), *[(USER_LOGGED_IN, user, {})] * (n + 1))
        await stack.produce((TOKEN_REFRESHED, user, {}), (USER_LOGGED_OUT, user, {}))
        for kind in ["app.opened"] * (n + 2) + ["app.purchased"]:
            answer = await stack.history.post("/history", json={"type": kind}, headers=stack.headers(user))
            assert answer.status_code == 201
    await stack.settled()
    # history's own relay publishes client events; wait for stats to have counted them too.
    for user in users:

        async def counted(user: uuid.UUID = user) -> bool:
            return sum((await stack.stats_of(user))["events_by_type"].values()) == len(
                await stack.history_of(user)
            )

        await eventually(counted)

    for n, user in enumerate(users):
        recount = Counter(item["type"] for item in await stack.history_of(user))
        stats = await stack.stats_of(user)
        assert stats["events_by_type"] == dict(recount)
        assert stats["logins"] == n + 1
        assert stats["sessions"] == {"started": n + 1, "ended": 1}
        assert stats["daily_activity"][-1]["events"] == sum(recount.values())


async def test_user_deleted_removes_the_users_data_in_both_services(stack: Stack) -> None:
    gone, kept = uuid.uuid4(), uuid.uuid4()
    await stack.produce((USER_REGISTERED, gone, {}), (USER_LOGGED_IN, gone, {}), (USER_REGISTERED, kept, {}))
    await stack.produce((USER_DELETED, gone, {}))
    await stack.settled()

    assert await stack.history_of(gone) == []
    assert (await stack.stats_of(gone))["events_by_type"] == {}
    assert len(await stack.history_of(kept)) == 1
    admin = await stack.stats.get("/stats/summary", headers=stack.headers(kept, "admin"))
    assert admin.json()["totals"]["sign_ups"] >= 2  # anonymous totals keep counting the past


async def test_a_poison_event_lands_in_the_dead_letter_stream_of_each_group(stack: Stack) -> None:
    user = uuid.uuid4()
    await stack.redis.xadd(Keys(stack.prefix)(STREAM), {"id": str(uuid.uuid4()), "type": "user.logged_in"})
    # history.recorded without data.type: stats cannot count it, history ignores it.
    await stack.produce(("history.recorded", user, {}), (USER_LOGGED_IN, user, {}))

    async def dead_lettered() -> bool:
        return await stack.redis.xlen(Keys(stack.prefix)(DEAD_LETTER_STREAM)) == 3

    await eventually(dead_lettered)
    await stack.settled()
    dead = await stack.redis.xrange(Keys(stack.prefix)(DEAD_LETTER_STREAM))
    reasons = sorted(
        (f[b"dead_letter.group"].decode(), f[b"dead_letter.reason"].decode()[:20]) for _, f in dead
    )
    assert reasons == [
        ("history", "malformed event: mal"),
        ("stats", "failed 2 deliveries;"),
        ("stats", "malformed event: mal"),
    ]
    assert (await stack.stats_of(user))["logins"] == 1  # the good event behind it went through
    assert len(await stack.history_of(user)) == 1


async def test_outbox_drains_after_redis_was_down_and_no_event_is_missing(
    databases: dict[str, str], tmp_path: Path
) -> None:
    server = EmbeddedRedis(tmp_path / "redis").start()
    port = server.port
    try:
        async with AsyncExitStack() as exit_stack:
            stack = await start_stack(databases, server.url, f"down-test:{uuid.uuid4().hex[:6]}:", exit_stack)
            user = uuid.uuid4()
            ids = await stack.produce((USER_REGISTERED, user, {}))
            await stack.settled()

            server.stop()
            # The producer keeps accepting logins while Redis is down.
            for _ in range(20):
                ids += await stack.produce((USER_LOGGED_IN, user, {}))
            await eventually(lambda: _true_after(stack.relay.failures >= 2), timeout=20)
            assert await stack.relay.backlog() == 20

            server = EmbeddedRedis(tmp_path / "redis", port=port).start()
            await stack.settled()

            history = await stack.history_of(user)
            assert sorted(item["id"] for item in history) == sorted(str(i) for i in ids)
            assert (await stack.stats_of(user))["logins"] == 20
    finally:
        server.stop()


async def _true_after(value: bool) -> bool:
    return value
