"""`stats_service` command line: serve (default), migrate, rebuild."""

from __future__ import annotations

import argparse
import asyncio

from foundation.database.engine import create_engine, session_factory
from foundation.database.migrations import upgrade
from foundation.shared.server import Cli
from foundation.stats_service import migrations
from foundation.stats_service.services.rebuild import rebuild
from foundation.stats_service.settings import StatsServiceSettings

cli = Cli(name="stats_service", app_factory="foundation.stats_service.app:create_app", default_port=8003)


def _settings() -> StatsServiceSettings:
    settings = StatsServiceSettings()
    if not settings.database_url:
        raise SystemExit("DATABASE_URL is not set")
    return settings


@cli.command("migrate", "apply this service's database migrations")
def migrate(args: argparse.Namespace) -> int:
    upgrade(str(_settings().database_url), migrations.__name__)
    return 0


@cli.command("rebuild", "recompute every aggregate from the stored event ledger")
def rebuild_command(args: argparse.Namespace) -> int:
    settings = _settings()

    async def run() -> int:
        engine = create_engine(settings)
        try:
            result = await rebuild(session_factory(engine))
        finally:
            await engine.dispose()
        print(f"rebuilt the stats from {result.events} events")
        return 0

    return asyncio.run(run())


def main() -> None:
    raise SystemExit(cli.main())


if __name__ == "__main__":
    main()
