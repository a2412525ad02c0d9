"""One command per service to apply its own Alembic migrations.

Each service keeps ``migrations/`` (env.py + versions/) inside its package, so the PEX carries
them. ``upgrade(url, "foundation.auth_service.migrations")`` works from a checkout, a PEX or a
container alike; no alembic.ini is needed.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from foundation.database.engine import normalise_url


def alembic_config(database_url: str, migrations_package: str) -> Config:
    location = Path(str(resources.files(migrations_package)))
    cfg = Config()
    cfg.set_main_option("script_location", str(location))
    cfg.set_main_option("sqlalchemy.url", normalise_url(database_url).replace("%", "%%"))
    cfg.attributes["database_url"] = normalise_url(database_url)
    return cfg


def upgrade(database_url: str, migrations_package: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url, migrations_package), revision)


def downgrade(database_url: str, migrations_package: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url, migrations_package), revision)


def run_env(target_metadata: MetaData, version_table: str = "alembic_version") -> None:
    """The body of every service's ``migrations/env.py``: online, async, one transaction."""
    from alembic import context

    url = context.config.attributes.get("database_url") or context.config.get_main_option("sqlalchemy.url")

    def do_run(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table=version_table,
            compare_type=True,
            transaction_per_migration=False,
        )
        with context.begin_transaction():
            # Serialise concurrent migrators (several replicas starting at once).
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7243145)")
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
