"""Create a service's database on a server when it is missing (dev stack, tests)."""

from __future__ import annotations

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url


def server_dsn(url: str, database: str = "postgres") -> str:
    """A libpq DSN for ``database`` on the server named by ``url``."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1)).set(
        drivername="postgresql", database=database
    )
    return parsed.render_as_string(hide_password=False)


def with_database(url: str, database: str) -> str:
    parsed = make_url(url.replace("postgres://", "postgresql://", 1)).set(
        drivername="postgresql+psycopg", database=database
    )
    return parsed.render_as_string(hide_password=False)


def ensure_database(url: str) -> bool:
    """Create the database named in ``url`` if it does not exist; True when created."""
    name = make_url(url.replace("postgres://", "postgresql://", 1)).database
    if not name:
        raise ValueError("the database URL names no database")
    with psycopg.connect(server_dsn(url), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.DuplicateDatabase:
            return False
        return True


def drop_database(url: str) -> None:
    name = make_url(url.replace("postgres://", "postgresql://", 1)).database
    if not name:
        raise ValueError("the database URL names no database")
    with psycopg.connect(server_dsn(url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
