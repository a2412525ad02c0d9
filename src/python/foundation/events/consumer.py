"""A consumer-group reader of the event stream, with retries and a dead-letter stream.

The handler receives a batch of parsed events and must make their effects durable (commit)
before it returns; only then are the entries acknowledged (``XACK``). The handler must be
idempotent by event id: an entry is delivered again when a consumer dies between its
commit and its acknowledgement, and the relay may publish an event twice.

Failure handling:

- A batch whose handler raises is retried one event at a time, so one bad event does not
  hold back the others. An event that still fails stays pending (not acknowledged).
- Entries pending longer than ``claim_idle`` (failed ones, or ones left by a consumer that
  died) are taken over with ``XAUTOCLAIM`` and handled again. Redis counts deliveries; an
  entry delivered ``max_deliveries`` times and still failing goes to the dead-letter stream
  ``Keys(prefix)(DEAD_LETTER_STREAM)`` with the reason, and is acknowledged.
- An entry that cannot be parsed as an ``Event`` goes to the dead-letter stream at once.
- Redis down: the loop retries with backoff; the group is created again if it vanished.
- The database or Redis failing under a batch (``is_infrastructure_error``) says nothing about
  the events: the batch stays pending, and once the loop's next pass gets through, this
  consumer reads its own pending entries again (``XREADGROUP ... 0``) before anything new, so
  they arrive at once and in order instead of after ``claim_idle``. Such failures are counted
  per entry and do not count towards ``max_deliveries``: an outage of any length dead-letters
  nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

from foundation.events.relay import Backoff
from foundation.events.schema import DEAD_LETTER_STREAM, STREAM, Event
from foundation.events.settings import ConsumerSettings
from foundation.shared.logging import get_logger
from foundation.shared.redis import Keys

log = get_logger(__name__)

Handler = Callable[[Sequence[Event]], Awaitable[None]]
Entry = tuple[bytes, dict[bytes, bytes]]


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class ConsumerLag:
    """``lag``: entries not yet delivered to the group; ``pending``: delivered, not acked."""

    lag: int
    pending: int

    @property
    def total(self) -> int:
        return self.lag + self.pending


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# A failure record (the value kept per entry in the errors hash) starts with the number of the
# entry's failures that were the infrastructure's, when there were any: "infra=3;<last error>".
_INFRA_FAILURES = re.compile(r"^infra=(\d+);")


def _failure_record(record: Any) -> tuple[int, str]:
    """(infrastructure failures, last error) of a failure record (None: no record)."""
    if record is None:
        return 0, ""
    text = _text(record)
    counted = _INFRA_FAILURES.match(text)
    if counted is None:
        return 0, text
    return int(counted.group(1)), text[counted.end() :]


class StreamConsumer:
    @classmethod
    def from_settings(
        cls, redis: aioredis.Redis, handler: Handler, settings: ConsumerSettings
    ) -> StreamConsumer:
        """The consumer a service's ``EVENTS_*`` settings describe."""
        return cls(
            redis,
            settings.events_consumer_group,
            handler,
            prefix=settings.redis_key_prefix,
            batch_size=settings.events_batch_size,
            claim_idle=settings.events_claim_idle_seconds,
            max_deliveries=settings.events_max_deliveries,
        )

    def __init__(
        self,
        redis: aioredis.Redis,
        group: str,
        handler: Handler,
        *,
        prefix: str = "",
        consumer: str | None = None,
        batch_size: int = 200,
        block: float = 1.0,
        claim_idle: float = 30.0,
        max_deliveries: int = 5,
        backoff: Backoff = Backoff(),
    ) -> None:
        keys = Keys(prefix)
        self.redis = redis
        self.group = group
        self.handler = handler
        self.stream = keys(STREAM)
        self.dead_letter_stream = keys(DEAD_LETTER_STREAM)
        self.errors_key = keys(STREAM, "errors", group)
        self.consumer = consumer or default_consumer_name()
        self.batch_size = batch_size
        self.block_ms = max(1, int(block * 1000))
        self.claim_idle_ms = max(1, int(claim_idle * 1000))
        self.max_deliveries = max_deliveries
        self.backoff = backoff
        self.processed = 0
        self.dead_lettered = 0
        self.last_lag: ConsumerLag | None = None
        self._claim_cursor = "0-0"
        self._retry_own = False  # a pass failed on the infrastructure: re-read our pending entries
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._waiting = False

    async def ensure_group(self) -> None:
        """Create the group (and the stream) if missing; a new group reads from the start."""
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # One pass ------------------------------------------------------------------------------

    async def run_once(self, *, block: bool = False) -> int:
        """Claim stale entries, then read new ones; the number of entries handled."""
        handled = await self.claim_stale()
        entries = await self._read_new(block=block and handled == 0)
        if entries:
            handled += await self._handle(entries)
        return handled

    async def _read_new(self, *, block: bool) -> list[Entry]:
        response: Any
        try:
            response = await self.redis.xreadgroup(
                self.group,
                self.consumer,
                {self.stream: ">"},
                count=self.batch_size,
                block=self.block_ms if block else None,
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_group()
            return []
        if not response:
            return []
        return [(entry_id, fields) for entry_id, fields in response[0][1] if fields is not None]

    async def claim_stale(self) -> int:
        """Take over entries pending longer than ``claim_idle`` and handle them again."""
        try:
            result = await self.redis.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_time=self.claim_idle_ms,
                start_id=self._claim_cursor,
                count=self.batch_size,
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_group()
            return 0
        next_cursor, claimed = result[0], result[1]
        self._claim_cursor = _text(next_cursor)
        if len(result) > 2 and result[2]:
            # Entries trimmed from the stream while pending: nothing left to process.
            await self.redis.xack(self.stream, self.group, *result[2])
        entries: list[Entry] = [(entry_id, fields) for entry_id, fields in claimed if fields]
        if not entries:
            return 0
        deliveries = await self._delivery_counts(entries)
        over = [entry_id for entry_id, _ in entries if deliveries.get(entry_id, 0) > self.max_deliveries]
        records = dict(zip(over, await self.redis.hmget(self.errors_key, over), strict=True)) if over else {}
        retry: list[Entry] = []
        for entry in entries:
            entry_id = entry[0]
            # This delivery is not tried yet, and the infrastructure's failures were not the event's.
            infrastructure, reason = _failure_record(records.get(entry_id))
            failed = deliveries.get(entry_id, 0) - 1 - infrastructure
            if entry_id in records and failed >= self.max_deliveries:
                await self._dead_letter(
                    entry,
                    f"failed {failed} deliveries; last error: {reason or 'unknown (consumer died)'}",
                    failed,
                )
            else:
                retry.append(entry)
        if retry:
            log.info("claimed stale stream entries", group=self.group, count=len(retry))
            return await self._handle(retry) + len(entries) - len(retry)
        return len(entries)

    async def _delivery_counts(self, entries: Sequence[Entry]) -> dict[bytes, int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id, _ in entries:
                pipe.xpending_range(self.stream, self.group, min=entry_id, max=entry_id, count=1)
            answers = await pipe.execute()
        return {
            entry_id: int(answer[0]["times_delivered"]) if answer else 0
            for (entry_id, _), answer in zip(entries, answers, strict=True)
        }

    async def _handle(self, entries: Sequence[Entry]) -> int:
        events: list[tuple[bytes, Event]] = []
        for entry_id, fields in entries:
            try:
                events.append((entry_id, Event.from_fields(fields)))
            except ValueError as exc:
                await self._dead_letter((entry_id, fields), f"malformed event: {exc}", 1)
        if not events:
            return len(entries)
        try:
            await self.handler([event for _, event in events])
        except Exception as exc:
            if is_infrastructure_error(exc):
                # The database or Redis is down: leave the entries pending, back off.
                await self._remember_failure([entry_id for entry_id, _ in events], exc)
                raise
            # A bad event (or a handler bug): find it by handling the events one by one.
            done = await self._handle_one_by_one(events) if len(events) > 1 else []
            if len(events) == 1:
                self._log_failure(events[0][1], exc)
                await self._remember_failure([events[0][0]], exc)
        else:
            done = [entry_id for entry_id, _ in events]
        if done:
            await self._ack(done)
        return len(entries) - len(events) + len(done)

    async def _handle_one_by_one(self, events: Sequence[tuple[bytes, Event]]) -> list[bytes]:
        done: list[bytes] = []
        for index, (entry_id, event) in enumerate(events):
            try:
                await self.handler([event])
            except Exception as exc:
                if is_infrastructure_error(exc):
                    if done:
                        await self._ack(done)
                    # This one and those behind it were delivered and not handled: none was at fault.
                    await self._remember_failure([later for later, _ in events[index:]], exc)
                    raise
                # Stays pending: retried after ``claim_idle``, dead-lettered after N tries.
                self._log_failure(event, exc)
                await self._remember_failure([entry_id], exc)
            else:
                done.append(entry_id)
        return done

    def _log_failure(self, event: Event, exc: BaseException) -> None:
        log.warning(
            "event handler failed; will retry",
            group=self.group,
            event_id=str(event.id),
            event_type=event.type,
            error=f"{type(exc).__name__}: {exc}",
        )

    async def _remember_failure(self, entry_ids: Sequence[bytes], exc: BaseException) -> None:
        """Keep the entries' last error, and count the failures that were the database's or
        Redis's: those do not count towards ``max_deliveries`` (failure path only: two calls)."""
        reason = f"{type(exc).__name__}: {exc}"[:500]
        infrastructure = is_infrastructure_error(exc)
        with contextlib.suppress(RedisError):
            earlier = await self.redis.hmget(self.errors_key, list(entry_ids))
            records: dict[Any, str] = {}
            for entry_id, record in zip(entry_ids, earlier, strict=True):
                count = _failure_record(record)[0] + infrastructure
                records[entry_id] = f"infra={count};{reason}" if count else reason
            await self.redis.hset(self.errors_key, mapping=records)

    async def _ack(self, entry_ids: Sequence[bytes]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, self.group, *entry_ids)
            pipe.hdel(self.errors_key, *entry_ids)
            await pipe.execute()
        self.processed += len(entry_ids)

    async def _dead_letter(self, entry: Entry, reason: str, deliveries: int) -> None:
        entry_id, fields = entry
        log.error(
            "event moved to the dead-letter stream", group=self.group, entry_id=_text(entry_id), reason=reason
        )
        dead: dict[Any, Any] = dict(fields)
        dead.update(
            {
                "dead_letter.stream_id": entry_id,
                "dead_letter.group": self.group,
                "dead_letter.consumer": self.consumer,
                "dead_letter.reason": reason[:1000],
                "dead_letter.deliveries": str(deliveries),
                "dead_letter.failed_at": datetime.now(UTC).isoformat(),
            }
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.dead_letter_stream, dead)
            pipe.xack(self.stream, self.group, entry_id)
            pipe.hdel(self.errors_key, entry_id)
            await pipe.execute()
        self.dead_lettered += 1

    async def retry_own_pending(self) -> int:
        """Handle again, oldest first, the entries this consumer read and has not acknowledged
        (after the database or Redis failed under them); the number handled."""
        handled, cursor = 0, "0"
        while True:
            try:
                response: Any = await self.redis.xreadgroup(
                    self.group, self.consumer, {self.stream: cursor}, count=self.batch_size
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self.ensure_group()  # the stream is gone, and with it what was pending
                return handled
            entries: list[Entry] = response[0][1] if response else []
            if not entries:
                return handled
            cursor = _text(entries[-1][0])
            trimmed = [entry_id for entry_id, fields in entries if not fields]
            if trimmed:  # deleted from the stream while pending: nothing left to handle
                await self._ack(trimmed)
            live = [(entry_id, fields) for entry_id, fields in entries if fields]
            if live:
                handled += await self._handle(live)

    # Metrics -------------------------------------------------------------------------------

    async def lag(self) -> ConsumerLag:
        """How far the group is behind the stream (Redis 7 reports it; counted on Redis 6)."""
        groups = await self.redis.xinfo_groups(self.stream)
        for info in groups:
            if _text(info["name"]) != self.group:
                continue
            pending = int(info["pending"])
            lag = info.get("lag")
            if lag is None:
                last = _text(info["last-delivered-id"])
                undelivered: Any = await self.redis.xrange(
                    self.stream, min=f"({last}", max="+", count=1_000_000
                )
                lag = len(undelivered)
            self.last_lag = ConsumerLag(lag=int(lag), pending=pending)
            return self.last_lag
        raise LookupError(f"no consumer group {self.group!r} on {self.stream!r}")

    # The loop ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name=f"stream-consumer:{self.group}")

    async def aclose(self) -> None:
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            if self._waiting:
                task.cancel()  # blocked in XREADGROUP, holding nothing: stop at once
            try:
                await asyncio.wait_for(task, timeout=self.block_ms / 1000 + 5)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise

    async def _run(self) -> None:
        failures = 0
        group_ready = False
        loop = asyncio.get_running_loop()
        last_claim = 0.0
        while not self._stopping.is_set():
            try:
                if not group_ready:
                    await self.ensure_group()
                    group_ready = True
                handled = 0
                if self._retry_own:
                    handled += await self.retry_own_pending()
                    self._retry_own = False
                if loop.time() - last_claim >= self.claim_idle_ms / 2000:
                    last_claim = loop.time()
                    handled += await self.claim_stale()
                self._waiting = handled == 0
                try:
                    entries = await self._read_new(block=handled == 0)
                finally:
                    self._waiting = False
                if entries:
                    await self._handle(entries)
                if failures:
                    log.info("stream consumer recovered", group=self.group, after_failures=failures)
                failures = 0
            except (RedisError, SQLAlchemyError, OSError) as exc:
                self._retry_own = True
                delay = self.backoff.delay(failures)
                failures += 1
                log.warning(
                    "stream consumer failed; retrying",
                    group=self.group,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in=round(delay, 3),
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)


def is_infrastructure_error(exc: BaseException) -> bool:
    """The database or Redis is unreachable (retry later), as opposed to a bad event."""
    if isinstance(exc, RedisError | OSError | OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated
