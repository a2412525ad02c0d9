from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from foundation.events.consumer import StreamConsumer
from foundation.events.schema import (
    HISTORY_RECORDED,
    MFA_FACTOR_ADDED,
    MFA_FAILED,
    REFRESH_TOKEN_REUSED,
    SESSION_REVOKED,
    STREAM,
    TOKEN_REFRESHED,
    USER_DELETED,
    USER_LOGGED_IN,
    USER_LOGGED_OUT,
    USER_LOGIN_FAILED,
    USER_PASSWORD_CHANGED,
    USER_PASSWORD_RESET_REQUESTED,
    USER_REGISTERED,
    Event,
)
from foundation.shared.redis import Keys
from foundation.stats_service.repository import StatsRepository
from foundation.stats_service.services.counting import StatsCounter
from foundation.stats_service.services.rebuild import rebuild
from foundation.stats_service.services.reports import Reports
from foundation.stats_service.settings import StatsServiceSettings


async def snapshot(sessions: async_sessionmaker[AsyncSession]) -> dict[str, list[tuple[Any, ...]]]:
    async with sessions() as session:
        return await StatsRepository(session).snapshot()


# What the recount does not take for the user being active: someone else may have caused it.
NOT_ACTIVE = {USER_LOGIN_FAILED, MFA_FAILED, REFRESH_TOKEN_REUSED, USER_PASSWORD_RESET_REQUESTED}


def random_events(users: list[uuid.UUID], count: int, today: date, seed: int) -> list[Event]:
    rng = random.Random(seed)
    kinds = [
        USER_LOGGED_IN,
        USER_LOGIN_FAILED,
        TOKEN_REFRESHED,
        USER_LOGGED_OUT,
        SESSION_REVOKED,
        REFRESH_TOKEN_REUSED,
        HISTORY_RECORDED,
        MFA_FAILED,
        MFA_FACTOR_ADDED,
        USER_PASSWORD_RESET_REQUESTED,
        USER_PASSWORD_CHANGED,
    ]
    events = [Event(type=USER_REGISTERED, user_id=u, occurred_at=_at(today, 29, rng)) for u in users]
    for _ in range(count):
        kind = rng.choice(kinds)
        user = rng.choice(users)
        data = {"type": rng.choice(["app.opened", "app.purchased"])} if kind == HISTORY_RECORDED else {}
        events.append(
            Event(type=kind, user_id=user, data=data, occurred_at=_at(today, rng.randrange(30), rng))
        )
    events += [Event(type=USER_LOGIN_FAILED, user_id=None, occurred_at=_at(today, 1, rng)) for _ in range(3)]
    return events


def _at(today: date, days_ago: int, rng: random.Random) -> datetime:
    midnight = datetime(today.year, today.month, today.day, tzinfo=UTC) - timedelta(days=days_ago)
    return midnight + timedelta(seconds=rng.randrange(86_400))


def recount(events: list[Event], user: uuid.UUID, today: date) -> dict[str, Any]:
    """The stats of one user, counted straight from the events (what history would give)."""
    mine = [e for e in events if e.user_id == user]
    logins = [e for e in mine if e.type == USER_LOGGED_IN]
    types = Counter(e.data["type"] if e.type == HISTORY_RECORDED else e.type for e in mine)
    activity = Counter(e.occurred_at.date() for e in mine if e.type not in NOT_ACTIVE)
    first = today - timedelta(days=29)
    return {
        "logins": len(logins),
        "failed_logins": sum(e.type == USER_LOGIN_FAILED for e in mine),
        "sessions_ended": sum(e.type in {USER_LOGGED_OUT, SESSION_REVOKED} for e in mine),
        "last_login_at": max((e.occurred_at for e in logins), default=None),
        "events_by_type": dict(sorted(types.items())),
        "daily_activity": [activity.get(first + timedelta(days=n), 0) for n in range(30)],
    }


