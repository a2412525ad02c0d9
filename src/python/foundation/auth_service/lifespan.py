"""Auth service: what its lifespan opens (``State``, every request's lifespan state) and
closes, last opened first."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from foundation.auth.signing import AccessTokenIssuer, LocalKeySource, SigningKeyStore
from foundation.auth.verifier import TokenVerifier
from foundation.auth_service.models import OutboxEvent
from foundation.auth_service.services.accounts import AccountService
from foundation.auth_service.services.deferred import Deferred
from foundation.auth_service.services.email_verification import EmailVerification
from foundation.auth_service.services.factors import SecondFactors, totp_cipher
from foundation.auth_service.services.lifecycle import open_lifecycle
from foundation.auth_service.services.login_throttle import LoginThrottle
from foundation.auth_service.services.oauth import OAuthService, open_oauth
from foundation.auth_service.services.password_changes import PasswordChanges
from foundation.auth_service.services.passwords import PasswordHasher, PasswordPolicy
from foundation.auth_service.services.sessions import Lifetimes, SessionService, purge_periodically
from foundation.auth_service.settings import AuthServiceSettings
from foundation.database.direct import DirectSql
from foundation.database.engine import session_factory
from foundation.database.lifespan import ServiceState, open_service_state
from foundation.events.relay import OutboxRelay
from foundation.mail.relay import MailRelay
from foundation.shared.client_address import IpNetwork
from foundation.shared.lifespan import Lifespan, run_worker
from foundation.shared.redis import Keys


class State(ServiceState):
    signing_keys: SigningKeyStore
    trusted_proxies: tuple[IpNetwork, ...]
    direct_sql: DirectSql
    session_service: SessionService
    account_service: AccountService
    outbox_relay: OutboxRelay
    oauth_service: OAuthService
    second_factors: SecondFactors
    email_verification: EmailVerification
    password_changes: PasswordChanges
    mail_relay: MailRelay | None
    deferred_work: Deferred


def load_signing_keys(settings: AuthServiceSettings) -> SigningKeyStore:
    return SigningKeyStore.from_config(
        settings.signing_keys_value(),
        settings.jwt_keys_dir,
        token_lifetime=settings.access_token_ttl,
        generate_if_missing=not settings.is_production,
    )


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def auth_lifespan(
    settings: AuthServiceSettings, token_verifier: TokenVerifier | None = None
) -> Lifespan[State]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        async with AsyncExitStack() as stack:
            signing_keys = load_signing_keys(settings)
            # auth-service verifies its own tokens against its own keys: no HTTP round trip.
            verifier = token_verifier or TokenVerifier(
                LocalKeySource(signing_keys), issuer=settings.jwt_issuer, audience=settings.jwt_audience
            )
            base = open_service_state(stack, settings, verifier)
            # The relay reads the outbox through the plain sessions; every commit of a
            # request's session (and every write through the direct pool, below) wakes it, so
            # events go out at once and the poll is only a safety net.
            relay = OutboxRelay(
                base["sessions"],
                base["redis"],
                OutboxEvent,
                prefix=settings.redis_key_prefix,
                poll_interval=settings.outbox_poll_interval,
                linger=settings.outbox_linger,
            )
            wake = relay.notify if settings.outbox_relay_enabled else None
            sessions = session_factory(base["engine"], on_commit=wake)
            # Sign-in throttling; refuses to start in production without the device-cookie secret.
            throttle = LoginThrottle.for_service(settings)
            stack.push_async_callback(throttle.aclose)
            direct = DirectSql(settings)
            await direct.open()
            stack.push_async_callback(direct.close)
            hasher = PasswordHasher(
                settings.argon2_memory_kib, settings.argon2_time_cost, settings.argon2_parallelism
            )
            stack.callback(hasher.close)
            session_service = SessionService(
                hasher=hasher,
                issuer=AccessTokenIssuer(
                    signing_keys,
                    issuer=settings.jwt_issuer,
                    audience=settings.jwt_audience,
                    lifetime=settings.access_token_ttl,
                ),
                throttle=throttle,
                denylist=base["session_denylist"],
                direct=direct,
                db_sessions=sessions,
                lifetimes=Lifetimes(
                    idle=timedelta(seconds=settings.session_idle_timeout),
                    absolute=timedelta(seconds=settings.session_absolute_lifetime),
                    grace=timedelta(seconds=settings.refresh_grace_seconds),
                ),
            )
            account_service = AccountService(
                hasher=hasher,
                policy=PasswordPolicy(
                    settings.password_min_length, settings.password_max_length, settings.password_min_score
                ),
                sessions=session_service,
            )
            lifecycle = open_lifecycle(
                stack,
                settings,
                redis=base["redis"],
                db_sessions=sessions,
                session_service=session_service,
                account_service=account_service,
            )
            oauth_service = open_oauth(
                stack,
                settings,
                base["redis"],
                session_service,
                production=settings.is_production,
                key_prefix=settings.redis_key_prefix,
                email_verification=lifecycle.email_verification,
            )
            second_factors = SecondFactors(
                settings=settings,
                db_sessions=sessions,
                direct=direct,
                redis=base["redis"],
                keys=Keys(settings.redis_key_prefix),
                cipher=totp_cipher(settings),
                sessions=session_service,
            )
            session_service.second_factors = second_factors  # asked after every right password
            session_service.unverified_sign_in = settings.unverified_sign_in
            run_worker(stack, relay, enabled=settings.outbox_relay_enabled)
            if wake is not None:
                direct.on_write(wake)
            if settings.session_purge_interval > 0:
                purger = asyncio.create_task(
                    purge_periodically(
                        session_service,
                        retention=timedelta(seconds=settings.session_retention),
                        interval=settings.session_purge_interval,
                    ),
                    name="session-purge",
                )
                stack.push_async_callback(_cancelled, purger)
            state: State = {
                **base,
                "sessions": sessions,
                "signing_keys": signing_keys,
                "trusted_proxies": tuple(
                    ipaddress.ip_network(n, strict=False) for n in settings.trusted_proxies
                ),
                "direct_sql": direct,
                "session_service": session_service,
                "account_service": account_service,
                "outbox_relay": relay,
                "oauth_service": oauth_service,
                "second_factors": second_factors,
                "email_verification": lifecycle.email_verification,
                "password_changes": lifecycle.password_changes,
                "mail_relay": lifecycle.mail_relay,
                "deferred_work": lifecycle.deferred_work,
            }
            yield state

    return lifespan
