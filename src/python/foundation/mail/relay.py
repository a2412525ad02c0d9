"""The mail relay: sends what a service's mail outbox holds, and marks each row sent.

Each pass takes the oldest due rows one at a time (``FOR UPDATE SKIP LOCKED``: replicas
never send one row at the same time) and, per row, asks the service's ``compose`` for the
message, sends it and marks the row, in one transaction. What ``compose`` writes in that
transaction is rolled back when the send fails (a savepoint), so a message never sent leaves
nothing behind.

- Sent: ``published_at`` is set. Rows are deleted ``retention`` after.
- ``compose`` answers None (the message is moot, e.g. its link has expired): marked done,
  not sent.
- ``MailUnavailable`` (server away, 4xx): tried again after a backoff of its own
  (``next_attempt_at``, exponential with full jitter up to ``max_delay``), with no limit on
  attempts: an outage delays mail, it never loses it. The pass stops at the first such
  failure, since the next row would most likely meet the same server.
- ``MailRejected`` (5xx for its recipients or content): logged and marked done; it would
  fail the same way again.

Delivery is at least once: if the process dies between the server's "250" and the commit,
the message goes again on the next pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Protocol

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from foundation.events.relay import Backoff
from foundation.mail.outbox import MailOutboxRow
from foundation.mail.sender import MailRejected, MailUnavailable
from foundation.shared.lifespan import BackgroundLoop
from foundation.shared.logging import get_logger

log = get_logger(__name__)

Compose = Callable[[AsyncSession, MailOutboxRow], Awaitable[EmailMessage | None]]


class Sender(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


class MailRelay(BackgroundLoop):
    """``start()`` runs the loop as a task (from a lifespan), ``aclose()`` stops it;
    ``run_once()`` is one pass, what tests drive directly."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        model: type[MailOutboxRow],
        sender: Sender,
        compose: Compose,
        *,
        batch_size: int = 50,
        poll_interval: float = 5.0,
        max_delay: float = 300.0,
        retention: timedelta = timedelta(days=1),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.model = model
        self.sender = sender
        self.compose = compose
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.backoff = Backoff(base=min(1.0, max_delay), cap=max_delay)
        self.retention = retention
        self.clock = clock
        self.sent = 0
        # Set by a pass that met an unavailable server: how long the loop waits before the
        # next one (the rows behind the failed one would meet the same server).
        self._pause: float | None = None
        self._full = False  # the last pass read a whole batch: more may be waiting
        super().__init__()
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """Look at the outbox now (call it after committing a mail row)."""
        self._wake.set()

    async def run_once(self) -> int:
        """One pass; the number of messages sent. Raises a database error, never a mail one.

        A transaction per message: each is marked sent as soon as the server took it (a link
        in it may be opened at once), and holds only its own row's lock while it is sent."""
        model, now = self.model, self.clock()
        sent = handled = 0
        self._pause = None
        due = (
            select(model)
            .where(
                model.published_at.is_(None),
                or_(model.next_attempt_at.is_(None), model.next_attempt_at <= now),
            )
            .order_by(model.seq)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        while handled < self.batch_size and self._pause is None:
            async with self.sessions() as db:
                row = (await db.scalars(due)).first()
                if row is None:
                    break
                handled += 1
                outcome = await self._deliver(db, row)
                row.attempts += 1
                if outcome is None:
                    row.published_at, row.last_error = self.clock(), None
                    sent += 1
                elif isinstance(outcome, MailUnavailable):
                    # The rows behind it would most likely meet the same server: the pass ends.
                    self._pause = self.backoff.delay(row.attempts)
                    row.next_attempt_at = self.clock() + timedelta(seconds=self._pause)
                    row.last_error = str(outcome)[:500]
                    log.warning("mail not sent; trying again", mail_id=str(row.event_id), error=str(outcome))
                else:  # rejected for good, or moot
                    row.published_at, row.last_error = self.clock(), str(outcome)[:500]
                await db.commit()
        self._full = handled == self.batch_size
        self.sent += sent
        return sent

    async def _deliver(self, db: AsyncSession, row: MailOutboxRow) -> Exception | None:
        """None when sent; else why not (``MailUnavailable``: try again)."""
        try:
            async with db.begin_nested():
                message = await self.compose(db, row)
                if message is None:
                    return MailRejected("not sent: no longer needed")
                await self.sender.send(message)
        except MailRejected as exc:
            log.error(
                "mail refused by the server; not trying again", mail_id=str(row.event_id), error=str(exc)
            )
            return exc
        except MailUnavailable as exc:
            return exc
        return None

    async def backlog(self) -> int:
        async with self.sessions() as db:
            count = await db.scalar(
                select(func.count()).select_from(self.model).where(self.model.published_at.is_(None))
            )
        return int(count or 0)

    async def purge_sent(self) -> int:
        cutoff = self.clock() - self.retention
        async with self.sessions() as db, db.begin():
            result = await db.execute(
                delete(self.model).where(
                    self.model.published_at.is_not(None), self.model.published_at <= cutoff
                )
            )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def _next_due(self) -> float:
        """Seconds until the earliest waiting row is due (the poll interval at most)."""
        async with self.sessions() as db:
            due = await db.scalar(
                select(func.min(func.coalesce(self.model.next_attempt_at, func.now()))).where(
                    self.model.published_at.is_(None)
                )
            )
        if due is None:
            return self.poll_interval
        return max(0.0, min(self.poll_interval, (due - self.clock()).total_seconds()))

    # The loop ------------------------------------------------------------------------------

    def task_name(self) -> str:
        return "mail-relay"

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_purge = loop.time()
        failures = 0
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                await self.run_once()
                if loop.time() - last_purge > 60:
                    last_purge = loop.time()
                    await self.purge_sent()
                if self._pause is not None:
                    wait = self._pause
                else:
                    wait = 0.0 if self._full else await self._next_due()
                failures = 0
            except (SQLAlchemyError, OSError) as exc:
                wait = Backoff(cap=self.poll_interval).delay(failures)
                failures += 1
                log.warning(
                    "mail relay cannot read the outbox; retrying", error=f"{type(exc).__name__}: {exc}"
                )
            if wait > 0:
                await self._idle(wait)

    async def _idle(self, seconds: float) -> None:
        woken = asyncio.ensure_future(self._wake.wait())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait((woken, stopping), timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            stopping.cancel()


__all__ = ["Compose", "MailRelay", "Sender"]
