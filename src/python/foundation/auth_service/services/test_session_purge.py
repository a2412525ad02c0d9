"""Rows of ended sessions are deleted (periodically, or by ``purge-sessions``); rows of live
sessions, every generation of them, stay."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from foundation.auth_service.app import create_app
from foundation.auth_service.main import cli
from foundation.auth_service.services.sessions import purge_ended_sessions
from foundation.auth_service.settings import AuthServiceSettings
from foundation.database.direct import DirectSql, libpq_url
from tests.helpers.apps import serve_app

DAY = timedelta(days=1)


def add_family(database_url: str, created: list[datetime]) -> list[uuid.UUID]:
    """A user and one session whose generations were created at ``created`` (oldest first,
    each replaced by the next); the ids, oldest first."""
    ids = [uuid.uuid4() for _ in created]
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        user_id = uuid.uuid4()
        conn.execute(
            "INSERT INTO users (id, email, created_at, updated_at) VALUES (%s, %s, now(), now())",
            (user_id, f"purge-{user_id.hex[:12]}@example.com"),
        )
        for index in reversed(range(len(ids))):  # newest first: replaced_by_id points forward
            conn.execute(
                "INSERT INTO sessions (id, user_id, token, family_id, authenticated_at, created_at, "
                "expires_at, replaced_by_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    ids[index],
                    user_id,
                    uuid.uuid4().bytes * 2,
                    ids[0],
                    created[0],
                    created[index],
                    created[index] + 7 * DAY,
                    ids[index + 1] if index + 1 < len(ids) else None,
                ),
            )
    return ids


def remaining(database_url: str, ids: list[uuid.UUID]) -> list[uuid.UUID]:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        rows = conn.execute("SELECT id FROM sessions WHERE id = ANY(%s)", (ids,)).fetchall()
    found = {row[0] for row in rows}
    return [session_id for session_id in ids if session_id in found]


async def test_rows_older_than_the_absolute_lifetime_and_retention_go(
    settings: AuthServiceSettings, database_url: str
) -> None:
    now = datetime.now(UTC)
    ended = add_family(database_url, [now - 40 * DAY, now - 35 * DAY, now - 32 * DAY])
    straddling = add_family(database_url, [now - 31 * DAY - timedelta(hours=1), now - 29 * DAY])
    recent = add_family(database_url, [now - 2 * DAY, now - DAY, now - timedelta(minutes=5)])
    direct = DirectSql(settings)
    await direct.open()
    try:
        deleted = await purge_ended_sessions(
            direct, absolute=30 * DAY, retention=DAY, now=now, batch=2  # several batches
        )
    finally:
        await direct.close()
    assert deleted >= 4
    assert remaining(database_url, ended) == []
    # Created before the cutoff (31 days ago), so its session ended a day ago: it goes, and
    # its newer generation (no longer pointed at) stays until it is old enough in turn.
    assert remaining(database_url, straddling) == straddling[1:]
    assert remaining(database_url, recent) == recent


async def test_each_replica_purges_periodically(
    make_settings: Callable[..., AuthServiceSettings], database_url: str
) -> None:
    now = datetime.now(UTC)
    ended = add_family(database_url, [now - 10 * DAY])
    live = add_family(database_url, [now - timedelta(minutes=1)])
    settings = make_settings(
        session_purge_interval=0.05, session_retention=0, session_absolute_lifetime=3_600
    )
    async with serve_app(create_app(settings)):
        for _ in range(100):
            if not remaining(database_url, ended):
                break
            await asyncio.sleep(0.05)
    assert remaining(database_url, ended) == []
    assert remaining(database_url, live) == live


def test_purge_sessions_command(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    ended = add_family(database_url, [now - 60 * DAY, now - 50 * DAY])
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert cli.main(["purge-sessions"]) == 0
    assert "row(s) of ended sessions" in capsys.readouterr().out
    assert remaining(database_url, ended) == []
