"""What the account lifecycle needs at run time: its services, the mail throttle, and the mail
relay that sends what they write (``SMTP_URL`` unset: no relay; messages wait in the outbox,
sent once a process with a mail server starts, and a warning says so)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from foundation.auth_service.models import MailOutbox
from foundation.auth_service.services.account_mail import AccountMail
from foundation.auth_service.services.accounts import AccountService
from foundation.auth_service.services.deferred import Deferred
from foundation.auth_service.services.email_verification import EmailVerification
from foundation.auth_service.services.mail_throttle import MailThrottle
from foundation.auth_service.services.password_changes import PasswordChanges
from foundation.auth_service.services.reauthentication import Reauthentication
from foundation.auth_service.services.sessions import SessionService
from foundation.auth_service.settings import AuthServiceSettings
from foundation.mail.relay import MailRelay
from foundation.mail.sender import SmtpSender
from foundation.shared.lifespan import run_worker
from foundation.shared.logging import get_logger
from foundation.shared.redis import Keys

log = get_logger(__name__)


@dataclass(frozen=True)
class Lifecycle:
    email_verification: EmailVerification
    password_changes: PasswordChanges
    mail_relay: MailRelay | None
    deferred_work: Deferred


def open_lifecycle(
    stack: AsyncExitStack,
    settings: AuthServiceSettings,
    *,
    redis: aioredis.Redis,
    db_sessions: async_sessionmaker[AsyncSession],
    session_service: SessionService,
    account_service: AccountService,
) -> Lifecycle:
    """The services, with the relay started; ``stack`` stops the relay, after the work
    deferred past the answers has run."""
    relay: MailRelay | None = None
    target = settings.smtp_target()
    if target is not None:
        mail = AccountMail(
            sessions=db_sessions,
            sender=settings.mail_from,
            verification_url=settings.email_verification_url,
            reset_url=settings.password_reset_url,
        )
        relay = run_worker(
            stack,
            MailRelay(
                db_sessions,
                MailOutbox,
                SmtpSender(target, timeout=settings.smtp_timeout),
                mail.compose,
                poll_interval=settings.mail_poll_interval,
                max_delay=settings.mail_retry_max_delay,
            ),
            enabled=True,
        )
    else:
        log.warning("SMTP_URL is not set: mail is not sent; it waits in the outbox")
    mail_written = relay.notify if relay is not None else (lambda: None)
    throttle = MailThrottle(
        redis,
        Keys(settings.redis_key_prefix),
        per_address=settings.account_mail_max_per_address,
        per_ip=settings.account_mail_max_per_ip,
        window=settings.account_mail_window_seconds,
    )
    deferred = Deferred()
    stack.push_async_callback(deferred.drain)  # before the relay stops (last in, first out)
    reauthentication = Reauthentication(hasher=account_service.hasher, throttle=session_service.throttle)
    verification = EmailVerification(
        sessions=session_service,
        reauthentication=reauthentication,
        throttle=throttle,
        ttl=timedelta(seconds=settings.email_verification_ttl_seconds),
        hold=timedelta(seconds=settings.unverified_email_hold_seconds),
        db_sessions=db_sessions,
        deferred=deferred,
        mail_written=mail_written,
    )
    password_changes = PasswordChanges(
        hasher=account_service.hasher,
        policy=account_service.policy,
        sessions=session_service,
        reauthentication=reauthentication,
        throttle=throttle,
        ttl=timedelta(seconds=settings.password_reset_ttl_seconds),
        db_sessions=db_sessions,
        deferred=deferred,
        mail_written=mail_written,
    )
    return Lifecycle(verification, password_changes, relay, deferred)
