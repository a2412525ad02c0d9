"""Stats service: what its lifespan opens (``State``, every request's lifespan state) and
closes, last opened first."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from foundation.auth.verifier import TokenVerifier, service_verifier
from foundation.database.lifespan import ServiceState, open_service_state
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
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        async with AsyncExitStack() as stack:
            base = open_service_state(stack, settings, token_verifier or service_verifier(settings))
            consumer = run_worker(
                stack,
                StreamConsumer.from_settings(base["redis"], StatsCounter(base["sessions"]), settings),
                enabled=settings.events_consumer_enabled,
            )
            yield {**base, "reports": Reports(base["sessions"]), "consumer": consumer}

    return lifespan
