"""What the event stream does to the stats database (the consumer's handler).

A batch runs in one transaction, in stream order. Each event is first written to the ledger
(``stats_events``) with ``ON CONFLICT DO NOTHING``; only the rows actually inserted are
added to the aggregates, so an event delivered twice is counted once.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from foundation.events.schema import (
    HISTORY_RECORDED,
    MFA_FAILED,
    REFRESH_TOKEN_REUSED,
    USER_DELETED,
    USER_LOGGED_IN,
    USER_LOGIN_FAILED,
    USER_PASSWORD_RESET_REQUESTED,
    USER_REGISTERED,
    Event,
)
from foundation.shared.logging import get_logger
from foundation.stats_service.repository import SESSION_END_TYPES, StatsRepository

log = get_logger(__name__)

# Events that do not mean the user was active (someone else may have caused them: anyone who
# knows an address can ask for its reset link).
NOT_ACTIVITY = frozenset({USER_LOGIN_FAILED, MFA_FAILED, REFRESH_TOKEN_REUSED, USER_PASSWORD_RESET_REQUESTED})


def ledger_row(event: Event) -> dict[str, Any] | None:
    """The ledger row for an event, or None when stats ignores it."""
    if event.user_id is None and event.type != USER_LOGIN_FAILED:
        return None
    counted_type = event.type
    if event.type == HISTORY_RECORDED:
        client_type = event.data.get("type")
        if not isinstance(client_type, str) or not client_type:
            raise ValueError("history.recorded without data.type")
        counted_type = client_type[:100]
    occurred_at = event.occurred_at.astimezone(UTC)
    return {
        "event_id": event.id,
        "type": event.type,
        "user_id": event.user_id,
        "actor": event.user_id,
        "counted_type": counted_type,
        "occurred_at": occurred_at,
        "day": occurred_at.date(),
        "is_activity": event.user_id is not None and event.type not in NOT_ACTIVITY,
    }


class StatsCounter:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def __call__(self, events: Sequence[Event]) -> None:
        async with self.sessions() as session, session.begin():
            repository = StatsRepository(session)
            await repository.lock_for_counting()
            pending: list[Event] = []
            for event in events:
                if event.type == USER_DELETED:
                    await self._count(repository, pending)
                    pending = []
                    if event.user_id is not None:
                        await repository.delete_user(event.user_id)
                        log.info("user stats deleted", user_id=str(event.user_id))
                else:
                    pending.append(event)
            await self._count(repository, pending)

    @staticmethod
    async def _count(repository: StatsRepository, events: list[Event]) -> None:
        rows: dict[uuid.UUID, dict[str, Any]] = {}
        for event in events:
            row = ledger_row(event)
            if row is not None:
                rows.setdefault(event.id, row)
        deleted = await repository.deleted_among(r["user_id"] for r in rows.values() if r["user_id"])
        candidates = [r for r in rows.values() if r["user_id"] not in deleted]
        inserted = await repository.insert_new_events(candidates)
        new = [r for r in candidates if r["event_id"] in inserted]
        if not new:
            return

        users: dict[uuid.UUID, dict[str, Any]] = {}
        by_type: Counter[tuple[uuid.UUID, str]] = Counter()
        activity: Counter[tuple[uuid.UUID, date]] = Counter()
        totals: dict[date, dict[str, int]] = {}
        for row in new:
            day_totals = totals.setdefault(
                row["day"], {"sign_ups": 0, "logins": 0, "failed_logins": 0, "active_users": 0}
            )
            kind = row["type"]
            day_totals["sign_ups"] += kind == USER_REGISTERED
            day_totals["logins"] += kind == USER_LOGGED_IN
            day_totals["failed_logins"] += kind == USER_LOGIN_FAILED
            user_id = row["user_id"]
            if user_id is None:
                continue
            user = users.setdefault(
                user_id, {"logins": 0, "failed_logins": 0, "sessions_ended": 0, "last_login_at": None}
            )
            user["logins"] += kind == USER_LOGGED_IN
            user["failed_logins"] += kind == USER_LOGIN_FAILED
            user["sessions_ended"] += kind in SESSION_END_TYPES
            if kind == USER_LOGGED_IN and (
                user["last_login_at"] is None or row["occurred_at"] > user["last_login_at"]
            ):
                user["last_login_at"] = row["occurred_at"]
            by_type[(user_id, row["counted_type"])] += 1
            if row["is_activity"]:
                activity[(user_id, row["day"])] += 1

        await repository.add_user_stats(users)
        await repository.add_event_counts(by_type)
        for day, count in (await repository.add_daily_activity(activity)).items():
            totals[day]["active_users"] += count
        await repository.add_daily_totals(totals)
