"""What the event stream does to the history database (the consumer's handler).

Every event with a user is stored once, keyed by its id, so a redelivered event changes
nothing. ``user.deleted`` removes that user's timeline and leaves a tombstone, so an event
of theirs that arrives late (a retry) is not stored again. ``history.recorded`` events are
this service's own announcements of client events it has already stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from foundation.events.schema import HISTORY_RECORDED, USER_DELETED, Event
from foundation.history_service.repository import HistoryRepository
from foundation.history_service.services.timeline import SOURCE_STREAM
from foundation.shared.logging import get_logger

log = get_logger(__name__)


def _row(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "user_id": event.user_id,
        "type": event.type,
        "occurred_at": event.occurred_at,
        "data": event.data,
        "version": event.version,
        "source": SOURCE_STREAM,
    }


class HistoryIngest:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def __call__(self, events: Sequence[Event]) -> None:
        """Apply a batch in one transaction, in stream order; committed when this returns."""
        async with self.sessions() as session, session.begin():
            repository = HistoryRepository(session)
            pending: list[Event] = []
            for event in events:
                if event.user_id is None or event.type == HISTORY_RECORDED:
                    continue
                if event.type == USER_DELETED:
                    await self._store(repository, pending)
                    pending = []
                    removed = await repository.delete_user(event.user_id)
                    log.info("user history deleted", user_id=str(event.user_id), events=removed)
                else:
                    pending.append(event)
            await self._store(repository, pending)

    @staticmethod
    async def _store(repository: HistoryRepository, events: list[Event]) -> None:
        if not events:
            return
        deleted = await repository.deleted_among(e.user_id for e in events if e.user_id)
        rows: dict[Any, dict[str, Any]] = {}
        for event in events:
            if event.user_id not in deleted:
                rows.setdefault(event.id, _row(event))  # the same id twice in one batch: once
        await repository.insert_new(list(rows.values()))
