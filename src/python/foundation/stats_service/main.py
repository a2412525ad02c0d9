"""`stats_service` command line: serve (default), migrate, rebuild."""

from __future__ import annotations

import argparse
import asyncio

from foundation.database.commands import add_migrate_command, require_database_url
from foundation.database.engine import create_engine, session_factory
from foundation.shared.server import Cli
from foundation.stats_service import migrations
from foundation.stats_service.services.rebuild import rebuild
from foundation.stats_service.settings import StatsServiceSettings

cli = Cli(name="stats_service", app_factory="foundation.stats_service.app:create_app", default_port=8003)
add_migrate_command(cli, StatsServiceSettings, migrations)


@cli.command("rebuild", "recompute every aggregate from the stored event ledger")
def rebuild_command(args: argparse.Namespace) -> int:
    settings = StatsServiceSettings()
    require_database_url(settings)

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
