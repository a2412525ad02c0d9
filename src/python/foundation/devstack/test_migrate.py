from __future__ import annotations

import psycopg
import pytest

from foundation.database.provisioning import drop_database, server_dsn
from foundation.devstack.migrate import main
from tests.helpers.databases import create_migrated_database


def test_applies_each_named_package_to_its_database(postgres_url: str) -> None:
    url = create_migrated_database(postgres_url, None)
    try:
        assert main([f"foundation.history_service.migrations={url}"]) == 0
        with psycopg.connect(server_dsn(url, url.rsplit("/", 1)[1])) as conn:
            tables = {
                row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            }
        assert "alembic_version" in tables
    finally:
        drop_database(url)


def test_refuses_an_argument_that_is_not_package_equals_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["foundation.history_service.migrations"]) == 2
    assert "expected PACKAGE=URL" in capsys.readouterr().err
