"""Database failures a client should see as 503 (retry shortly), not 500.

PostgreSQL away (connection refused or lost), the pool exhausted past ``DB_POOL_TIMEOUT``
(SQLAlchemy's ``TimeoutError``, psycopg_pool's ``PoolTimeout``), a statement cancelled or a
transaction that lost a serialization or deadlock check: each is transient, and each was
answered as an unhandled 500 with a logged stack trace. Code that can do better (retry,
another answer) still catches them first.
"""

from __future__ import annotations

import psycopg
import sqlalchemy.exc
from fastapi import FastAPI

from foundation.shared.errors import unavailable_handler

TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    sqlalchemy.exc.TimeoutError,  # QueuePool limit reached, connection timed out
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    psycopg.OperationalError,  # also psycopg_pool.PoolTimeout, on the raw-psycopg paths
    psycopg.InterfaceError,
)


def install_database_error_handlers(app: FastAPI) -> None:
    handler = unavailable_handler("database_unavailable", "The database is unavailable; try again shortly.")
    for error in TRANSIENT_ERRORS:
        app.add_exception_handler(error, handler)
