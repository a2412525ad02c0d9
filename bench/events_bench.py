"""Events per second through outbox -> relay -> Redis stream -> history and stats consumers.

    PYTHONPATH=src/python:. python bench/events_bench.py [--events 10000] [--users 500]

Uses DATABASE_URL / REDIS_URL when set, else starts embedded servers. The relay and the two
consumers each run in their own process (as the services do), with the services' real
handlers and databases. A producer writes a burst of events into the outbox in transactions
of 100; the script reports:

- end-to-end events/s: burst size / (time from the first write until both groups have
  handled and acknowledged every event);
- drain time: from the last write until the lag of both groups is back to zero;
- CPU time per event of the relay and of each consumer process (robust to other load);
- a baseline in the same run: the same number of entries through bare Redis
  (XADD, XREADGROUP, XACK; no database), and the ratio end-to-end / baseline.

Targets (issue 5): >= 2,000 events/s end to end; lag back to zero within 1 s after the burst.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TIME_LIMIT = 120.0


def _child(role: str, urls: dict[str, str], prefix: str, stop: Any, ready: Any, cpu: Any) -> None:
    import uvloop  # the event loop the services run on (Granian picks it)

    uvloop.run(_run_child(role, urls, prefix, stop, ready, cpu))


async def _run_child(role: str, urls: dict[str, str], prefix: str, stop: Any, ready: Any, cpu: Any) -> None:
    import redis.asyncio as aioredis

    from foundation.database.engine import create_engine, session_factory
    from foundation.events.consumer import StreamConsumer
    from foundation.events.relay import OutboxRelay
    from foundation.events.settings import ConsumerSettings
    from foundation.shared.settings import ServiceSettings

    engine = create_engine(ServiceSettings(database_url=urls[role], db_pool_size=4))
    sessions = session_factory(engine)
    redis = aioredis.Redis.from_url(urls["redis"])
    runner: Any
    if role == "producer":
        runner = OutboxRelay(sessions, redis, _outbox(), prefix=prefix, batch_size=1000, poll_interval=0.01)
    else:
        handler: Any
        if role == "history":
            from foundation.history_service.services.ingest import HistoryIngest

            handler = HistoryIngest(sessions)
        else:
            from foundation.stats_service.services.counting import StatsCounter

            handler = StatsCounter(sessions)
        # The services' consumer settings (EVENTS_BATCH_SIZE ...), with a short block so
        # that the process stops promptly.
        runner = StreamConsumer(
            redis, role, handler, prefix=prefix, batch_size=ConsumerSettings().events_batch_size, block=0.2
        )
        await runner.ensure_group()
    runner.start()
    started = time.process_time()
    ready.set()
    while not stop.is_set():
        await asyncio.sleep(0.05)
    cpu.put((role, time.process_time() - started))
    await runner.aclose()
    await redis.aclose()
    await engine.dispose()


_OUTBOX: Any = None


def _outbox() -> Any:
    global _OUTBOX
    if _OUTBOX is None:
        from foundation.database.base import new_base
        from foundation.events.outbox import outbox_model

        _OUTBOX = outbox_model(new_base())
    return _OUTBOX


def _servers(root: Path) -> tuple[str, str, Callable[[], None]]:
    database_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    stops: list[Callable[[], None]] = []
    if not database_url or not redis_url:
        from foundation.devstack.embedded import EmbeddedPostgres, EmbeddedRedis

        os.chmod(root, 0o755)  # noqa: S103 - PostgreSQL may run as an unprivileged user
        if not database_url:
            pg = EmbeddedPostgres(root / "postgres").start()
            database_url = pg.url
            stops.append(pg.stop)
        if not redis_url:
            rd = EmbeddedRedis(root / "redis").start()
            redis_url = rd.url
            stops.append(rd.stop)

    def stop_all() -> None:
        for stop in stops:
            stop()

    return database_url, redis_url, stop_all


async def _baseline(redis_url: str, prefix: str, count: int) -> float:
    """Bare Redis: XADD in pipelines of 1000, then XREADGROUP + XACK in batches of 500."""
    import redis.asyncio as aioredis

    from foundation.events.schema import Event

    redis = aioredis.Redis.from_url(redis_url)
    stream = f"{prefix}baseline"
    fields = Event(type="user.logged_in", user_id=uuid.uuid4()).to_fields()
    await redis.xgroup_create(stream, "g", id="0", mkstream=True)
    start = time.perf_counter()
    for offset in range(0, count, 1000):
        pipe = redis.pipeline(transaction=True)
        for _ in range(min(1000, count - offset)):
            pipe.xadd(stream, fields)  # type: ignore[arg-type]
        await pipe.execute()
    done = 0
    while done < count:
        answer: Any = await redis.xreadgroup("g", "c", {stream: ">"}, count=500)
        ids = [entry_id for entry_id, _ in answer[0][1]]
        await redis.xack(stream, "g", *ids)
        done += len(ids)
    elapsed = time.perf_counter() - start
    await redis.delete(stream)
    await redis.aclose()
    return count / elapsed


async def _measure(urls: dict[str, str], prefix: str, events: int, users: int) -> dict[str, float]:
    import redis.asyncio as aioredis
    from sqlalchemy import insert

    from foundation.database.engine import create_engine
    from foundation.events.schema import STREAM, USER_LOGGED_IN, USER_REGISTERED
    from foundation.shared.settings import ServiceSettings

    outbox = _outbox()
    engine = create_engine(ServiceSettings(database_url=urls["producer"]))
    redis = aioredis.Redis.from_url(urls["redis"])
    stream = f"{prefix}{STREAM}"
    people = [uuid.uuid4() for _ in range(users)]

    def row(n: int) -> dict[str, Any]:
        return {
            "event_id": uuid.uuid4(),
            "type": USER_REGISTERED if n < users else USER_LOGGED_IN,
            "user_id": people[n % users],
            "occurred_at": datetime.now(UTC),
            "data": {"method": "password"},
            "version": 1,
        }

    start = time.perf_counter()
    for offset in range(0, events, 100):
        async with engine.begin() as conn:
            await conn.execute(insert(outbox), [row(n) for n in range(offset, min(events, offset + 100))])
    written = time.perf_counter()

    deadline = start + TIME_LIMIT
    while True:
        # One round trip per look, every 10 ms: the watcher shares the cores with the
        # consumers it watches.
        async with redis.pipeline(transaction=False) as pipe:
            pipe.xlen(stream)
            pipe.xinfo_groups(stream)
            pipe.xrevrange(stream, count=1)
            try:
                length, info, tail = await pipe.execute()
            except aioredis.ResponseError:  # no stream yet
                length, info, tail = 0, [], []
        groups = {g["name"]: g for g in info}
        last = (tail or [(b"", {})])[0][0]
        if length >= events and all(
            g in groups and groups[g]["pending"] == 0 and groups[g]["last-delivered-id"] == last
            for g in (b"history", b"stats")
        ):
            break
        if time.perf_counter() > deadline:
            raise TimeoutError("the consumers did not catch up in time")
        await asyncio.sleep(0.01)
    finished = time.perf_counter()
    await redis.aclose()
    await engine.dispose()
    return {
        "write_s": written - start,
        "total_s": finished - start,
        "drain_s": finished - written,
        "events_per_s": events / (finished - start),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=500)
    args = parser.parse_args()
    events = max(1, min(args.events, 200_000))

    from foundation.database.base import new_base  # noqa: F401 - import check before forking
    from foundation.database.migrations import upgrade
    from foundation.database.provisioning import drop_database, ensure_database, with_database
    from foundation.history_service import migrations as history_migrations
    from foundation.stats_service import migrations as stats_migrations

    with tempfile.TemporaryDirectory(prefix="events-bench-") as tmp:
        server_url, redis_url, stop_servers = _servers(Path(tmp))
        tag = uuid.uuid4().hex[:8]
        urls = {
            name: with_database(server_url, f"bench_{name}_{tag}")
            for name in ("producer", "history", "stats")
        }
        urls["redis"] = redis_url
        prefix = f"bench:{tag}:"
        processes: list[Any] = []
        try:
            for name in ("producer", "history", "stats"):
                ensure_database(urls[name])
            upgrade(urls["history"], history_migrations.__name__)
            upgrade(urls["stats"], stats_migrations.__name__)
            import sqlalchemy

            sync = sqlalchemy.create_engine(urls["producer"])
            _outbox().metadata.create_all(sync)
            sync.dispose()

            baseline = asyncio.run(_baseline(redis_url, prefix, events))

            ctx = mp.get_context("spawn")
            stop = ctx.Event()
            cpu = ctx.Queue()
            readies = []
            for role in ("producer", "history", "stats"):
                ready = ctx.Event()
                proc = ctx.Process(target=_child, args=(role, urls, prefix, stop, ready, cpu), daemon=True)
                proc.start()
                processes.append(proc)
                readies.append(ready)
            for ready in readies:
                if not ready.wait(60):
                    raise TimeoutError("a worker process did not start")
            result = asyncio.run(_measure(urls, prefix, events, args.users))
            stop.set()
            cpu_s = dict(cpu.get(timeout=30) for _ in processes)
        finally:
            for proc in processes:
                proc.join(15)
                if proc.is_alive():
                    proc.terminate()
            import redis as sync_redis

            client = sync_redis.Redis.from_url(redis_url)
            keys = list(client.scan_iter(match=prefix + "*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()
            for name in ("producer", "history", "stats"):
                drop_database(urls[name])
            stop_servers()

    print(f"events: {events} ({args.users} users), relay + 2 consumers in 3 processes, {os.cpu_count()} CPUs")
    print(f"burst written to the outbox in {result['write_s']:.2f} s")
    print(
        f"end to end: {result['events_per_s']:,.0f} events/s "
        f"(all handled and acked {result['total_s']:.2f} s after the first write)"
    )
    print(f"lag back to zero {result['drain_s']:.3f} s after the burst stopped")
    # CPU time is much less sensitive to other load on the machine than wall-clock rates.
    print(
        "CPU per event: "
        + ", ".join(
            f"{name} {cpu_s[role] / events * 1e6:,.0f} us"
            for role, name in (("producer", "relay"), ("history", "history"), ("stats", "stats"))
        )
        + f" (sum {sum(cpu_s.values()) / events * 1e6:,.0f} us: "
        f"{events / sum(cpu_s.values()):,.0f} events/s per core for the three)"
    )
    print(f"baseline, bare Redis XADD/XREADGROUP/XACK: {baseline:,.0f} entries/s")
    print(f"ratio end-to-end / baseline: {result['events_per_s'] / baseline:.3f}")
    ok = result["events_per_s"] >= 2000 and result["drain_s"] <= 1.0
    print(f"targets (>= 2,000 events/s; lag zero within 1 s): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
