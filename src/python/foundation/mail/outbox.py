"""The mail outbox: a message to send is a row written in the same transaction as the change
that calls for it (``foundation.events.outbox.record`` with this model), so a message is sent
only if that change commits, and none is lost while the mail server is away.

The table has the event outbox's columns (``foundation.events.outbox.OutboxRow``: ``type``
names the message, ``data`` holds what it needs, ``published_at`` is when it was sent) and
two of its own for retries: ``next_attempt_at`` and ``last_error``. It is a table apart from
the event outbox: messages never reach the event stream.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from foundation.events.outbox import OutboxRow

MAIL_OUTBOX_TABLE = "mail_outbox"


class MailOutboxRow(OutboxRow):
    __tablename__ = MAIL_OUTBOX_TABLE
    # Not before this time (a failed attempt's backoff); NULL: at once.
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Why the last attempt failed (the server's answer; never the message itself).
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)


def mail_outbox_model(base: type[DeclarativeBase]) -> type[MailOutboxRow]:
    """The mail outbox mapped class for a service's declarative base."""
    return type(
        "MailOutbox",
        (MailOutboxRow, base),
        {"__table_args__": (Index("ix_mail_outbox_unsent", "seq", postgresql_where="published_at IS NULL"),)},
    )
