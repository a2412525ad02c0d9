"""What every service's command line needs from its database: the URL, or a clear exit, and
the ``migrate`` command."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from types import ModuleType

from foundation.database.migrations import upgrade
from foundation.shared.server import Cli
from foundation.shared.settings import ServiceSettings

MISSING_DATABASE_URL = "DATABASE_URL is not set"


def require_database_url(settings: ServiceSettings) -> str:
    """``settings.database_url``; a command without one exits saying so."""
    if not settings.database_url:
        raise SystemExit(MISSING_DATABASE_URL)
    return settings.database_url


def add_migrate_command(cli: Cli, settings: Callable[[], ServiceSettings], migrations: ModuleType) -> None:
    """``<service> migrate``: apply ``migrations`` (the service's migrations package) to the
    database of ``settings()`` (read when the command runs, not at import)."""

    def migrate(args: argparse.Namespace) -> int:
        upgrade(require_database_url(settings()), migrations.__name__)
        return 0

    cli.command("migrate", "apply this service's database migrations")(migrate)
