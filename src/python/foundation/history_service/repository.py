"""History queries: the only module here that speaks SQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from foundation.database.batch import batch_insert, batch_params, uuids_among
from foundation.history_service.models import DeletedUser, HistoryEvent

EVENT_COLUMNS = ("id", "user_id", "type", "occurred_at", "data", "version", "source")
_INSERT_NEW = batch_insert(
    cast(Table, HistoryEvent.__table__), EVENT_COLUMNS, "ON CONFLICT (id) DO NOTHING RETURNING id"
)


class HistoryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert_new(self, rows: Sequence[dict[str, Any]]) -> int:
        """Insert events not stored before (by id); the number actually inserted."""
        if not rows:
            return 0
        result = await self.session.execute(_INSERT_NEW, batch_params(rows))
        return len(result.all())

    async def deleted_among(self, user_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        return await uuids_among(self.session, DeletedUser.user_id, user_ids)

    async def delete_user(self, user_id: uuid.UUID) -> int:
        """Remove a user's timeline and remember the deletion; the number of events removed."""
        result = await self.session.execute(delete(HistoryEvent).where(HistoryEvent.user_id == user_id))
        await self.session.execute(insert(DeletedUser).values(user_id=user_id).on_conflict_do_nothing())
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def timeline(
        self,
        user_id: uuid.UUID,
        *,
        limit: int,
        before: tuple[datetime, uuid.UUID] | None = None,
        type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[HistoryEvent]:
        """A user's events, newest first, strictly after the keyset ``before`` (if given)."""
        query = select(HistoryEvent).where(HistoryEvent.user_id == user_id)
        if type is not None:
            query = query.where(HistoryEvent.type == type)
        if since is not None:
            query = query.where(HistoryEvent.occurred_at >= since)
        if until is not None:
            query = query.where(HistoryEvent.occurred_at < until)
        if before is not None:
            query = query.where(tuple_(HistoryEvent.occurred_at, HistoryEvent.id) < tuple_(*before))
        query = query.order_by(HistoryEvent.occurred_at.desc(), HistoryEvent.id.desc()).limit(limit)
        return list((await self.session.scalars(query)).all())
