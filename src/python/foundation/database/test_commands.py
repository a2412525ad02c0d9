from __future__ import annotations

import pytest

from foundation.database.commands import require_database_url
from foundation.shared.settings import ServiceSettings


def test_a_command_without_a_database_url_exits_saying_so() -> None:
    with pytest.raises(SystemExit, match="^DATABASE_URL is not set$"):
        require_database_url(ServiceSettings(database_url=None))
    assert require_database_url(ServiceSettings(database_url="postgresql://h/db")) == "postgresql://h/db"
