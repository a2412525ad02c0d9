"""`history_service` command line: serve (default), migrate."""

from __future__ import annotations

from foundation.database.commands import add_migrate_command
from foundation.history_service import migrations
from foundation.history_service.settings import HistoryServiceSettings
from foundation.shared.server import Cli

cli = Cli(name="history_service", app_factory="foundation.history_service.app:create_app", default_port=8002)

add_migrate_command(cli, HistoryServiceSettings, migrations)


def main() -> None:
    raise SystemExit(cli.main())


if __name__ == "__main__":
    main()
