"""Stats-service test fixtures: a migrated database per module, an app, signed tokens."""

from __future__ import annotations

from foundation.stats_service import migrations
from foundation.stats_service.app import create_app
from foundation.stats_service.settings import StatsServiceSettings
from tests.helpers.databases import migrated_database
from tests.helpers.service_fixtures import service_fixtures

database_url = migrated_database(migrations)
signer, settings, client, sessions = service_fixtures(
    create_app, StatsServiceSettings, events_consumer_enabled=False
)
