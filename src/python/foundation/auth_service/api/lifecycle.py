"""The account lifecycle's routes (``/auth/email/...``, ``/auth/password/...``) and their
lifespan: the services, the mail throttle, and the mail relay that sends what they write.

FastAPI runs this lifespan after the app's own one, which has set up the database, Redis,
the session and account services. ``SMTP_URL`` unset: no relay; messages wait in the
outbox (sent once a process with a mail server starts), and a warning says so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import APIRouter, FastAPI

from foundation.auth_service.api import email, passwords
from foundation.auth_service.models import MailOutbox
from foundation.auth_service.services.account_mail import AccountMail
from foundation.auth_service.services.deferred import Deferred
from foundation.auth_service.services.email_verification import EmailVerification
from foundation.auth_service.services.mail_throttle import MailThrottle
from foundation.auth_service.services.password_changes import PasswordChanges
from foundation.auth_service.services.reauthentication import Reauthentication
from foundation.auth_service.settings import AuthServiceSettings
from foundation.mail.relay import MailRelay
from foundation.mail.sender import SmtpSender
from foundation.shared.logging import get_logger
from foundation.shared.redis import Keys

log = get_logger(__name__)


@asynccontextmanager
async def lifecycle_lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = app.state.settings
    if not isinstance(settings, AuthServiceSettings):  # pragma: no cover - wiring error
        raise TypeError("the account lifecycle needs auth-service settings")
    session_service = app.state.session_service
    account_service = app.state.account_service
    relay: MailRelay | None = None
    target = settings.smtp_target()
    if target is not None:
        mail = AccountMail(
            sessions=app.state.sessions,
            sender=settings.mail_from,
            verification_url=settings.email_verification_url,
            reset_url=settings.password_reset_url,
        )
        relay = MailRelay(
            app.state.sessions,
            MailOutbox,
            SmtpSender(target, timeout=settings.smtp_timeout),
            mail.compose,
            poll_interval=settings.mail_poll_interval,
            max_delay=settings.mail_retry_max_delay,
        )
        relay.start()
    else:
        log.warning("SMTP_URL is not set: mail is not sent; it waits in the outbox")
    mail_written = relay.notify if relay is not None else (lambda: None)
    throttle = MailThrottle(
        app.state.redis,
        Keys(settings.redis_key_prefix),
        per_address=settings.account_mail_max_per_address,
        per_ip=settings.account_mail_max_per_ip,
        window=settings.account_mail_window_seconds,
    )
    deferred = Deferred()
    reauthentication = Reauthentication(hasher=account_service.hasher, throttle=session_service.throttle)
    app.state.email_verification = EmailVerification(
        sessions=session_service,
        reauthentication=reauthentication,
        throttle=throttle,
        ttl=timedelta(seconds=settings.email_verification_ttl_seconds),
        hold=timedelta(seconds=settings.unverified_email_hold_seconds),
        db_sessions=app.state.sessions,
        deferred=deferred,
        mail_written=mail_written,
    )
    app.state.password_changes = PasswordChanges(
        hasher=account_service.hasher,
        policy=account_service.policy,
        sessions=session_service,
        reauthentication=reauthentication,
        throttle=throttle,
        ttl=timedelta(seconds=settings.password_reset_ttl_seconds),
        db_sessions=app.state.sessions,
        deferred=deferred,
        mail_written=mail_written,
    )
    app.state.mail_relay = relay
    app.state.deferred_work = deferred
    try:
        yield
    finally:
        await deferred.drain()
        if relay is not None:
            await relay.aclose()


router = APIRouter(lifespan=lifecycle_lifespan)
router.include_router(email.router)
router.include_router(passwords.router)
