"""Stats service settings (environment variables; see .env.example beside this file)."""

from __future__ import annotations

from pydantic import Field

from foundation.shared.settings import ServiceSettings


class StatsServiceSettings(ServiceSettings):
    service_name: str = "stats-service"

    # The event stream.
    events_consumer_enabled: bool = Field(default=True, description="Consume the stream in this process.")
    events_consumer_group: str = "stats"
    events_batch_size: int = Field(default=200, ge=1, le=10_000)
    events_claim_idle_seconds: float = Field(
        default=30.0, gt=0, description="Retry entries pending this long (failed, or their consumer died)."
    )
    events_max_deliveries: int = Field(
        default=5, ge=1, description="Then the entry goes to the dead-letter stream."
    )
