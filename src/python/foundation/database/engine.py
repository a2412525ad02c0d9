"""Async SQLAlchemy engine on psycopg 3, with pool settings from the service settings."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from foundation.shared.settings import ServiceSettings


def normalise_url(url: str) -> str:
    """Accept ``postgres://`` and ``postgresql://`` and pin the psycopg 3 driver."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.drivername in {"postgresql", "postgresql+psycopg2", "postgresql+asyncpg"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def create_engine(settings: ServiceSettings, **overrides: Any) -> AsyncEngine:
    if not settings.database_url:
        raise RuntimeError(
            "DATABASE_URL is not set. Start the whole stack with `./pants run //:dev`, "
            "or point DATABASE_URL at a PostgreSQL database."
        )
    kwargs: dict[str, Any] = {"echo": settings.db_echo, "pool_pre_ping": settings.db_pool_pre_ping}
    connect_args: dict[str, Any] = {"application_name": settings.service_name}
    if settings.db_transaction_pooling:
        # PgBouncer in transaction mode hands each transaction to any server connection:
        # no server-side prepared statements, and let the bouncer do the pooling.
        connect_args["prepare_threshold"] = None
        kwargs["poolclass"] = NullPool
    else:
        kwargs.update(
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_pool_timeout,
            pool_recycle=settings.db_pool_recycle,
        )
    kwargs["connect_args"] = connect_args
    kwargs.update(overrides)
    return create_async_engine(normalise_url(settings.database_url), **kwargs)


def session_factory(
    engine: AsyncEngine, on_commit: Callable[[], None] | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions on ``engine``; ``on_commit`` runs after each commit of one of them (and only
    theirs: each factory gets its own session class to listen on)."""
    if on_commit is None:
        return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
    notifying = type("NotifyingSession", (Session,), {})
    event.listen(notifying, "after_commit", lambda _session: on_commit())
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False, sync_session_class=notifying)


async def session_scope(factory: async_sessionmaker[AsyncSession]) -> AsyncGenerator[AsyncSession, None]:
    """One session per request: committed by the code that changes data, rolled back on error."""
    async with factory() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
