"""History service: the app factory. Wiring only; routes live in api/, logic in services/,
what the service opens at start-up in lifespan.py."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware import Middleware

from foundation.auth.verifier import TokenVerifier
from foundation.database.errors import install_database_error_handlers
from foundation.database.lifespan import ready_checks
from foundation.history_service.api.history import MAX_BODY_BYTES
from foundation.history_service.api.history import router as history_router
from foundation.history_service.body_limit import BodyLimit
from foundation.history_service.lifespan import history_lifespan
from foundation.history_service.settings import HistoryServiceSettings
from foundation.shared.app import create_service_app


def create_app(
    settings: HistoryServiceSettings | None = None, *, token_verifier: TokenVerifier | None = None
) -> FastAPI:
    settings = settings or HistoryServiceSettings()
    app = create_service_app(
        settings,
        title="History service",
        description="Each user's activity timeline.",
        routers=[history_router],
        # Before FastAPI reads and parses a body, not after (a dependency would run after).
        middleware=[Middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)],
        lifespan=history_lifespan(settings, token_verifier),
        ready=ready_checks,
    )
    install_database_error_handlers(app)
    return app
