"""Auth service: the app factory. Wiring only; routes live in api/, logic in services/."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from foundation.auth.denylist import SessionDenyList
from foundation.auth.signing import AccessTokenIssuer, LocalKeySource, SigningKeyStore
from foundation.auth.verifier import TokenVerifier
from foundation.auth_service.api import accounts, factors, keys, oauth, sessions, tokens
from foundation.auth_service.models import OutboxEvent
from foundation.auth_service.services.accounts import AccountService
from foundation.auth_service.services.login_throttle import LoginThrottle
from foundation.auth_service.services.passwords import PasswordHasher, PasswordPolicy
from foundation.auth_service.services.sessions import Lifetimes, SessionService, purge_periodically
from foundation.auth_service.settings import AuthServiceSettings
from foundation.database.direct import DirectSql
from foundation.database.engine import create_engine, ping, session_factory
from foundation.database.errors import install_database_error_handlers
from foundation.events.relay import OutboxRelay
from foundation.shared.app import create_service_app
from foundation.shared.redis import create_redis


def load_signing_keys(settings: AuthServiceSettings) -> SigningKeyStore:
    return SigningKeyStore.from_config(
        settings.signing_keys_value(),
        settings.jwt_keys_dir,
        token_lifetime=settings.access_token_ttl,
        generate_if_missing=not settings.is_production,
    )


def create_app(
    settings: AuthServiceSettings | None = None, *, token_verifier: TokenVerifier | None = None
) -> FastAPI:
    settings = settings or AuthServiceSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        app.state.engine = engine
        redis = create_redis(settings)
        app.state.redis = redis
        # The relay reads the outbox through sessions of its own; every commit of a request's
        # session (and every write through the direct pool, below) wakes it, so events go out
        # at once and the poll is only a safety net.
        relay = OutboxRelay(
            session_factory(engine),
            redis,
            OutboxEvent,
            prefix=settings.redis_key_prefix,
            poll_interval=settings.outbox_poll_interval,
            linger=settings.outbox_linger,
        )
        wake = relay.notify if settings.outbox_relay_enabled else None
        app.state.sessions = session_factory(engine, on_commit=wake)

        signing_keys = load_signing_keys(settings)
        app.state.signing_keys = signing_keys
        # Sign-in throttling; refuses to start in production without the device-cookie secret.
        throttle = LoginThrottle.for_service(settings)
        # auth-service verifies its own tokens against its own keys: no HTTP round trip.
        app.state.token_verifier = token_verifier or TokenVerifier(
            LocalKeySource(signing_keys), issuer=settings.jwt_issuer, audience=settings.jwt_audience
        )
        denylist = SessionDenyList.for_service(settings, redis)
        app.state.session_denylist = denylist
        app.state.trusted_proxies = tuple(
            ipaddress.ip_network(n, strict=False) for n in settings.trusted_proxies
        )

        direct = DirectSql(settings)
        await direct.open()
        app.state.direct_sql = direct
        hasher = PasswordHasher(
            settings.argon2_memory_kib, settings.argon2_time_cost, settings.argon2_parallelism
        )
        session_service = SessionService(
            hasher=hasher,
            issuer=AccessTokenIssuer(
                signing_keys,
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                lifetime=settings.access_token_ttl,
            ),
            throttle=throttle,
            denylist=denylist,
            direct=direct,
            db_sessions=app.state.sessions,
            lifetimes=Lifetimes(
                idle=timedelta(seconds=settings.session_idle_timeout),
                absolute=timedelta(seconds=settings.session_absolute_lifetime),
                grace=timedelta(seconds=settings.refresh_grace_seconds),
            ),
        )
        app.state.session_service = session_service
        app.state.account_service = AccountService(
            hasher=hasher,
            policy=PasswordPolicy(
                settings.password_min_length, settings.password_max_length, settings.password_min_score
            ),
            sessions=session_service,
        )

        if settings.outbox_relay_enabled:
            relay.start()
            direct.on_write(relay.notify)
        app.state.outbox_relay = relay
        purger = None
        if settings.session_purge_interval > 0:
            purger = asyncio.create_task(
                purge_periodically(
                    session_service,
                    retention=timedelta(seconds=settings.session_retention),
                    interval=settings.session_purge_interval,
                ),
                name="session-purge",
            )
        try:
            yield
        finally:
            if purger is not None:
                purger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await purger
            await relay.aclose()
            hasher.close()
            await direct.close()
            await denylist.aclose()
            await throttle.aclose()
            await redis.aclose()
            await engine.dispose()

    app = create_service_app(
        settings,
        title="Auth service",
        description="Accounts, passwords, sessions, tokens, Google and Apple sign-in.",
        # oauth.router brings its own lifespan (providers, state store, token cipher), run
        # after the app's own one has set up Redis and the session service.
        routers=[accounts.router, tokens.router, sessions.router, keys.router, oauth.router, factors.router],
        lifespan=lifespan,
        checks=lambda app: {"database": lambda: ping(app.state.engine), "redis": app.state.redis.ping},
    )
    install_database_error_handlers(app)
    return app
