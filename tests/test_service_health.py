"""Every backing service answers /health (liveness) and /ready (database and Redis reachable).

The gateway's /health aggregates the services' /ready: tests/test_gateway_health.py covers it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from fastapi import FastAPI

from foundation.auth_service import app as auth_app
from foundation.auth_service import migrations as auth_migrations
from foundation.auth_service.settings import AuthServiceSettings
from foundation.database.provisioning import drop_database
from foundation.history_service import app as history_app
from foundation.history_service import migrations as history_migrations
from foundation.history_service.settings import HistoryServiceSettings
from foundation.stats_service import app as stats_app
from foundation.stats_service import migrations as stats_migrations
from foundation.stats_service.settings import StatsServiceSettings
from tests.helpers.apps import closed_port_redis_url, serve_app
from tests.helpers.databases import create_migrated_database

# name -> (app factory, settings class, has a database)
SERVICES: dict[str, tuple[Callable[..., FastAPI], type[Any], ModuleType | None]] = {
    "auth_service": (auth_app.create_app, AuthServiceSettings, auth_migrations),
    "history_service": (history_app.create_app, HistoryServiceSettings, history_migrations),
    "stats_service": (stats_app.create_app, StatsServiceSettings, stats_migrations),
}


@pytest.fixture(params=sorted(SERVICES))
def service(request: pytest.FixtureRequest, postgres_url: str) -> Iterator[tuple[str, str | None]]:
    name = request.param
    migrations = SERVICES[name][2]
    url = create_migrated_database(postgres_url, migrations) if migrations else None
    try:
        yield name, url
    finally:
        if url:
            drop_database(url)


def build(name: str, **overrides: object) -> FastAPI:
    create_app, settings_cls, _ = SERVICES[name]
    if "jwt_keys_dir" in settings_cls.model_fields:  # auth-service: a development key, not in the repo
        overrides["jwt_keys_dir"] = tempfile.mkdtemp(prefix="keys-")
    return create_app(settings_cls(environment="test", **overrides))


async def test_health_and_ready_answer_ok(
    service: tuple[str, str | None], redis_url: str, redis_prefix: str
) -> None:
    name, database_url = service
    app = build(name, database_url=database_url, redis_url=redis_url, redis_key_prefix=redis_prefix)
    async with serve_app(app) as client:
        health = await client.get("/health")
        ready = await client.get("/ready")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks["redis"] == "ok"
    if database_url:
        assert checks["database"] == "ok"


async def test_ready_is_503_naming_redis_when_redis_is_down(service: tuple[str, str | None]) -> None:
    name, database_url = service
    app = build(name, database_url=database_url, redis_url=closed_port_redis_url())
    async with serve_app(app) as client:
        health = await client.get("/health")
        ready = await client.get("/ready")
    assert health.status_code == 200  # liveness does not depend on Redis
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "degraded"
    assert body["checks"]["redis"].startswith("down")
    if database_url:
        assert body["checks"]["database"] == "ok"


@pytest.mark.parametrize("name", ["auth_service", "history_service", "stats_service"])
async def test_ready_is_503_naming_the_database_when_it_is_down(name: str, redis_url: str) -> None:
    from foundation.devstack.embedded import free_port

    dead = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    app = build(name, database_url=dead, redis_url=redis_url, db_pool_timeout=1)
    async with serve_app(app) as client:
        ready = await client.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"].startswith("down")
