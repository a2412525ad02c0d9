"""Stats queries: the only module here that speaks SQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any, cast

from sqlalchemy import Table, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from foundation.database.batch import batch_insert, batch_params, uuids_among
from foundation.events.relay import advisory_lock_key
from foundation.events.schema import (
    SESSION_REVOKED,
    USER_LOGGED_IN,
    USER_LOGGED_OUT,
    USER_LOGIN_FAILED,
    USER_REGISTERED,
)
from foundation.stats_service.models import (
    DailyTotals,
    DeletedUser,
    StatsEvent,
    UserDailyActivity,
    UserEventCount,
    UserStats,
)

# Counting takes it shared, a rebuild exclusively: a rebuild never races a batch.
AGGREGATES_LOCK = advisory_lock_key("stats-service:aggregates")
SESSION_END_TYPES = (USER_LOGGED_OUT, SESSION_REVOKED)


def _table(model: Any) -> Table:
    return cast(Table, model.__table__)


LEDGER_COLUMNS = (
    "event_id",
    "type",
    "user_id",
    "actor",
    "counted_type",
    "occurred_at",
    "day",
    "is_activity",
)
_INSERT_NEW_EVENTS = batch_insert(
    _table(StatsEvent), LEDGER_COLUMNS, "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)
USER_STATS_COLUMNS = ("user_id", "logins", "failed_logins", "sessions_ended", "last_login_at")
_ADD_USER_STATS = batch_insert(
    _table(UserStats),
    USER_STATS_COLUMNS,
    "ON CONFLICT (user_id) DO UPDATE SET logins = target.logins + EXCLUDED.logins, "
    "failed_logins = target.failed_logins + EXCLUDED.failed_logins, "
    "sessions_ended = target.sessions_ended + EXCLUDED.sessions_ended, "
    "last_login_at = greatest(target.last_login_at, EXCLUDED.last_login_at)",
)
EVENT_COUNT_COLUMNS = ("user_id", "type", "count")
_ADD_EVENT_COUNTS = batch_insert(
    _table(UserEventCount),
    EVENT_COUNT_COLUMNS,
    'ON CONFLICT (user_id, type) DO UPDATE SET "count" = target."count" + EXCLUDED."count"',
)
ACTIVITY_COLUMNS = ("user_id", "day", "events")
_ADD_DAILY_ACTIVITY = batch_insert(
    _table(UserDailyActivity),
    ACTIVITY_COLUMNS,
    "ON CONFLICT (user_id, day) DO UPDATE SET events = target.events + EXCLUDED.events "
    "RETURNING target.day, (target.xmax = 0) AS inserted",
)
TOTALS_COLUMNS = ("day", "sign_ups", "logins", "failed_logins", "active_users")
_ADD_DAILY_TOTALS = batch_insert(
    _table(DailyTotals),
    TOTALS_COLUMNS,
    "ON CONFLICT (day) DO UPDATE SET sign_ups = target.sign_ups + EXCLUDED.sign_ups, "
    "logins = target.logins + EXCLUDED.logins, "
    "failed_logins = target.failed_logins + EXCLUDED.failed_logins, "
    "active_users = target.active_users + EXCLUDED.active_users",
)


class StatsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_for_counting(self) -> None:
        await self.session.execute(select(func.pg_advisory_xact_lock_shared(AGGREGATES_LOCK)))

    async def lock_for_rebuild(self) -> None:
        await self.session.execute(select(func.pg_advisory_xact_lock(AGGREGATES_LOCK)))

    # The ledger -----------------------------------------------------------------------------

    async def insert_new_events(self, rows: Sequence[Mapping[str, Any]]) -> set[uuid.UUID]:
        """Insert ledger rows not seen before; the ids actually inserted."""
        if not rows:
            return set()
        result = await self.session.execute(_INSERT_NEW_EVENTS, batch_params(rows))
        return set(result.scalars().all())

    async def deleted_among(self, user_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        return await uuids_among(self.session, DeletedUser.user_id, user_ids)

    # Incremental aggregates (keys sorted: concurrent replicas lock rows in one order) ------

    async def add_user_stats(self, rows: Mapping[uuid.UUID, dict[str, Any]]) -> None:
        if not rows:
            return
        values = [{"user_id": user_id, **rows[user_id]} for user_id in sorted(rows)]
        await self.session.execute(_ADD_USER_STATS, batch_params(values))

    async def add_event_counts(self, counts: Mapping[tuple[uuid.UUID, str], int]) -> None:
        if not counts:
            return
        values = [{"user_id": u, "type": t, "count": counts[(u, t)]} for u, t in sorted(counts)]
        await self.session.execute(_ADD_EVENT_COUNTS, batch_params(values))

    async def add_daily_activity(self, counts: Mapping[tuple[uuid.UUID, date], int]) -> dict[date, int]:
        """Add to users' per-day counts; per day, how many users became active that day."""
        if not counts:
            return {}
        values = [{"user_id": u, "day": d, "events": counts[(u, d)]} for u, d in sorted(counts)]
        result = await self.session.execute(_ADD_DAILY_ACTIVITY, batch_params(values))
        new_users: dict[date, int] = {}
        for day, inserted in result.all():
            if inserted:
                new_users[day] = new_users.get(day, 0) + 1
        return new_users

    async def add_daily_totals(self, rows: Mapping[date, dict[str, int]]) -> None:
        if not rows:
            return
        values = [{"day": day, **rows[day]} for day in sorted(rows)]
        await self.session.execute(_ADD_DAILY_TOTALS, batch_params(values))

    async def delete_user(self, user_id: uuid.UUID) -> None:
        """Remove a user's per-user data; their ledger rows stay only as anonymous counts."""
        for model in (UserStats, UserEventCount, UserDailyActivity):
            await self.session.execute(delete(model).where(model.user_id == user_id))
        await self.session.execute(
            update(StatsEvent).where(StatsEvent.user_id == user_id).values(user_id=None, actor=uuid.uuid4())
        )
        await self.session.execute(insert(DeletedUser).values(user_id=user_id).on_conflict_do_nothing())

    # Rebuild -------------------------------------------------------------------------------

    async def recompute_all(self) -> None:
        """Throw the aggregates away and count them again from the ledger."""
        for model in (UserStats, UserEventCount, UserDailyActivity, DailyTotals):
            await self.session.execute(delete(model))
        params = {
            "login": USER_LOGGED_IN,
            "failed": USER_LOGIN_FAILED,
            "signup": USER_REGISTERED,
            "ended": list(SESSION_END_TYPES),
        }
        statements = [
            """
            INSERT INTO user_stats (user_id, logins, failed_logins, sessions_ended, last_login_at)
            SELECT user_id,
                   count(*) FILTER (WHERE type = :login),
                   count(*) FILTER (WHERE type = :failed),
                   count(*) FILTER (WHERE type = ANY(:ended)),
                   max(occurred_at) FILTER (WHERE type = :login)
            FROM stats_events WHERE user_id IS NOT NULL GROUP BY user_id
            """,
            """
            INSERT INTO user_event_counts (user_id, type, count)
            SELECT user_id, counted_type, count(*)
            FROM stats_events WHERE user_id IS NOT NULL GROUP BY user_id, counted_type
            """,
            """
            INSERT INTO user_daily_activity (user_id, day, events)
            SELECT user_id, day, count(*)
            FROM stats_events WHERE user_id IS NOT NULL AND is_activity GROUP BY user_id, day
            """,
            """
            INSERT INTO daily_totals (day, sign_ups, logins, failed_logins, active_users)
            SELECT day,
                   count(*) FILTER (WHERE type = :signup),
                   count(*) FILTER (WHERE type = :login),
                   count(*) FILTER (WHERE type = :failed),
                   count(DISTINCT actor) FILTER (WHERE is_activity)
            FROM stats_events GROUP BY day
            """,
        ]
        for sql in statements:
            used = {k: v for k, v in params.items() if f":{k}" in sql}
            await self.session.execute(text(sql), used)

    async def ledger_size(self) -> int:
        return int(await self.session.scalar(select(func.count()).select_from(StatsEvent)) or 0)

    # Reads ---------------------------------------------------------------------------------

    async def user_stats(self, user_id: uuid.UUID) -> UserStats | None:
        return await self.session.get(UserStats, user_id)

    async def event_counts(self, user_id: uuid.UUID) -> dict[str, int]:
        rows = await self.session.execute(
            select(UserEventCount.type, UserEventCount.count).where(UserEventCount.user_id == user_id)
        )
        return {str(type_): int(count) for type_, count in rows.all()}

    async def daily_activity(self, user_id: uuid.UUID, since: date) -> dict[date, int]:
        rows = await self.session.execute(
            select(UserDailyActivity.day, UserDailyActivity.events).where(
                UserDailyActivity.user_id == user_id, UserDailyActivity.day >= since
            )
        )
        return {day: int(events) for day, events in rows.all()}

    async def daily_totals(self, since: date, until: date) -> list[DailyTotals]:
        rows = await self.session.scalars(
            select(DailyTotals)
            .where(DailyTotals.day >= since, DailyTotals.day <= until)
            .order_by(DailyTotals.day)
        )
        return list(rows.all())

    async def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every aggregate row, sorted: compares an incremental count with a recount."""
        out: dict[str, list[tuple[Any, ...]]] = {}
        for name in ("user_stats", "user_event_counts", "user_daily_activity", "daily_totals"):
            rows = await self.session.execute(text(f"SELECT * FROM {name} ORDER BY 1, 2"))  # noqa: S608
            out[name] = [tuple(row) for row in rows.all()]
        return out
