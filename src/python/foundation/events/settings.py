"""The settings of a service that consumes the event stream (history, stats)."""

from __future__ import annotations

from pydantic import Field

from foundation.shared.settings import ServiceSettings


class ConsumerSettings(ServiceSettings):
    """``EVENTS_*``: a service sets its own ``events_consumer_group`` default."""

    events_consumer_enabled: bool = Field(default=True, description="Consume the stream in this process.")
    events_consumer_group: str = "default"
    # Entries per read and per handler transaction. 1,000 rather than a few hundred: the
    # per-batch statements are paid once per 1,000 events, and after a 10,000-event burst the
    # lag is back to zero in 0.3-0.75 s, against 0.7-1.5 s with 500 and 1.24 s with 250
    # (bench:events; docs/performance.md).
    events_batch_size: int = Field(default=1000, ge=1, le=10_000)
    events_claim_idle_seconds: float = Field(
        default=30.0, gt=0, description="Retry entries pending this long (failed, or their consumer died)."
    )
    events_max_deliveries: int = Field(
        default=5, ge=1, description="Then the entry goes to the dead-letter stream."
    )
