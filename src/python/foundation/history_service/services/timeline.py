"""A user's timeline: reading it page by page, and recording the client's own events."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from foundation.events.outbox import record
from foundation.events.schema import HISTORY_RECORDED, SYSTEM_NAMESPACES
from foundation.history_service.models import HistoryEvent, Outbox
from foundation.history_service.repository import HistoryRepository
from foundation.shared.errors import AppError, BadRequest, Forbidden, ValidationFailed
from foundation.shared.responses import Page, decode_cursor, page

EVENT_TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
MAX_TYPE_LENGTH = 100
SOURCE_CLIENT = "client"
SOURCE_STREAM = "stream"


class EventDataTooLarge(AppError):
    status, code, title = 413, "event_data_too_large", "Event data too large"


@dataclass(frozen=True)
class TimelineQuery:
    limit: int
    cursor: str | None = None
    type: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _cursor_of(event: HistoryEvent) -> dict[str, Any]:
    return {"t": event.occurred_at.isoformat(), "id": str(event.id)}


def _parse_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    values = decode_cursor(cursor)
    try:
        occurred_at = datetime.fromisoformat(str(values["t"]))
        event_id = uuid.UUID(str(values["id"]))
    except (KeyError, ValueError) as exc:
        raise BadRequest("The cursor is not valid.", code="invalid_cursor") from exc
    if occurred_at.tzinfo is None:
        raise BadRequest("The cursor is not valid.", code="invalid_cursor")
    return occurred_at, event_id


def _utc(value: datetime | None) -> datetime | None:
    """A time without a zone is taken as UTC."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _field_error(field: str, message: str, code: str) -> ValidationFailed:
    return ValidationFailed(
        f"Invalid input: {field}",
        [{"field": field, "location": "body", "message": message, "type": code}],
        code=code,
    )


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def _unstorable() -> ValidationFailed:
    return _field_error(
        "data", "text must be valid Unicode without U+0000 (NUL) characters", "invalid_event_data"
    )


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("days", 86_400), ("hours", 3_600), ("minutes", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} seconds"


class Timeline:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        max_data_bytes: int,
        max_future: timedelta,
        max_past: timedelta,
    ) -> None:
        self.sessions = sessions
        self.max_data_bytes = max_data_bytes
        self.max_future = max_future
        self.max_past = max_past

    async def read(self, user_id: uuid.UUID, query: TimelineQuery) -> Page[HistoryEvent]:
        query = replace(query, since=_utc(query.since), until=_utc(query.until))
        if query.since and query.until and query.since >= query.until:
            raise ValidationFailed(
                "`since` must be before `until`.",
                [{"field": "since", "location": "query", "message": "must be before until", "type": "range"}],
                code="invalid_range",
            )
        before = _parse_cursor(query.cursor) if query.cursor else None
        async with self.sessions() as session:
            rows = await HistoryRepository(session).timeline(
                user_id,
                limit=query.limit + 1,
                before=before,
                type=query.type,
                since=query.since,
                until=query.until,
            )
        return page(rows, query.limit, _cursor_of)

    def validate(self, type: str, data: dict[str, Any], occurred_at: datetime | None) -> datetime:
        """Check a client event; its ``occurred_at`` (now when not given)."""
        if len(type) > MAX_TYPE_LENGTH or not EVENT_TYPE_PATTERN.fullmatch(type):
            raise _field_error(
                "type", "lower-case words separated by dots, like `app.opened`", "invalid_event_type"
            )
        if type.split(".", 1)[0] in SYSTEM_NAMESPACES:
            raise _field_error(
                "type", "this namespace is reserved for the services' own events", "reserved_event_type"
            )
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        try:
            size = len(text.encode())
        except UnicodeEncodeError:  # a lone surrogate (`"\ud800"`): not text PostgreSQL stores
            raise _unstorable() from None
        if "\\u0000" in text and _has_nul(data):  # jsonb cannot hold U+0000
            raise _unstorable()
        if size > self.max_data_bytes:
            raise EventDataTooLarge(f"`data` is {size} bytes as JSON; the limit is {self.max_data_bytes}.")
        now = datetime.now(UTC)
        if occurred_at is None:
            return now
        if occurred_at.tzinfo is None:
            raise _field_error(
                "occurred_at", "give a time zone, e.g. `2025-01-31T12:00:00Z`", "naive_datetime"
            )
        if occurred_at > now + self.max_future:
            raise _field_error("occurred_at", "must not be in the future", "occurred_at_in_future")
        if occurred_at < now - self.max_past:
            raise _field_error(
                "occurred_at",
                f"must be at most {_span(self.max_past)} in the past",
                "occurred_at_too_old",
            )
        return occurred_at.astimezone(UTC)

    async def record(
        self, user_id: uuid.UUID, type: str, data: dict[str, Any], occurred_at: datetime | None = None
    ) -> HistoryEvent:
        """Store a client's own event and publish ``history.recorded`` in the same transaction."""
        when = self.validate(type, data, occurred_at)
        event_id = uuid.uuid4()
        async with self.sessions() as session, session.begin():
            repository = HistoryRepository(session)
            if await repository.deleted_among([user_id]):
                raise Forbidden("This account has been deleted.", code="account_deleted")
            event = HistoryEvent(
                id=event_id,
                user_id=user_id,
                type=type,
                occurred_at=when,
                data=data,
                version=1,
                source=SOURCE_CLIENT,
            )
            session.add(event)
            record(
                session,
                Outbox,
                HISTORY_RECORDED,
                user_id,
                {"type": type},
                occurred_at=when,
                event_id=event_id,
            )
            await session.flush()
            await session.refresh(event)
        return event
