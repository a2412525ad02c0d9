"""History service database models."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Index, Integer, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from foundation.database.base import new_base
from foundation.events.outbox import outbox_model

Base = new_base()

# Client events are published (as ``history.recorded``) through this service's own outbox.
Outbox = outbox_model(Base)


class HistoryEvent(Base):  # type: ignore[misc, valid-type]
    """One entry of a user's timeline; ``id`` is the event id, so an event is stored once."""

    __tablename__ = "history_events"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(nullable=False)
    type: Mapped[str] = mapped_column(String(100), nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    recorded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    # "stream" (published by a service) or "client" (POST /history).
    source: Mapped[str] = mapped_column(String(16), nullable=False)

    __table_args__ = (
        # The timeline query: one user's events, newest first (keyset on occurred_at, id);
        # a B-tree is read backwards just as fast.
        Index("ix_history_events_timeline", "user_id", "occurred_at", "id"),
        Index("ix_history_events_type_timeline", "user_id", "type", "occurred_at", "id"),
    )


class DeletedUser(Base):  # type: ignore[misc, valid-type]
    """Users whose data was removed (``user.deleted``): their late events are ignored."""

    __tablename__ = "deleted_users"

    user_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    deleted_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
