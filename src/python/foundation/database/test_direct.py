from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from foundation.database.direct import DirectSql, libpq_url
from foundation.database.provisioning import drop_database
from foundation.shared.settings import ServiceSettings
from tests.helpers.databases import create_migrated_database


@pytest.fixture()
def database_url(postgres_url: str) -> Iterator[str]:
    url = create_migrated_database(postgres_url, None)
    yield url
    drop_database(url)


@pytest.fixture()
async def direct(database_url: str) -> AsyncIterator[DirectSql]:
    pool = DirectSql(ServiceSettings(database_url=database_url, service_name="svc"))
    await pool.open()
    try:
        await pool.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)", {})
        yield pool
    finally:
        await pool.close()


def test_database_urls_become_libpq_urls() -> None:
    assert libpq_url("postgres://u:p@h:5432/db") == "postgresql://u:p@h:5432/db"
    assert libpq_url("postgresql+psycopg://u@h/db") == "postgresql://u@h/db"


def test_missing_database_url_is_refused() -> None:
    with pytest.raises(RuntimeError, match="DATABASE_URL is not set"):
        DirectSql(ServiceSettings(database_url=None))


async def test_each_statement_commits_on_its_own(direct: DirectSql) -> None:
    inserted = await direct.execute(
        "INSERT INTO notes VALUES (1, %(a)s), (2, %(b)s)", {"a": "first", "b": "second"}
    )
    assert inserted == 2
    row = await direct.fetch_one(
        "SELECT body, current_setting('application_name') AS app FROM notes " "WHERE id = %(id)s", {"id": 2}
    )
    assert row == {"body": "second", "app": "svc"}
    assert await direct.fetch_one("SELECT body FROM notes WHERE id = %(id)s", {"id": 3}) is None


async def test_on_write_runs_after_statements_that_may_write_only(direct: DirectSql) -> None:
    writes: list[str] = []
    direct.on_write(lambda: writes.append("write"))
    await direct.fetch_one("SELECT 1 AS one", {})
    assert writes == []
    await direct.fetch_one("INSERT INTO notes VALUES (1, 'a') RETURNING id", {})
    await direct.execute("UPDATE notes SET body = 'b'", {})
    assert writes == ["write", "write"]
