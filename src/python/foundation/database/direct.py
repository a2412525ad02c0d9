"""A plain psycopg pool for a service's hottest statements: one round trip each, autocommit.

The SQLAlchemy engine and session (``foundation.database.engine``) are the default way to a
service's database. A repository may run a statement that is atomic on its own (one
``INSERT``, one CTE that changes several tables) through ``DirectSql`` instead, when that
statement is on a path hot enough for the ORM session's and pool's own work per call to
matter: no session, no transaction block, no SQL compilation, just the driver. The pool
takes its size, timeout and PgBouncer mode from the same settings as the engine's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.engine import make_url

from foundation.database.engine import normalise_url
from foundation.shared.settings import ServiceSettings


def libpq_url(database_url: str) -> str:
    """``DATABASE_URL`` (any of the spellings ``normalise_url`` accepts) as a libpq URL."""
    return (
        make_url(normalise_url(database_url))
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


class DirectSql:
    """Statements on their own autocommit connections from a pool (``open`` before use)."""

    def __init__(self, settings: ServiceSettings) -> None:
        if not settings.database_url:
            raise RuntimeError("DATABASE_URL is not set")
        options: dict[str, Any] = {"autocommit": True, "application_name": settings.service_name}
        if settings.db_transaction_pooling:
            options["prepare_threshold"] = None  # PgBouncer in transaction mode
        self.pool = AsyncConnectionPool(
            libpq_url(settings.database_url),
            min_size=1,
            max_size=settings.db_pool_size,
            timeout=settings.db_pool_timeout,
            max_idle=max(60.0, float(settings.db_pool_recycle) if settings.db_pool_recycle > 0 else 600.0),
            kwargs=options,
            open=False,
            name=f"{settings.service_name}-direct",
        )
        self._after_write: Callable[[], None] | None = None

    def on_write(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after each statement that may have written (outbox rows)."""
        self._after_write = callback

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close()

    async def fetch_one(self, sql: str, params: dict[str, Any]) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(sql, params)  # type: ignore[arg-type]
            row = await cursor.fetchone()
        if self._after_write is not None and sql.lstrip()[:6].upper() != "SELECT":
            self._after_write()
        return row

    async def execute(self, sql: str, params: dict[str, Any]) -> int:
        """Run one statement; the number of rows it changed."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(sql, params)  # type: ignore[arg-type]
            count = cursor.rowcount
        if self._after_write is not None:
            self._after_write()
        return count
