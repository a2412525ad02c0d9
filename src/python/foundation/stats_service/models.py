"""Stats service database models.

``stats_events`` is the ledger: one row per event this service has counted (its id makes
counting idempotent). The other tables are aggregates kept up to date from the ledger's new
rows, and ``rebuild`` recomputes them from the ledger alone (docs/events.md, "Replay").
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import Boolean, Date, DateTime, Index, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from foundation.database.base import new_base

Base = new_base()


class StatsEvent(Base):  # type: ignore[misc, valid-type]
    __tablename__ = "stats_events"

    event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(100), nullable=False)
    # NULL for an event without a user, and once the user is deleted.
    user_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    # Who did it, for counting distinct active users: the user id, replaced by a random
    # pseudonym when the user is deleted (the day's active-user count must not change).
    actor: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    # The type shown in "events by type": the client's own type for history.recorded.
    counted_type: Mapped[str] = mapped_column(String(100), nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    day: Mapped[date] = mapped_column(Date, nullable=False)
    is_activity: Mapped[bool] = mapped_column(Boolean, nullable=False)

    __table_args__ = (Index("ix_stats_events_user_id", "user_id"),)


class UserStats(Base):  # type: ignore[misc, valid-type]
    __tablename__ = "user_stats"

    user_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    logins: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    failed_logins: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    sessions_ended: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class UserEventCount(Base):  # type: ignore[misc, valid-type]
    __tablename__ = "user_event_counts"

    user_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(100), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, nullable=False)


class UserDailyActivity(Base):  # type: ignore[misc, valid-type]
    __tablename__ = "user_daily_activity"

    user_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    events: Mapped[int] = mapped_column(Integer, nullable=False)


class DailyTotals(Base):  # type: ignore[misc, valid-type]
    __tablename__ = "daily_totals"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    sign_ups: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    logins: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    failed_logins: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    active_users: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")


class DeletedUser(Base):  # type: ignore[misc, valid-type]
    """Users whose data was removed (``user.deleted``): their late events are ignored."""

    __tablename__ = "deleted_users"

    user_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    deleted_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
