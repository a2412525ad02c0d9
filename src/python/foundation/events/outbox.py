"""Transactional outbox: events are rows written in the same transaction as the change.

A service adds the table to its own metadata with ``outbox_model(Base)`` (and a migration),
then calls ``record(session, ...)`` inside the transaction that makes the change. The relay
(``foundation.events.relay``) publishes the rows to the Redis stream afterwards, so an
event is never lost while Redis is down and never published for a rolled-back change.

A change made in one SQL statement outside the ORM (a psycopg CTE) adds its event in the
same statement: ``insert_sql()`` is the outbox ``INSERT`` to put in it, ``insert_params()``
its values, so that only this module knows the table's columns.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Index, Integer, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

OUTBOX_TABLE = "outbox"


class OutboxRow:
    """Columns of the outbox table (mixed into the service's own declarative base)."""

    __tablename__ = OUTBOX_TABLE
    # Global order of writes: the relay publishes in this order.
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    type: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    version: Mapped[int] = mapped_column(Integer, default=1)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


def outbox_model(base: type[DeclarativeBase]) -> type[OutboxRow]:
    """The outbox mapped class for a service's declarative base."""

    model = type(
        "OutboxEvent",
        (OutboxRow, base),
        {"__table_args__": (Index("ix_outbox_unpublished", "seq", postgresql_where="published_at IS NULL"),)},
    )
    return model


def record(
    session: AsyncSession,
    model: type[OutboxRow],
    type: str,
    user_id: uuid.UUID | None,
    data: dict[str, Any] | None = None,
    *,
    version: int = 1,
    occurred_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
) -> OutboxRow:
    """Add an event to the session's transaction; it is published only if that commits."""
    row = model(  # type: ignore[call-arg]  # the mixin's columns, mapped on the subclass
        event_id=event_id or uuid.uuid4(),
        type=type,
        user_id=user_id,
        data=data or {},
        version=version,
        occurred_at=occurred_at or datetime.now(UTC),
    )
    session.add(row)
    return row


# The columns an event is written with; the rest are the relay's (seq, published_at, attempts).
_COLUMNS = "event_id, type, user_id, occurred_at, data, version"


def insert_sql(
    *,
    source: str | None = None,
    user_id: str | None = None,
    data: str | None = None,
    event_id: str | None = None,
) -> str:
    """The SQL that adds one outbox row, with psycopg placeholders for ``insert_params()``.

    Standalone, or a data-modifying CTE's body (``WITH ..., event AS (<this>) ...``). With
    ``source`` (a CTE or table the statement can read), a row is added per row of ``source``,
    none if it is empty; ``user_id`` and ``data`` (``jsonb``) may then be SQL expressions over
    its columns instead of the parameters' values. The event id is a parameter: a ``source``
    of more than one row needs ``event_id="gen_random_uuid()"``."""
    values = ", ".join(
        [
            event_id or "%(outbox_event_id)s::uuid",
            "%(outbox_type)s::text",
            user_id or "%(outbox_user_id)s::uuid",
            "%(outbox_occurred_at)s::timestamptz",
            data or "%(outbox_data)s::jsonb",
            "%(outbox_version)s::int",
        ]
    )
    # The caller's SQL, never a value: those are all parameters.
    sql = f"INSERT INTO {OUTBOX_TABLE} ({_COLUMNS}) SELECT {values}"
    return f"{sql} FROM {source}" if source else sql


def insert_params(
    type: str,
    user_id: uuid.UUID | None = None,
    data: dict[str, Any] | None = None,
    *,
    occurred_at: datetime | None = None,
    version: int = 1,
    event_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """The values ``insert_sql()`` reads (``record``'s arguments), to merge into the statement's
    own parameters; their names all start with ``outbox_``."""
    return {
        "outbox_event_id": event_id or uuid.uuid4(),
        "outbox_type": type,
        "outbox_user_id": user_id,
        "outbox_occurred_at": occurred_at or datetime.now(UTC),
        "outbox_data": json.dumps(data or {}, separators=(",", ":")),
        "outbox_version": version,
    }