async def test_stats_equal_a_full_recount_even_with_duplicates_and_a_deletion(
    sessions: async_sessionmaker[AsyncSession], settings: StatsServiceSettings
) -> None:
    today = datetime.now(UTC).date()
    users = [uuid.uuid4() for _ in range(6)]
    events = random_events(users, 400, today, seed=7)
    gone = users[0]
    stream = (
        events[:250] + events[100:150] + [Event(type=USER_DELETED, user_id=gone)] + events[250:] + events[:20]
    )

    redis = aioredis.Redis.from_url(str(settings.redis_url))
    prefix = f"{settings.redis_key_prefix}{uuid.uuid4().hex[:6]}:"
    try:
        pipe = redis.pipeline()
        for event in stream:
            pipe.xadd(Keys(prefix)(STREAM), event.to_fields())  # type: ignore[arg-type]
        await pipe.execute()
        consumer = StreamConsumer(redis, "stats", StatsCounter(sessions), prefix=prefix, batch_size=37)
        await consumer.ensure_group()
        while await consumer.run_once():
            pass
        assert (await consumer.lag()).total == 0
    finally:
        await redis.aclose()

    reports = Reports(sessions)
    for user in users[1:]:
        report = await reports.for_user(user, today)
        expected = recount(events, user, today)
        assert {
            "logins": report.logins,
            "failed_logins": report.failed_logins,
            "sessions_ended": report.sessions_ended,
            "last_login_at": report.last_login_at,
            "events_by_type": report.events_by_type,
            "daily_activity": [d.events for d in report.daily_activity],
        } == expected
    deleted = await reports.for_user(gone, today)
    assert (deleted.logins, deleted.events_by_type, sum(d.events for d in deleted.daily_activity)) == (
        0,
        {},
        0,
    )

    # The admin totals keep the deleted user's events from before the deletion, anonymously;
    # their events arriving after it are not counted.
    counted = events[:250] + [e for e in events[250:] if e.user_id != gone]
    summary = await reports.summary(today - timedelta(days=29), today, today)
    assert summary.totals == {
        "sign_ups": len(users),
        "logins": sum(e.type == USER_LOGGED_IN for e in counted),
        "failed_logins": sum(e.type == USER_LOGIN_FAILED for e in counted),
    }
    active: dict[date, set[uuid.UUID]] = defaultdict(set)
    for e in counted:
        if e.user_id and e.type not in NOT_ACTIVE:
            active[e.occurred_at.date()].add(e.user_id)
    assert [d.active_users for d in summary.days] == [len(active[d.day]) for d in summary.days]

    # And the rebuild from the ledger gives exactly the same aggregates.
    before = await snapshot(sessions)
    assert (await rebuild(sessions)).events == len(counted)
    assert await snapshot(sessions) == before


async def test_concurrent_counters_count_each_event_once(sessions: async_sessionmaker[AsyncSession]) -> None:
    today = datetime.now(UTC).date()
    users = [uuid.uuid4() for _ in range(3)]
    events = random_events(users, 150, today, seed=11)
    counters = [StatsCounter(sessions) for _ in range(3)]
    batches = [events[i : i + 10] for i in range(0, len(events), 10)]
    # Every batch handled by two replicas at once (a redelivery racing the original).
    await asyncio.gather(*(counters[n % 3](batch) for n, batch in enumerate(batches + batches)))

    reports = Reports(sessions)
    for user in users:
        report = await reports.for_user(user, today)
        assert report.events_by_type == recount(events, user, today)["events_by_type"]
    before = await snapshot(sessions)
    await rebuild(sessions)
    assert await snapshot(sessions) == before


async def test_a_history_recorded_event_without_its_type_is_refused(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    with pytest.raises(ValueError, match="data.type"):
        await StatsCounter(sessions)([Event(type=HISTORY_RECORDED, user_id=uuid.uuid4(), data={})])


async def test_late_events_of_a_deleted_user_are_not_counted(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    user = uuid.uuid4()
    counter = StatsCounter(sessions)
    await counter([Event(type=USER_LOGGED_IN, user_id=user), Event(type=USER_DELETED, user_id=user)])
    await counter([Event(type=USER_LOGGED_IN, user_id=user)])
    report = await Reports(sessions).for_user(user)
    assert (report.logins, report.events_by_type) == (0, {})
