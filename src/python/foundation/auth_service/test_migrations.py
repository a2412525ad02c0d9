from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from foundation.auth_service import migrations
from foundation.auth_service.models import Base
from foundation.database.engine import normalise_url
from foundation.database.migrations import downgrade, upgrade
from tests.helpers.databases import migrated_database

PACKAGE = migrations.__name__
database_url = migrated_database(PACKAGE)


def schema_differences(url: str) -> list[object]:
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_migrations_match_the_models_exactly(database_url: str) -> None:
    assert schema_differences(database_url) == []


def test_migrations_downgrade_and_upgrade_again(database_url: str) -> None:
    downgrade(database_url, PACKAGE, "base")
    upgrade(database_url, PACKAGE)
    assert schema_differences(database_url) == []
