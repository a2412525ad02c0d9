"""Stats service: the app factory. Wiring only; routes live in api/, logic in services/,
what the service opens at start-up in lifespan.py."""

from __future__ import annotations

from fastapi import FastAPI

from foundation.auth.verifier import TokenVerifier
from foundation.database.errors import install_database_error_handlers
from foundation.database.lifespan import ready_checks
from foundation.shared.app import create_service_app
from foundation.stats_service.api.stats import router as stats_router
from foundation.stats_service.lifespan import stats_lifespan
from foundation.stats_service.settings import StatsServiceSettings


def create_app(
    settings: StatsServiceSettings | None = None, *, token_verifier: TokenVerifier | None = None
) -> FastAPI:
    settings = settings or StatsServiceSettings()
    app = create_service_app(
        settings,
        title="Stats service",
        description="Aggregates built from the event stream.",
        routers=[stats_router],
        lifespan=stats_lifespan(settings, token_verifier),
        ready=ready_checks,
    )
    install_database_error_handlers(app)
    return app
