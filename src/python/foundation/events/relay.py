"""The outbox relay: publishes a service's outbox rows to the Redis event stream.

One pass (``run_once``) runs in one database transaction:

1. ``pg_try_advisory_xact_lock`` on a key derived from the outbox table. Only one replica
   publishes at a time, so the stream receives rows in ``seq`` order. ``FOR UPDATE SKIP
   LOCKED`` alone would let two replicas publish neighbouring batches concurrently and
   interleave them (a user's ``logged_out`` could land before their ``logged_in``). A
   replica that does not get the lock simply tries again on its next tick.
2. Read the oldest unpublished rows (``ORDER BY seq``, ``FOR UPDATE SKIP LOCKED``).
3. ``XADD`` them, in order, with one Lua script call (atomic like MULTI/EXEC).
4. Mark them published and commit.

If Redis fails at step 3 the transaction rolls back and the rows are published on a later
attempt (with exponential backoff and jitter). If the process dies between steps 3 and 4
the rows are published twice: consumers ignore an event id they have already stored, so
delivery is at least once and processing exactly once.

Published rows stay for ``retention`` (audit, debugging) and are then deleted in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import redis.asyncio as aioredis
from psycopg import sql
from redis.exceptions import RedisError
from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from foundation.events.outbox import OutboxRow
from foundation.events.schema import FIELDS_PER_EVENT, STREAM, event_fields
from foundation.shared.lifespan import BackgroundLoop
from foundation.shared.logging import get_logger
from foundation.shared.redis import Keys

log = get_logger(__name__)


# XADD each entry of a batch (ARGV[1]: MAXLEN or ""; then FIELDS_PER_EVENT name/value pairs
# per entry), in order and atomically; returns the number of entries added.
XADD_BATCH = """
local maxlen = ARGV[1]
local width = 2 * tonumber(ARGV[2])
local added = 0
for i = 3, #ARGV, width do
  if maxlen == '' then
    redis.call('XADD', KEYS[1], '*', unpack(ARGV, i, i + width - 1))
  else
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', unpack(ARGV, i, i + width - 1))
  end
  added = added + 1
end
return added
"""


def advisory_lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_*lock`` from a name."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: ``random(0, min(cap, base * 2**attempt))``."""

    base: float = 0.1
    cap: float = 5.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.base * 2 ** min(attempt, 30)))  # noqa: S311


