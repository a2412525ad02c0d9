"""A fresh database per test module, with one service's migrations applied."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
import redis

from foundation.database.migrations import upgrade
from foundation.database.provisioning import drop_database, ensure_database, with_database


def create_migrated_database(server_url: str, migrations: ModuleType | str | None) -> str:
    """``migrations`` is the service's migrations package: import it (so Pants sees the
    dependency) and pass the module, e.g. ``from foundation.auth_service import migrations``."""
    migrations_package = migrations.__name__ if isinstance(migrations, ModuleType) else migrations
    url = with_database(server_url, f"test_{uuid.uuid4().hex[:12]}")
    ensure_database(url)
    if migrations_package:
        upgrade(url, migrations_package)
    return url


def migrated_database(migrations: ModuleType | str | None) -> Callable[..., Any]:
    """Make a module-scoped ``database_url`` fixture for a service's migrations."""

    @pytest.fixture(scope="module")
    def database_url(postgres_url: str) -> Iterator[str]:
        url = create_migrated_database(postgres_url, migrations)
        try:
            yield url
        finally:
            drop_database(url)

    return database_url


@pytest.fixture(scope="module")
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix no other test module uses; its keys are deleted afterwards."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
