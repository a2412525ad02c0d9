"""Stats service: what its lifespan opens (``State``, every request's lifespan state) and
closes, last opened first."""

from __future__ import annotations

from contextlib import AsyncExitStack

from foundation.auth.verifier import TokenVerifier
from foundation.database.lifespan import ServiceState, service_lifespan
from foundation.events.consumer import StreamConsumer
from foundation.shared.lifespan import Lifespan, run_worker
from foundation.stats_service.services.counting import StatsCounter
from foundation.stats_service.services.reports import Reports
from foundation.stats_service.settings import StatsServiceSettings


class State(ServiceState):
    reports: Reports
    consumer: StreamConsumer


def stats_lifespan(
    settings: StatsServiceSettings, token_verifier: TokenVerifier | None = None
) -> Lifespan[State]:
    def open_stats(stack: AsyncExitStack, base: ServiceState) -> State:
        consumer = run_worker(
            stack,
            StreamConsumer.from_settings(base["redis"], StatsCounter(base["sessions"]), settings),
            enabled=settings.events_consumer_enabled,
        )
        return {**base, "reports": Reports(base["sessions"]), "consumer": consumer}

    return service_lifespan(settings, token_verifier, open_stats)
