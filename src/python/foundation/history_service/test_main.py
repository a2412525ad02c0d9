from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect

from foundation.database.engine import normalise_url
from foundation.history_service import main


def test_migrate_command_creates_the_tables_and_needs_a_database_url(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main.cli.main(["migrate"]) == 0  # already at head: a no-op that succeeds
    engine = create_engine(normalise_url(database_url))
    try:
        assert {"history_events", "deleted_users", "outbox"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    monkeypatch.delenv("DATABASE_URL")
    with pytest.raises(SystemExit, match="DATABASE_URL is not set"):
        main.cli.main(["migrate"])
