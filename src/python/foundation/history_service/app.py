"""History service: the app factory. Wiring only; routes live in api/, logic in services/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI
from starlette.middleware import Middleware

from foundation.auth.denylist import SessionDenyList
from foundation.auth.verifier import TokenVerifier, service_verifier
from foundation.database.engine import create_engine, ping, session_factory
from foundation.database.errors import install_database_error_handlers
from foundation.events.consumer import StreamConsumer
from foundation.events.relay import OutboxRelay
from foundation.history_service.api.history import MAX_BODY_BYTES
from foundation.history_service.api.history import router as history_router
from foundation.history_service.body_limit import BodyLimit
from foundation.history_service.models import Outbox
from foundation.history_service.services.ingest import HistoryIngest
from foundation.history_service.services.timeline import Timeline
from foundation.history_service.settings import HistoryServiceSettings
from foundation.shared.app import create_service_app
from foundation.shared.redis import create_redis


def create_app(
    settings: HistoryServiceSettings | None = None, *, token_verifier: TokenVerifier | None = None
) -> FastAPI:
    settings = settings or HistoryServiceSettings()

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
        app.state.timeline = Timeline(
            sessions,
            max_data_bytes=settings.history_max_data_bytes,
            max_future=timedelta(seconds=settings.history_max_future_seconds),
            max_past=timedelta(seconds=settings.history_max_past_seconds),
        )
        app.state.relay = OutboxRelay(sessions, redis, Outbox, prefix=settings.redis_key_prefix)
        app.state.consumer = StreamConsumer.from_settings(redis, HistoryIngest(sessions), settings)
        if settings.events_relay_enabled:
            app.state.relay.start()
        if settings.events_consumer_enabled:
            app.state.consumer.start()
        try:
            yield
        finally:
            await app.state.consumer.aclose()
            await app.state.relay.aclose()
            await verifier.aclose()
            await app.state.session_denylist.aclose()
            await redis.aclose()
            await engine.dispose()

    app = create_service_app(
        settings,
        title="History service",
        description="Each user's activity timeline.",
        routers=[history_router],
        # Before FastAPI reads and parses a body, not after (a dependency would run after).
        middleware=[Middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)],
        lifespan=lifespan,
        checks=lambda app: {"database": lambda: ping(app.state.engine), "redis": app.state.redis.ping},
    )
    install_database_error_handlers(app)
    return app
