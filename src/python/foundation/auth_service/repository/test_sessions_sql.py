"""The hot and the wide statements over ``sessions`` read through an index, whatever the
planner knows about the table (a new database has no statistics until autovacuum's first
ANALYZE, and never where autovacuum is off)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy.dialects import postgresql

from foundation.auth_service.repository.sessions import _ROTATE_LIVE, revoke_families_statement
from foundation.auth_service.services.refresh_tokens import new_token, seal_successor, token_hash
from foundation.database.direct import libpq_url
from foundation.events.outbox import insert_params
from foundation.events.schema import TOKEN_REFRESHED


def _scans(plan: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    found = [(plan["Node Type"], plan.get("Relation Name"), plan.get("Index Name"))]
    for child in plan.get("Plans", []):
        found += _scans(child)
    return found


def _many_live_sessions(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "INSERT INTO users (id, email, created_at, updated_at) "
        "SELECT gen_random_uuid(), 'plan-' || gen_random_uuid() || '@example.com', now(), now() "
        "FROM generate_series(1, 20)"
    )
    conn.execute(  # 100 live sessions per user: the partial "live" index holds 2,000 rows each time
        "INSERT INTO sessions (id, user_id, token, family_id, authenticated_at, created_at, expires_at) "
        "SELECT s.id, u.id, sha256(s.id::text::bytea), s.id, now(), now(), now() + interval '1 day' "
        "FROM users AS u CROSS JOIN LATERAL "
        "(SELECT gen_random_uuid() AS id, u.id AS owner FROM generate_series(1, 100)) AS s"
    )


def _plan(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    row = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params).fetchone()
    assert row is not None
    document = row[0] if isinstance(row[0], list) else json.loads(row[0])
    plan: dict[str, Any] = document[0]["Plan"]
    return plan


def test_a_refresh_finds_its_row_by_token_among_many_live_sessions(database_url: str) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        _many_live_sessions(conn)
        user_id = conn.execute("SELECT id FROM users LIMIT 1").fetchone()[0]  # type: ignore[index]
        token, successor = new_token(), new_token()
        conn.execute(
            "INSERT INTO sessions (id, user_id, token, family_id, authenticated_at, created_at, expires_at) "
            "VALUES (%(id)s, %(user)s, %(token)s, %(id)s, now(), now(), now() + interval '1 day')",
            {"id": uuid.uuid4(), "user": user_id, "token": token_hash(token)},
        )
        params = {
            "token": token_hash(token),
            "successor_id": uuid.uuid4(),
            "successor_token": token_hash(successor),
            "sealed": seal_successor(token, successor),
            "now": now,
            "idle": timedelta(days=7),
            "absolute": timedelta(days=30),
            "user_agent": "test",
            "ip": "127.0.0.1",
            **insert_params(TOKEN_REFRESHED, occurred_at=now),
        }
        plan = _plan(conn, _ROTATE_LIVE, params)
        session_scans = [s for s in _scans(plan) if s[1] == "sessions" and s[0].endswith("Scan")]
        # The row by token; the family's head (locked FOR KEY SHARE) by primary key.
        assert session_scans == [
            ("Index Scan", "sessions", "uq_sessions_token"),
            ("Index Scan", "sessions", "pk_sessions"),
        ], session_scans
        # EXPLAIN ANALYZE ran it: the token was rotated, its successor is the family's live row.
        live = conn.execute(
            "SELECT count(*) FROM sessions WHERE token = %(t)s AND replaced_by_id IS NOT NULL",
            {"t": token_hash(token)},
        ).fetchone()
        assert live == (1,)


def test_signing_out_everywhere_reads_the_users_sessions_through_indexes(database_url: str) -> None:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        _many_live_sessions(conn)
        user_id = conn.execute("SELECT user_id FROM sessions LIMIT 1").fetchone()[0]  # type: ignore[index]
        statement = revoke_families_statement(user_id, datetime.now(UTC))
        dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
        sql = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        plan = _plan(conn, sql)
        scans = [s for s in _scans(plan) if s[1] == "sessions" and s[0].endswith("Scan")]
        assert scans and all(kind != "Seq Scan" for kind, _, _ in scans), scans
        revoked = conn.execute(
            "SELECT count(*) FROM sessions WHERE user_id = %(u)s AND revoked_at IS NULL", {"u": user_id}
        ).fetchone()
        assert revoked == (0,)  # EXPLAIN ANALYZE ran it: all 100 of the user's sessions ended
