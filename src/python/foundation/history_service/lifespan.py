"""History service: what its lifespan opens (``State``, every request's lifespan state) and
closes, last opened first."""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import timedelta

from foundation.auth.verifier import TokenVerifier
from foundation.database.lifespan import ServiceState, service_lifespan
from foundation.events.consumer import StreamConsumer
from foundation.events.relay import OutboxRelay
from foundation.history_service.models import Outbox
from foundation.history_service.services.ingest import HistoryIngest
from foundation.history_service.services.timeline import Timeline
from foundation.history_service.settings import HistoryServiceSettings
from foundation.shared.lifespan import Lifespan, run_worker


class State(ServiceState):
    timeline: Timeline
    relay: OutboxRelay
    consumer: StreamConsumer


def history_lifespan(
    settings: HistoryServiceSettings, token_verifier: TokenVerifier | None = None
) -> Lifespan[State]:
    def open_history(stack: AsyncExitStack, base: ServiceState) -> State:
        sessions, redis = base["sessions"], base["redis"]
        relay = run_worker(
            stack,
            OutboxRelay(sessions, redis, Outbox, prefix=settings.redis_key_prefix),
            enabled=settings.events_relay_enabled,
        )
        consumer = run_worker(
            stack,
            StreamConsumer.from_settings(redis, HistoryIngest(sessions), settings),
            enabled=settings.events_consumer_enabled,
        )
        timeline = Timeline(
            sessions,
            max_data_bytes=settings.history_max_data_bytes,
            max_future=timedelta(seconds=settings.history_max_future_seconds),
            max_past=timedelta(seconds=settings.history_max_past_seconds),
        )
        return {**base, "timeline": timeline, "relay": relay, "consumer": consumer}

    return service_lifespan(settings, token_verifier, open_history)
