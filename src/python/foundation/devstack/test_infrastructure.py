from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import redis

from foundation.database.provisioning import drop_database, server_dsn, with_database
from foundation.devstack.infrastructure import database_base, redacted, start_infrastructure
from foundation.devstack.services import AUTH, GATEWAY, HISTORY, STATS


def test_database_names_derive_from_the_configured_database() -> None:
    assert database_base("postgresql://u@h:5432/shop") == "shop"
    assert database_base("postgres://u@h:5432/postgres") == "foundation"
    assert database_base("postgresql://u@h:5432") == "foundation"


def test_passwords_never_reach_the_table() -> None:
    assert redacted("postgresql://me:s3cret@h/db") == "postgresql://me:***@h/db"
    assert redacted("postgresql+psycopg://me@h:5/db") == "postgresql://me@h:5/db"


def test_configured_postgres_gets_one_database_per_service_and_embedded_redis(
    postgres_url: str, tmp_path: Path
) -> None:
    base = f"devstack_{uuid.uuid4().hex[:8]}"
    infra = start_infrastructure(tmp_path, database_url=with_database(postgres_url, base), redis_url=None)
    try:
        infra.create_databases((GATEWAY, AUTH, HISTORY, STATS))
        assert infra.created == [f"{base}_auth", f"{base}_history", f"{base}_stats"]
        infra.create_databases((AUTH,))  # already there: nothing new
        assert len(infra.created) == 3
        with psycopg.connect(server_dsn(infra.database_url(AUTH), f"{base}_auth")) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (f"{base}_auth",)
        assert infra.redis is not None
        assert infra.postgres is None
        client = redis.Redis.from_url(infra.redis_url)
        assert client.ping()
        client.close()
        rows = infra.describe(tmp_path)
        assert rows[0][2] == "DATABASE_URL"
        assert rows[1][2].startswith("embedded")
        # No SMTP_URL: a mail catcher keeps auth-service's mail for the dev inbox.
        assert infra.mail is not None and infra.smtp_url == infra.mail.url
        assert rows[2][:2] == ("mail", infra.mail.url)
        assert "/inbox/" in rows[2][2]
    finally:
        infra.stop()
        for service in (AUTH, HISTORY, STATS):
            drop_database(infra.database_url(service))
    assert infra.redis.proc is not None
    assert infra.redis.proc.poll() is not None


def test_a_configured_mail_server_is_used_and_its_password_not_shown(tmp_path: Path) -> None:
    infra = start_infrastructure(
        tmp_path,
        database_url="postgresql://h/db",
        redis_url="redis://r/0",
        smtp_url="smtp://me:s3cret@mail.test:587",
    )
    try:
        assert infra.mail is None
        assert infra.smtp_url == "smtp://me:s3cret@mail.test:587"
        assert infra.describe(tmp_path)[2] == ("mail", "smtp://me:***@mail.test:587", "SMTP_URL")
    finally:
        infra.stop()