class OutboxRelay(BackgroundLoop):
    """Publishes the rows of one outbox table to ``Keys(prefix)(STREAM)``.

    ``start()`` runs the loop as an asyncio task (from a service lifespan), ``aclose()``
    stops it; ``run_once()`` publishes one batch and is what tests drive directly.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        redis: aioredis.Redis,
        model: type[OutboxRow],
        *,
        prefix: str = "",
        batch_size: int = 500,
        poll_interval: float = 0.1,
        linger: float = 0.0,
        backoff: Backoff = Backoff(),
        retention: timedelta = timedelta(days=1),
        stream_maxlen: int | None = None,
    ) -> None:
        self.sessions = sessions
        self.redis = redis
        self.model = model
        self.stream = Keys(prefix)(STREAM)
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.linger = linger
        self.backoff = backoff
        self.retention = retention
        self.stream_maxlen = stream_maxlen
        table: Table = model.__table__  # type: ignore[attr-defined]
        self.table = table
        self.engine: AsyncEngine = sessions.kw["bind"]
        self.lock_key = advisory_lock_key(f"outbox-relay:{table.schema or 'public'}.{table.name}")
        name = sql.Identifier(table.schema, table.name) if table.schema else sql.Identifier(table.name)
        # Plain SQL on the driver's connection: a pass is two statements and a commit, and
        # through the ORM session each statement costs several times its own work (a one-row
        # pass took 2.9 ms of CPU that way, most of a sign-in's cost besides argon2).
        # The advisory lock is taken in the same statement that reads the batch: no rows
        # come back when another replica holds it. ``seq = ANY(array)``: one constant
        # statement, not an ``IN`` list as long as the batch.
        self._select_batch = sql.SQL(
            "SELECT o.seq, o.event_id, o.type, o.user_id, o.occurred_at, o.data, o.version "
            "FROM (SELECT pg_try_advisory_xact_lock(%(lock)s) AS ours) AS turn, LATERAL ("
            "SELECT * FROM {table} WHERE turn.ours AND published_at IS NULL "
            "ORDER BY seq LIMIT %(limit)s FOR UPDATE SKIP LOCKED) AS o ORDER BY o.seq"
        ).format(table=name)
        self._mark_published = sql.SQL(
            "UPDATE {table} SET published_at = now(), attempts = attempts + 1 WHERE seq = ANY(%(seqs)s)"
        ).format(table=name)
        self._xadd_batch = redis.register_script(XADD_BATCH)
        self.published = 0
        self.failures = 0
        super().__init__()
        self._wake = asyncio.Event()
        self._last_purge = 0.0
        self._held: AsyncConnection | None = None

    def notify(self) -> None:
        """Wake the loop now (call it right after committing outbox rows).

        Safe to call from anywhere in the relay's event loop, any number of times; with it a
        service can use a long ``poll_interval`` (a safety net) instead of a busy poll.
        """
        self._wake.set()

    async def run_once(self) -> int:
        """Publish up to one batch; the number of events published (0: none or not our turn).

        Raises the Redis or database error when publishing failed; nothing is marked
        published then. Borrows a pool connection for the pass (the loop keeps its own).
        """
        return await self._run_once(held=False)

    async def _run_once(self, *, held: bool) -> int:
        """``run_once`` on the loop's own connection (``held``: no pool checkout, pre-ping
        and reset per pass) or on one borrowed from the pool."""
        seqs: list[int] = []
        try:
            if held:
                if self._held is None:
                    self._held = await self.engine.connect()
                await self._pass(self._held, seqs)
            else:
                async with self.engine.connect() as connection:
                    await self._pass(connection, seqs)
        except RedisError:
            # The transaction has rolled back (row locks released): count the attempt.
            await self._count_attempt(seqs)
            raise
        except BaseException as exc:
            if held:
                await self._release_held(broken=True)
            if isinstance(exc, psycopg.Error):
                raise DBAPIError("outbox relay pass", None, exc) from exc
            raise
        self.published += len(seqs)
        return len(seqs)

    async def _pass(self, connection: AsyncConnection, seqs: list[int]) -> None:
        """One transaction on the driver's connection; fills ``seqs`` with what it read."""
        raw = await connection.get_raw_connection()
        conn: psycopg.AsyncConnection[Any] = raw.driver_connection  # type: ignore[assignment]
        try:
            cursor = await conn.execute(self._select_batch, {"lock": self.lock_key, "limit": self.batch_size})
            rows = await cursor.fetchall()
            if rows:
                seqs.extend(row[0] for row in rows)
                await self._publish(rows)
                await conn.execute(self._mark_published, {"seqs": seqs})
            await conn.commit()
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                await conn.rollback()
            raise

    async def _release_held(self, *, broken: bool = False) -> None:
        connection, self._held = self._held, None
        if connection is None:
            return
        with contextlib.suppress(Exception):
            if broken:
                await connection.invalidate()  # not back into the pool as it is
            await connection.close()

    async def _publish(self, rows: Sequence[Any]) -> None:
        # One script call: atomic like MULTI/EXEC, but one command to encode and one reply to
        # parse instead of two replies per XADD (which were most of the relay's CPU).
        args: list[Any] = ["" if self.stream_maxlen is None else self.stream_maxlen, FIELDS_PER_EVENT]
        for _, event_id, type_, user_id, occurred_at, data, version in rows:
            for item in event_fields(event_id, type_, user_id, occurred_at, data, version).items():
                args.extend(item)
        await self._xadd_batch(keys=[self.stream], args=args)

    async def _count_attempt(self, seqs: list[int]) -> None:
        # Best effort, in its own transaction: shows stuck rows to an operator.
        with contextlib.suppress(SQLAlchemyError):
            async with self.sessions() as session, session.begin():
                await session.execute(
                    update(self.model)
                    .where(self.model.seq.in_(seqs))
                    .values(attempts=self.model.attempts + 1)
                )

    async def backlog(self) -> int:
        """Rows waiting to be published."""
        async with self.sessions() as session:
            count = await session.scalar(
                select(func.count()).select_from(self.model).where(self.model.published_at.is_(None))
            )
        return int(count or 0)

    async def purge_published(self, older_than: timedelta | None = None) -> int:
        """Delete rows published longer than ``older_than`` (default: the retention) ago."""
        cutoff = datetime.now(UTC) - (self.retention if older_than is None else older_than)
        model = self.model
        async with self.sessions() as session, session.begin():
            oldest = (
                select(model.seq)
                .where(model.published_at.is_not(None), model.published_at <= cutoff)
                .order_by(model.seq)
                .limit(10_000)
                .scalar_subquery()
            )
            result = await session.execute(delete(model).where(model.seq.in_(oldest)))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    # The loop ------------------------------------------------------------------------------

    def task_name(self) -> str:
        return f"outbox-relay:{self.stream}"

    async def _run(self) -> None:
        failures = 0
        loop = asyncio.get_running_loop()
        try:
            while not self._stopping.is_set():
                try:
                    published = await self._run_once(held=True)
                    if failures:
                        log.info("outbox relay recovered", stream=self.stream, after_failures=failures)
                    failures = 0
                    if loop.time() - self._last_purge > 60:
                        self._last_purge = loop.time()
                        await self.purge_published()
                except (RedisError, SQLAlchemyError, OSError) as exc:
                    self.failures += 1
                    delay = self.backoff.delay(failures)
                    failures += 1
                    log.warning(
                        "outbox relay cannot publish; retrying",
                        stream=self.stream,
                        error=f"{type(exc).__name__}: {exc}",
                        retry_in=round(delay, 3),
                    )
                    await self._sleep(delay)
                    continue
                if published < self.batch_size:
                    await self._idle(self.poll_interval)
        finally:
            await self._release_held()

    async def _idle(self, seconds: float) -> None:
        """Wait for ``notify()``, ``aclose()`` or ``seconds``, whichever comes first; after a
        ``notify()``, wait ``linger`` more so that the commits right behind it share a pass."""
        if not self._wake.is_set():
            woken = asyncio.ensure_future(self._wake.wait())
            stopping = asyncio.ensure_future(self._stopping.wait())
            try:
                await asyncio.wait((woken, stopping), timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
            finally:
                woken.cancel()
                stopping.cancel()
        if self._wake.is_set() and self.linger > 0:
            await self._sleep(self.linger)
        self._wake.clear()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)


__all__ = ["Backoff", "OutboxRelay", "advisory_lock_key"]
