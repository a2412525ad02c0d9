"""History service settings (environment variables; see .env.example beside this file)."""

from __future__ import annotations

from pydantic import Field

from foundation.shared.settings import ServiceSettings


class HistoryServiceSettings(ServiceSettings):
    service_name: str = "history-service"

    # POST /history limits.
    history_max_data_bytes: int = Field(
        default=16 * 1024, ge=1, description="Cap on a client event's data (JSON)."
    )
    history_max_future_seconds: int = Field(
        default=300, ge=0, description="How far in the future a client's occurred_at may be (clock skew)."
    )

    # The event stream.
    events_consumer_enabled: bool = Field(default=True, description="Consume the stream in this process.")
    events_consumer_group: str = "history"
    events_batch_size: int = Field(default=200, ge=1, le=10_000)
    events_claim_idle_seconds: float = Field(
        default=30.0, gt=0, description="Retry entries pending this long (failed, or their consumer died)."
    )
    events_max_deliveries: int = Field(
        default=5, ge=1, description="Then the entry goes to the dead-letter stream."
    )
    events_relay_enabled: bool = Field(
        default=True, description="Publish this service's outbox (client events)."
    )
