"""The one Alembic environment serves any service's migrations package."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic import command

from foundation.database.migrations import alembic_config, downgrade, upgrade
from foundation.database.provisioning import drop_database, server_dsn
from tests.helpers.databases import create_migrated_database

MODELS = """
    import sqlalchemy as sa

    metadata = sa.MetaData()
    sa.Table("notes", metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Column("body", sa.Text))
"""


@pytest.fixture()
def package(tmp_path: Path) -> Iterator[str]:
    """A service-shaped migrations package: ``metadata`` and an empty ``versions/``."""
    root = tmp_path / "example_migrations"
    (root / "versions").mkdir(parents=True)
    (root / "__init__.py").write_text(textwrap.dedent(MODELS))
    sys.path.insert(0, str(tmp_path))
    try:
        yield "example_migrations"
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("example_migrations", None)


@pytest.fixture()
def database_url(postgres_url: str) -> Iterator[str]:
    url = create_migrated_database(postgres_url, None)
    yield url
    drop_database(url)


def tables(url: str) -> set[str]:
    with psycopg.connect(server_dsn(url, url.rsplit("/", 1)[1])) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {row[0] for row in rows}


def test_a_revision_is_written_from_the_shared_template_into_the_services_versions(
    package: str, database_url: str
) -> None:
    cfg = alembic_config(database_url, package)
    command.revision(cfg, message="notes", autogenerate=True, rev_id="0001")
    (written,) = (Path(sys.path[0]) / package / "versions").glob("0001_*.py")
    source = written.read_text()
    assert "down_revision: str | None = None" in source  # the template's typed header
    assert "op.create_table('notes'" in source or 'op.create_table("notes"' in source

    upgrade(database_url, package)
    assert tables(database_url) == {"alembic_version", "notes"}
    downgrade(database_url, package)
    assert tables(database_url) == {"alembic_version"}


def test_a_package_without_metadata_is_refused(package: str, database_url: str) -> None:
    (Path(sys.path[0]) / package / "__init__.py").write_text("")
    with pytest.raises(TypeError, match="must define `metadata`"):
        upgrade(database_url, package)
