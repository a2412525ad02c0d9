"""Stats service settings (environment variables; see .env.example beside this file)."""

from __future__ import annotations

from foundation.events.settings import ConsumerSettings


class StatsServiceSettings(ConsumerSettings):
    service_name: str = "stats-service"

    # The event stream.
    events_consumer_group: str = "stats"  # the other EVENTS_* settings: ConsumerSettings
