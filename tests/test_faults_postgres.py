"""PostgreSQL connections killed under the services (docs/events.md and docs/development.md,
"Fail modes").

The services run in-process against their own test databases on the test server; a test kills
their server processes with ``pg_terminate_backend``, filtered by its own database's name (and
the service's ``application_name``), never touching another database. To kill a request *in
flight*, the test first holds a SHARE lock on the table the request writes last (the outbox),
so the request waits inside PostgreSQL mid-transaction; then it kills exactly the backend that
waits on that lock. Each test then checks what a client saw (503 problem+json with
Retry-After, never a 500 or a hang), that the next request works, and that nothing was half
written: every user has its ``user.registered`` event, every session generation its
``user.logged_in`` or ``token.refreshed`` event, every history entry is counted once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from foundation.events.schema import DEAD_LETTER_STREAM
from foundation.shared.redis import Keys
from tests.helpers.faults import (
    connections_refused,
    eventually,
    kill_when_blocked,
    table_locked,
    terminate_backends,
)
from tests.helpers.stack import Databases, Stack, databases, start_stack
from tests.helpers.users import STRONG_PASSWORD, Tokens, login, register, unique_email

__all__ = ["databases"]  # the module-scoped fixture

AUTH, HISTORY, STATS = "auth-service", "history-service", "stats-service"
# The statements to cut off (regular expressions over pg_stat_activity.query).
OUTBOX_INSERT = r'insert into "?outbox'
HISTORY_INSERT = r'insert into "?history_events'
LEDGER_INSERT = r'insert into "?stats_events'


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture()
def prefix(redis_prefix: str) -> str:
    """A stream of the test's own (the module's key prefix is cleaned up afterwards)."""
    return f"{redis_prefix}{uuid.uuid4().hex[:6]}:"


async def start(
    databases: Databases, redis_url: str, prefix: str, keys_dir: Path, exit_stack: AsyncExitStack, **kw: Any
) -> Stack:
    return await start_stack(exit_stack, databases, redis_url, keys_dir, prefix=prefix, **kw)


@pytest.fixture()
async def stack(databases: Databases, redis_url: str, prefix: str, keys_dir: Path) -> AsyncIterator[Stack]:
    async with AsyncExitStack() as exit_stack:
        stack = await start(databases, redis_url, prefix, keys_dir, exit_stack)
        yield stack
        await assert_nothing_half_written(stack.auth_db)


def assert_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["retry-after"] == "1"
    assert answer.json()["code"] == "database_unavailable"


async def scalar(engine: AsyncEngine, query: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return await conn.scalar(text(query), params)


async def assert_nothing_half_written(auth_db: AsyncEngine) -> None:
    """Each change and its outbox event were written together or not at all."""
    async with auth_db.connect() as conn:
        users_without_event = await conn.scalar(
            text(
                "SELECT count(*) FROM users u WHERE (SELECT count(*) FROM outbox o "
                "WHERE o.user_id = u.id AND o.type = 'user.registered') <> 1"
            )
        )
        events_without_user = await conn.scalar(
            text(
                "SELECT count(*) FROM outbox o WHERE o.type = 'user.registered' "
                "AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = o.user_id)"
            )
        )
        sessions = {
            row[0]: row[1]
            for row in await conn.execute(
                text("SELECT family_id::text, count(*) FROM sessions GROUP BY family_id")
            )
        }
        events = {
            row[0]: row[1]
            for row in await conn.execute(
                text(
                    "SELECT data->>'session_id', count(*) FROM outbox "
                    "WHERE type IN ('user.logged_in', 'token.refreshed') GROUP BY 1"
                )
            )
        }
    assert (users_without_event, events_without_user) == (0, 0)
    # One row per token generation: the first one's user.logged_in, each rotation's token.refreshed.
    assert sessions == events


async def outbox_types(stack: Stack, user_id: uuid.UUID) -> list[str]:
    return [kind for _, kind, _ in await stack.outbox_of({user_id})]


async def drained(stack: Stack) -> bool:
    return await stack.unpublished() == 0


async def cut_off(
    request: asyncio.Task[httpx.Response], database_url: str, application: str
) -> httpx.Response:
    """Kill the backend of ``request`` (blocked on a lock in ``database_url``); its answer."""
    killed = await kill_when_blocked(database_url, application, OUTBOX_INSERT)
    assert len(killed) == 1, killed
    started = time.monotonic()
    answer = await asyncio.wait_for(request, timeout=10)
    assert time.monotonic() - started < 2.0  # answered when its connection died, not later
    return answer


# -- requests cut off mid-transaction ----------------------------------------------------------


async def test_a_sign_up_cut_off_mid_transaction_answers_503_and_leaves_no_user_without_its_event(
    stack: Stack, databases: Databases
) -> None:
    email = unique_email("cut")
    await eventually(lambda: drained(stack))
    async with table_locked(databases.auth, "outbox"):
        request = asyncio.create_task(
            stack.auth.post("/auth/register", json={"email": email, "password": STRONG_PASSWORD})
        )
        answer = await cut_off(request, databases.auth, AUTH)
    assert_unavailable(answer)
    assert await scalar(stack.auth_db, "SELECT count(*) FROM users WHERE email = :email", email=email) == 0

    user = await register(stack.auth, email)  # the retry works, and is the only one
    assert await outbox_types(stack, user.id) == ["user.registered"]


async def test_a_sign_in_cut_off_mid_statement_answers_503_and_leaves_no_session_without_its_event(
    stack: Stack, databases: Databases
) -> None:
    user = await register(stack.auth)
    await eventually(lambda: drained(stack))
    async with table_locked(databases.auth, "outbox"):
        request = asyncio.create_task(
            stack.auth.post("/auth/login", json={"email": user.email, "password": user.password})
        )
        answer = await cut_off(request, databases.auth, AUTH)
    assert_unavailable(answer)
    assert await scalar(stack.auth_db, "SELECT count(*) FROM sessions WHERE user_id = :u", u=user.id) == 0

    await login(stack.auth, user)
    assert await outbox_types(stack, user.id) == ["user.registered", "user.logged_in"]


async def test_a_refresh_cut_off_mid_statement_answers_503_and_the_same_token_works_on_retry(
    stack: Stack, databases: Databases
) -> None:
    user = await register(stack.auth)
    tokens = await login(stack.auth, user)
    await eventually(lambda: drained(stack))
    async with table_locked(databases.auth, "outbox"):
        request = asyncio.create_task(
            stack.auth.post("/auth/refresh", json={"refresh_token": tokens.refresh_token})
        )
        answer = await cut_off(request, databases.auth, AUTH)
    assert_unavailable(answer)

    # Nothing was rotated: the client retries with the token it has (no "reuse" alarm).
    retried = await stack.auth.post("/auth/refresh", json={"refresh_token": tokens.refresh_token})
    assert retried.status_code == 200, retried.text
    assert await outbox_types(stack, user.id) == ["user.registered", "user.logged_in", "token.refreshed"]


async def test_a_history_post_cut_off_mid_transaction_answers_503_and_the_retry_is_counted_once(
    stack: Stack, databases: Databases
) -> None:
    user = await register(stack.auth)
    tokens = await login(stack.auth, user)
    async with table_locked(databases.history, "outbox"):
        request = asyncio.create_task(
            stack.history.post("/history", json={"type": "app.opened"}, headers=tokens.headers)
        )
        answer = await cut_off(request, databases.history, HISTORY)
    assert_unavailable(answer)

    retried = await stack.history.post("/history", json={"type": "app.opened"}, headers=tokens.headers)
    assert retried.status_code == 201, retried.text

    async def counted() -> bool:
        counts: dict[str, int] = (await stack.stats_of(tokens.headers))["events_by_type"]
        return counts.get("app.opened") == 1

    await eventually(counted, timeout=10, what="the client event counted")
    timeline = await stack.timeline(tokens.headers)
    assert [item["type"] for item in timeline].count("app.opened") == 1
    await asyncio.sleep(0.3)  # nothing arrives late and counts it again
    assert (await stack.stats_of(tokens.headers))["events_by_type"]["app.opened"] == 1


# -- every connection killed (a PostgreSQL restart or fail-over) -------------------------------


async def test_after_every_connection_is_killed_requests_answer_503_or_succeed_and_recover(
    stack: Stack, databases: Databases
) -> None:
    user = await register(stack.auth)
    tokens = await login(stack.auth, user)
    await stack.timeline(tokens.headers)
    await stack.stats_of(tokens.headers)
    for url in (databases.auth, databases.history, databases.stats):
        assert terminate_backends(url)

    statuses: Counter[tuple[str, int]] = Counter()

    async def until_ok(name: str, call: Any, ok: int) -> httpx.Response:
        for _ in range(10):
            started = time.monotonic()
            answer: httpx.Response = await call()
            assert time.monotonic() - started < 2.0, name
            statuses[(name, answer.status_code)] += 1
            if answer.status_code == ok:
                return answer
            assert_unavailable(answer)
        raise AssertionError(f"{name} did not recover: {statuses}")

    newcomer_email = unique_email("failover")
    await until_ok(
        "register",
        lambda: stack.auth.post(
            "/auth/register", json={"email": newcomer_email, "password": STRONG_PASSWORD}
        ),
        201,
    )
    signed_in = await until_ok(
        "login",
        lambda: stack.auth.post("/auth/login", json={"email": user.email, "password": user.password}),
        200,
    )
    fresh = Tokens.from_response(signed_in)
    await until_ok(
        "refresh", lambda: stack.auth.post("/auth/refresh", json={"refresh_token": fresh.refresh_token}), 200
    )
    await until_ok("me", lambda: stack.auth.get("/auth/me", headers=tokens.headers), 200)
    await until_ok("history", lambda: stack.history.get("/history", headers=tokens.headers), 200)
    await until_ok("stats", lambda: stack.stats.get("/stats/me", headers=tokens.headers), 200)

    # The relays and consumers lost their connections too, and carry on without a restart: every
    # event of the user reaches history and stats exactly once.
    async def delivered() -> bool:
        outbox = await stack.outbox_of({user.id})
        counted = (await stack.stats_of(tokens.headers))["events_by_type"]
        return (
            await drained(stack)
            and sorted(i["id"] for i in await stack.timeline(tokens.headers))
            == sorted(str(e) for e, _, _ in outbox)
            and counted == dict(Counter(kind for _, kind, _ in outbox))
        )

    await eventually(delivered, timeout=10, what="every event in history and stats once")


# -- the consumers ---------------------------------------------------------------------------


async def test_a_consumer_whose_connection_is_killed_mid_batch_handles_the_batch_again_at_once(
    stack: Stack, databases: Databases
) -> None:
    user = await register(stack.auth)
    tokens = await login(stack.auth, user)
    await eventually(lambda: _counted(stack, tokens, 2), timeout=10)

    async with (
        table_locked(databases.history, "history_events"),
        table_locked(databases.stats, "stats_events"),
    ):
        await stack.auth.post("/auth/refresh", json={"refresh_token": tokens.refresh_token})
        assert await kill_when_blocked(databases.history, HISTORY, HISTORY_INSERT)
        assert await kill_when_blocked(databases.stats, STATS, LEDGER_INSERT)
    killed = time.monotonic()

    # The batch stays pending and this consumer takes it up again as soon as its database
    # answers: well before EVENTS_CLAIM_IDLE_SECONDS (30 s), and counted once.
    async def in_history() -> bool:
        return len(await stack.timeline(tokens.headers)) == 3

    await eventually(lambda: _counted(stack, tokens, 3), timeout=10, what="the refresh counted")
    await eventually(in_history, timeout=10, what="the refresh in history")
    assert time.monotonic() - killed < 8
    history = await stack.timeline(tokens.headers)
    assert sorted(item["type"] for item in history) == [
        "token.refreshed",
        "user.logged_in",
        "user.registered",
    ]


async def test_a_stats_database_outage_longer_than_the_retries_dead_letters_nothing(
    databases: Databases, redis_url: str, prefix: str, keys_dir: Path
) -> None:
    async with AsyncExitStack() as exit_stack:
        stack = await start(
            databases,
            redis_url,
            prefix,
            keys_dir,
            exit_stack,
            consumers={"events_claim_idle_seconds": 0.2, "events_max_deliveries": 2},
        )
        user = await register(stack.auth)
        tokens = await login(stack.auth, user)
        await eventually(lambda: _counted(stack, tokens, 2), timeout=10)

        with connections_refused(databases.stats):
            for _ in range(3):
                tokens = Tokens.from_response(
                    await stack.auth.post("/auth/refresh", json={"refresh_token": tokens.refresh_token})
                )
            # Stats answers 503 at once; history, with its own database, is unaffected.
            started = time.monotonic()
            assert_unavailable(await stack.stats.get("/stats/me", headers=tokens.headers))
            assert time.monotonic() - started < 2.0
            assert len(await stack.timeline(tokens.headers)) >= 2
            # Many times max_deliveries claim periods go by.
            await asyncio.sleep(2.0)

        # None of the events was a bad one: all are counted, once, and none was dead-lettered.
        await eventually(lambda: _counted(stack, tokens, 5), timeout=10, what="counted after the outage")
        redis = aioredis.Redis.from_url(redis_url)
        try:
            assert await redis.xlen(Keys(prefix)(DEAD_LETTER_STREAM)) == 0
        finally:
            await redis.aclose()
        await asyncio.sleep(0.3)
        assert sum((await stack.stats_of(tokens.headers))["events_by_type"].values()) == 5


async def _counted(stack: Stack, tokens: Tokens, events: int) -> bool:
    answer = await stack.stats.get("/stats/me", headers=tokens.headers)
    return answer.status_code == 200 and sum(answer.json()["events_by_type"].values()) == events
