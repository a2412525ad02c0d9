"""One Alembic runner for every service's migrations.

A service keeps only its revisions: ``<service>/migrations/versions/``, and in
``migrations/__init__.py`` the ``metadata`` they build (its models' ``Base.metadata``), so the
PEX carries them. Everything else is here, once: the environment and the revision template
(``migration_env/``) and the runner (``run_env``: online, async, one transaction under an
advisory lock). ``upgrade(url, "foundation.auth_service.migrations")`` works from a
checkout, a PEX or a container alike; no alembic.ini is needed.
"""

from __future__ import annotations

import asyncio
import importlib
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from foundation.database.engine import normalise_url

# env.py and script.py.mako, shared by every service.
ENVIRONMENT = Path(__file__).with_name("migration_env")

# Serialises concurrent migrators (several replicas starting at once).
ADVISORY_LOCK = 7243145


def alembic_config(database_url: str, migrations_package: str) -> Config:
    """Alembic's configuration for ``migrations_package`` (a service's ``migrations``: its
    ``versions/`` and its ``metadata``) on ``database_url``."""
    package = importlib.import_module(migrations_package)
    metadata = getattr(package, "metadata", None)
    if not isinstance(metadata, MetaData):
        raise TypeError(f"{migrations_package} must define `metadata` (its models' Base.metadata)")
    versions = Path(str(resources.files(migrations_package))) / "versions"
    cfg = Config()
    cfg.set_main_option("script_location", str(ENVIRONMENT))
    # One folder, split on the OS path separator (never on the spaces a path may contain).
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(versions))
    cfg.set_main_option("sqlalchemy.url", normalise_url(database_url).replace("%", "%%"))
    cfg.attributes["database_url"] = normalise_url(database_url)
    cfg.attributes["target_metadata"] = metadata
    return cfg


def upgrade(database_url: str, migrations_package: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url, migrations_package), revision)


def downgrade(database_url: str, migrations_package: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url, migrations_package), revision)


def run_env() -> None:
    """The body of the shared ``migration_env/env.py``, over the metadata ``alembic_config``
    put in the configuration."""
    from alembic import context

    url = context.config.attributes.get("database_url") or context.config.get_main_option("sqlalchemy.url")
    target_metadata: MetaData = context.config.attributes["target_metadata"]

    def do_run(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            compare_type=True,
            transaction_per_migration=False,
        )
        with context.begin_transaction():
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK})")
            context.run_migrations()

    async def run_async() -> None:
        engine = create_async_engine(str(url), poolclass=pool.NullPool)
        async with engine.connect() as connection:
            await connection.run_sync(do_run)
        await engine.dispose()

    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(run_async())
