"""Stats service: the app factory. Wiring only; routes live in api/, logic in services/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from foundation.auth.denylist import SessionDenyList
from foundation.auth.verifier import TokenVerifier, service_verifier
from foundation.database.engine import create_engine, ping, session_factory
from foundation.database.errors import install_database_error_handlers
from foundation.events.consumer import StreamConsumer
from foundation.shared.app import create_service_app
from foundation.shared.redis import create_redis
from foundation.stats_service.api.stats import router as stats_router
from foundation.stats_service.services.counting import StatsCounter
from foundation.stats_service.services.reports import Reports
from foundation.stats_service.settings import StatsServiceSettings


def create_app(
    settings: StatsServiceSettings | None = None, *, token_verifier: TokenVerifier | None = None
) -> FastAPI:
    settings = settings or StatsServiceSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        sessions = session_factory(engine)
        redis = create_redis(settings)
        verifier = token_verifier or service_verifier(settings)
        app.state.engine = engine
        app.state.sessions = sessions
        app.state.redis = redis
        app.state.token_verifier = verifier
        app.state.session_denylist = SessionDenyList.for_service(settings, redis)
        app.state.reports = Reports(sessions)
        app.state.consumer = StreamConsumer.from_settings(redis, StatsCounter(sessions), settings)
        if settings.events_consumer_enabled:
            app.state.consumer.start()
        try:
            yield
        finally:
            await app.state.consumer.aclose()
            await verifier.aclose()
            await app.state.session_denylist.aclose()
            await redis.aclose()
            await engine.dispose()

    app = create_service_app(
        settings,
        title="Stats service",
        description="Aggregates built from the event stream.",
        routers=[stats_router],
        lifespan=lifespan,
        checks=lambda app: {"database": lambda: ping(app.state.engine), "redis": app.state.redis.ping},
    )
    install_database_error_handlers(app)
    return app
