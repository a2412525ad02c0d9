from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import text

from foundation.database.engine import create_engine, normalise_url, ping, session_factory, session_scope
from foundation.database.provisioning import drop_database, ensure_database, server_dsn, with_database
from foundation.shared.settings import ServiceSettings
from tests.helpers.databases import create_migrated_database


@pytest.fixture()
def database_url(postgres_url: str) -> Iterator[str]:
    url = create_migrated_database(postgres_url, None)
    yield url
    drop_database(url)


def test_urls_are_normalised_to_psycopg3() -> None:
    assert normalise_url("postgres://u:p@h:5432/db") == "postgresql+psycopg://u:p@h:5432/db"
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert server_dsn("postgresql+psycopg://u@h/app") == "postgresql://u@h/postgres"
    assert with_database("postgresql://u@h/postgres", "x") == "postgresql+psycopg://u@h/x"


def test_missing_database_url_says_what_to_do() -> None:
    with pytest.raises(RuntimeError, match="DATABASE_URL is not set"):
        create_engine(ServiceSettings(database_url=None))


def test_ensure_database_creates_once(postgres_url: str) -> None:
    url = with_database(postgres_url, "test_ensure_once")
    drop_database(url)
    try:
        assert ensure_database(url) is True
        assert ensure_database(url) is False
        with psycopg.connect(server_dsn(url, "test_ensure_once")) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("test_ensure_once",)
    finally:
        drop_database(url)


async def test_engine_uses_pool_settings_and_answers(database_url: str) -> None:
    engine = create_engine(
        ServiceSettings(database_url=database_url, db_pool_size=3, db_max_overflow=2, service_name="svc")
    )
    try:
        await ping(engine)
        assert engine.pool.size() == 3  # type: ignore[attr-defined]
        async with engine.connect() as conn:
            name = await conn.scalar(
                text("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()")
            )
        assert name == "svc"
    finally:
        await engine.dispose()


async def test_transaction_pooling_mode_disables_prepared_statements(database_url: str) -> None:
    engine = create_engine(ServiceSettings(database_url=database_url, db_transaction_pooling=True))
    try:
        for _ in range(8):  # psycopg would prepare after 5 executions by default
            await ping(engine)
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            assert raw.driver_connection.prepare_threshold is None  # type: ignore[union-attr]
    finally:
        await engine.dispose()


async def test_session_scope_rolls_back_on_error(database_url: str) -> None:
    engine = create_engine(ServiceSettings(database_url=database_url))
    sessions = session_factory(engine)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE notes (body text)"))
        scope = session_scope(sessions)
        session = await anext(scope)
        await session.execute(text("INSERT INTO notes VALUES ('half-written')"))
        with pytest.raises(ValueError, match="boom"):
            await scope.athrow(ValueError("boom"))
        async with sessions() as check:
            assert await check.scalar(text("SELECT count(*) FROM notes")) == 0
    finally:
        await engine.dispose()


async def test_on_commit_runs_after_commits_of_its_own_sessions_only(database_url: str) -> None:
    engine = create_engine(ServiceSettings(database_url=database_url))
    commits: list[str] = []
    notifying = session_factory(engine, on_commit=lambda: commits.append("commit"))
    plain = session_factory(engine)
    try:
        async with notifying() as session:
            await session.execute(text("SELECT 1"))
            await session.rollback()
            assert commits == []
            await session.execute(text("SELECT 1"))
            await session.commit()
        assert commits == ["commit"]
        async with plain() as other:
            await other.execute(text("SELECT 1"))
            await other.commit()
        assert commits == ["commit"]
    finally:
        await engine.dispose()
