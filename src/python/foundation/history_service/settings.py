"""History service settings (environment variables; see .env.example beside this file)."""

from __future__ import annotations

from pydantic import Field

from foundation.events.settings import ConsumerSettings


class HistoryServiceSettings(ConsumerSettings):
    service_name: str = "history-service"

    # POST /history limits.
    history_max_data_bytes: int = Field(
        default=16 * 1024, ge=1, description="Cap on a client event's data (JSON)."
    )
    history_max_future_seconds: int = Field(
        default=300, ge=0, description="How far in the future a client's occurred_at may be (clock skew)."
    )
    history_max_past_seconds: int = Field(
        default=30 * 24 * 3600,
        ge=1,
        description="How far in the past a client's occurred_at may be (30 days: an app that was offline).",
    )

    # The event stream.
    events_consumer_group: str = "history"  # the other EVENTS_* settings: ConsumerSettings
    events_relay_enabled: bool = Field(
        default=True, description="Publish this service's outbox (client events)."
    )
