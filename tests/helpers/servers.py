"""Real PostgreSQL and Redis for the test session.

``DATABASE_URL`` / ``REDIS_URL`` set: use those servers (a fresh database and key prefix per
test module keeps runs apart). Unset: start embedded servers for this test process and stop
them at the end.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from foundation.devstack.embedded import EmbeddedPostgres, EmbeddedRedis


@pytest.fixture(scope="session")
def _embedded_root() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="foundation-test-") as root:
        os.chmod(root, 0o755)  # noqa: S103 - PostgreSQL may run as an unprivileged user
        yield Path(root)


@pytest.fixture(scope="session")
def postgres_url(_embedded_root: Path) -> Iterator[str]:
    """A URL of a PostgreSQL server on which tests may create databases."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        yield configured
        return
    server = EmbeddedPostgres(_embedded_root / "postgres").start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(_embedded_root: Path) -> Iterator[str]:
    configured = os.environ.get("REDIS_URL")
    if configured:
        yield configured
        return
    server = EmbeddedRedis(_embedded_root / "redis").start()
    try:
        yield server.url
    finally:
        server.stop()
