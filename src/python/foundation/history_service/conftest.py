"""History-service test fixtures: a migrated database per module, an app, signed tokens."""

from __future__ import annotations

from foundation.history_service import migrations
from foundation.history_service.app import create_app
from foundation.history_service.settings import HistoryServiceSettings
from tests.helpers.databases import migrated_database
from tests.helpers.service_fixtures import service_fixtures

database_url = migrated_database(migrations)
signer, settings, client, sessions = service_fixtures(
    create_app, HistoryServiceSettings, events_consumer_enabled=False, events_relay_enabled=False
)
