"""The refresh statement reads the presented token's row through the token index, whatever
the planner knows about the table (a new database has no statistics until autovacuum's
first ANALYZE, and never where autovacuum is off)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from foundation.auth_service.repository.direct import libpq_url
from foundation.auth_service.repository.sessions import _ROTATE_LIVE
from foundation.auth_service.services.refresh_tokens import new_token, seal_successor, token_hash
from foundation.events.schema import TOKEN_REFRESHED


def _scans(plan: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    found = [(plan["Node Type"], plan.get("Relation Name"), plan.get("Index Name"))]
    for child in plan.get("Plans", []):
        found += _scans(child)
    return found


def test_a_refresh_finds_its_row_by_token_among_many_live_sessions(database_url: str) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users (id, email, created_at, updated_at) "
            "SELECT gen_random_uuid(), 'plan-' || g || '@example.com', now(), now() "
            "FROM generate_series(1, 20) AS g"
        )
        conn.execute(  # 100 live sessions per user: the partial "live" index holds 2,000 rows
            "INSERT INTO sessions (id, user_id, token, family_id, authenticated_at, created_at, expires_at) "
            "SELECT s.id, u.id, sha256(s.id::text::bytea), s.id, now(), now(), now() + interval '1 day' "
            "FROM users AS u CROSS JOIN LATERAL "
            "(SELECT gen_random_uuid() AS id, u.id AS owner FROM generate_series(1, 100)) AS s"
        )
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
            "event_id": uuid.uuid4(),
            "event_type": TOKEN_REFRESHED,
        }
        row = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + _ROTATE_LIVE, params).fetchone()
        assert row is not None
        document = row[0] if isinstance(row[0], list) else json.loads(row[0])
        plan = document[0]["Plan"]
        session_scans = [s for s in _scans(plan) if s[1] == "sessions" and s[0].endswith("Scan")]
        assert session_scans == [("Index Scan", "sessions", "uq_sessions_token")], session_scans
        # EXPLAIN ANALYZE ran it: the token was rotated, its successor is the family's live row.
        live = conn.execute(
            "SELECT count(*) FROM sessions WHERE token = %(t)s AND replaced_by_id IS NOT NULL",
            {"t": token_hash(token)},
        ).fetchone()
        assert live == (1,)
