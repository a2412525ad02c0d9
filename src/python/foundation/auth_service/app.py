"""Auth service: the app factory. Wiring only; routes live in api/, logic in services/,
what the service opens at start-up in lifespan.py."""

from __future__ import annotations

from fastapi import FastAPI

from foundation.auth.verifier import TokenVerifier
from foundation.auth_service.api import accounts, factors, keys, lifecycle, oauth, sessions, tokens
from foundation.auth_service.lifespan import auth_lifespan
from foundation.auth_service.settings import AuthServiceSettings
from foundation.database.errors import install_database_error_handlers
from foundation.database.lifespan import ready_checks
from foundation.shared.app import create_service_app


def create_app(
    settings: AuthServiceSettings | None = None, *, token_verifier: TokenVerifier | None = None
) -> FastAPI:
    settings = settings or AuthServiceSettings()
    app = create_service_app(
        settings,
        title="Auth service",
        description="Accounts, passwords, sessions, tokens, Google and Apple sign-in.",
        # oauth.router brings its own lifespan (providers, state store, token cipher), run
        # after the app's own one has set up Redis and the session service.
        routers=[
            accounts.router,
            tokens.router,
            sessions.router,
            keys.router,
            oauth.router,
            factors.router,
            lifecycle.router,
        ],
        lifespan=auth_lifespan(settings, token_verifier),
        ready=ready_checks,
    )
    install_database_error_handlers(app)
    return app
