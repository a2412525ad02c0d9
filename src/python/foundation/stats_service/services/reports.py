"""Reading the aggregates: a user's own stats, and the admin summary."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from foundation.shared.errors import ValidationFailed
from foundation.stats_service.repository import StatsRepository

ACTIVITY_DAYS = 30
MAX_SUMMARY_DAYS = 366


@dataclass(frozen=True)
class DayCount:
    day: date
    events: int


@dataclass(frozen=True)
class UserReport:
    user_id: uuid.UUID
    logins: int = 0
    failed_logins: int = 0
    sessions_started: int = 0
    sessions_ended: int = 0
    last_login_at: datetime | None = None
    events_by_type: dict[str, int] = field(default_factory=dict)
    daily_activity: list[DayCount] = field(default_factory=list)


@dataclass(frozen=True)
class DaySummary:
    day: date
    sign_ups: int = 0
    logins: int = 0
    failed_logins: int = 0
    active_users: int = 0


@dataclass(frozen=True)
class Summary:
    since: date
    until: date
    days: list[DaySummary]

    @property
    def totals(self) -> dict[str, int]:
        return {
            "sign_ups": sum(d.sign_ups for d in self.days),
            "logins": sum(d.logins for d in self.days),
            "failed_logins": sum(d.failed_logins for d in self.days),
        }


def _range_error(detail: str) -> ValidationFailed:
    return ValidationFailed(
        detail,
        [{"field": "since", "location": "query", "message": detail, "type": "range"}],
        code="invalid_range",
    )


class Reports:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def for_user(self, user_id: uuid.UUID, today: date | None = None) -> UserReport:
        today = today or datetime.now(UTC).date()
        first = today - timedelta(days=ACTIVITY_DAYS - 1)
        async with self.sessions() as session:
            repository = StatsRepository(session)
            stats = await repository.user_stats(user_id)
            by_type = await repository.event_counts(user_id)
            activity = await repository.daily_activity(user_id, first)
        days = [first + timedelta(days=n) for n in range(ACTIVITY_DAYS)]
        return UserReport(
            user_id=user_id,
            logins=stats.logins if stats else 0,
            failed_logins=stats.failed_logins if stats else 0,
            sessions_started=stats.logins if stats else 0,
            sessions_ended=stats.sessions_ended if stats else 0,
            last_login_at=stats.last_login_at if stats else None,
            events_by_type=dict(sorted(by_type.items())),
            daily_activity=[DayCount(day, activity.get(day, 0)) for day in days],
        )

    async def summary(self, since: date | None, until: date | None, today: date | None = None) -> Summary:
        today = today or datetime.now(UTC).date()
        until = until or today
        since = since or until - timedelta(days=ACTIVITY_DAYS - 1)
        if since > until:
            raise _range_error("`since` must not be after `until`.")
        if (until - since).days + 1 > MAX_SUMMARY_DAYS:
            raise _range_error(f"The range may span at most {MAX_SUMMARY_DAYS} days.")
        async with self.sessions() as session:
            rows = {row.day: row for row in await StatsRepository(session).daily_totals(since, until)}
        days = []
        for n in range((until - since).days + 1):
            day = since + timedelta(days=n)
            row = rows.get(day)
            days.append(
                DaySummary(day, row.sign_ups, row.logins, row.failed_logins, row.active_users)
                if row
                else DaySummary(day)
            )
        return Summary(since, until, days)
