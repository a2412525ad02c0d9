"""`history_service` command line: serve (default), migrate."""

from __future__ import annotations

import argparse

from foundation.database.migrations import upgrade
from foundation.history_service import migrations
from foundation.history_service.settings import HistoryServiceSettings
from foundation.shared.server import Cli

cli = Cli(name="history_service", app_factory="foundation.history_service.app:create_app", default_port=8002)


@cli.command("migrate", "apply this service's database migrations")
def migrate(args: argparse.Namespace) -> int:
    settings = HistoryServiceSettings()
    if not settings.database_url:
        raise SystemExit("DATABASE_URL is not set")
    upgrade(settings.database_url, migrations.__name__)
    return 0


def main() -> None:
    raise SystemExit(cli.main())


if __name__ == "__main__":
    main()
