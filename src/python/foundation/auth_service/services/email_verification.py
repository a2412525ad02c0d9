"""Verified email addresses: the link mailed on registration, its resend, the change of
address (verified at the new one, announced to the old one), and the release of an address
that an unverified account holds against its provider-verified owner.

- A verification token is single-use, expires (``EMAIL_VERIFICATION_TTL_SECONDS``), and only
  the newest one of a user works; only its SHA-256 is stored (services/account_mail.py).
- An email change takes effect when the link sent to the new address is opened; until then
  the account keeps signing in with the old one.
- Resend answers the same, in the same time, whatever the address (202), sends only to an
  account whose address is not verified, and is throttled (services/mail_throttle.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from foundation.auth_service.models import OutboxEvent, User
from foundation.auth_service.repository import account_tokens, users
from foundation.auth_service.repository import sessions as session_rows
from foundation.auth_service.services import account_mail
from foundation.auth_service.services.account_mail import mask
from foundation.auth_service.services.account_tokens import take
from foundation.auth_service.services.deferred import Deferred
from foundation.auth_service.services.mail_throttle import MailThrottle
from foundation.auth_service.services.reauthentication import Reauthentication
from foundation.auth_service.services.sessions import ClientInfo, SessionService
from foundation.events import schema
from foundation.events.outbox import record
from foundation.shared.errors import Conflict, NotFound, ValidationFailed
from foundation.shared.logging import get_logger

log = get_logger(__name__)


def email_taken() -> Conflict:
    return Conflict("An account with this email already exists.", code="email_taken")


class EmailVerification:
    def __init__(
        self,
        *,
        sessions: SessionService,
        reauthentication: Reauthentication,
        throttle: MailThrottle,
        ttl: timedelta,
        hold: timedelta,
        db_sessions: async_sessionmaker[AsyncSession],
        deferred: Deferred,
        mail_written: Callable[[], None] = lambda: None,
    ) -> None:
        self.db_sessions = db_sessions
        self.deferred = deferred
        self.sessions = sessions
        self.reauthentication = reauthentication
        self.throttle = throttle
        self.ttl = ttl
        self.hold = hold
        self.mail_written = mail_written  # wakes the mail relay after a commit that wrote mail

    def clock(self) -> datetime:
        return self.sessions.clock()

    async def request(self, db: AsyncSession, user_id: uuid.UUID, email: str) -> None:
        """Mail a verification link for ``email`` to it, in ``db``'s transaction (the caller
        commits, then calls ``mail_written``)."""
        token = await account_tokens.add(
            db, user_id, account_tokens.VERIFY_EMAIL, email, self.clock() + self.ttl
        )
        account_mail.request(db, account_mail.VERIFY_EMAIL, user_id, email, token_id=str(token.id))

    async def resend(self, email: str, client: ClientInfo) -> None:
        """Mail a new link if an account has ``email`` unverified (after this returns, so the
        answer's timing says nothing either: services/deferred.py)."""
        if await self.throttle.allow("verify", email, client.ip):
            self.deferred.run("verification-link", self._resend(email))

    async def _resend(self, email: str) -> None:
        async with self.db_sessions() as db:
            user = await users.by_email(db, email)
            if user is None or user.email_verified or not user.is_active:
                return
            await self.request(db, user.id, user.email)
            await db.commit()
        self.mail_written()

    async def verify(self, db: AsyncSession, token: str) -> User:
        """Spend a verification token: the address it was sent to becomes the account's,
        verified. 400 when the token is not valid, used or expired; 409 ``email_taken`` when
        another account took a new address meanwhile."""
        now = self.clock()
        row = await take(db, token, account_tokens.VERIFY_EMAIL, now)
        user = await users.lock(db, row.user_id)
        if user is None:  # pragma: no cover - tokens go with their account (ON DELETE CASCADE)
            await db.rollback()
            raise NotFound("The account no longer exists.", code="user_not_found")
        changed = row.email.strip().lower() != user.email.strip().lower()
        if changed:
            try:
                await users.set_email(db, user.id, row.email)
            except IntegrityError as exc:
                await db.rollback()
                raise email_taken() from exc
            record(db, OutboxEvent, schema.USER_EMAIL_CHANGED, user.id, {})
        else:
            await users.mark_email_verified(db, user.id)
        await account_tokens.use_all(db, user.id, account_tokens.VERIFY_EMAIL, now)
        record(db, OutboxEvent, schema.USER_EMAIL_VERIFIED, user.id, {"email_change": changed})
        await db.commit()
        await db.refresh(user)
        return user

    async def change(
        self, db: AsyncSession, user_id: uuid.UUID, new_email: str, password: str | None, client: ClientInfo
    ) -> None:
        """Ask to move the account to ``new_email``: a link goes to it, a notice to the
        current address; nothing changes until the link is opened."""
        user = await users.by_id(db, user_id)
        if user is None:
            raise NotFound("The account no longer exists.", code="user_not_found")
        await self.reauthentication.confirm_password(user, password, client)
        if new_email.strip().lower() == user.email.strip().lower():
            problem = "This is the account's address already."
            raise ValidationFailed(
                problem,
                [{"field": "new_email", "location": "body", "message": problem, "type": "email_unchanged"}],
                code="email_unchanged",
            )
        if await users.by_email(db, new_email) is not None:
            raise email_taken()
        await self.request(db, user.id, new_email)
        account_mail.request(
            db, account_mail.EMAIL_CHANGE_NOTICE, user.id, user.email, new_email=mask(new_email)
        )
        record(db, OutboxEvent, schema.USER_EMAIL_CHANGE_REQUESTED, user.id, {"ip": client.ip})
        await db.commit()
        self.mail_written()

    async def release_squatted(self, db: AsyncSession, email: str) -> bool:
        """Before a Google or Apple sign-in creates an account for its verified ``email``:
        delete the account holding that address if it is an unverified password account
        older than ``UNVERIFIED_EMAIL_HOLD_SECONDS`` and linked to no provider (whoever made it
        never proved the address; its owner now has). Its sessions end and history and stats
        forget it (``user.deleted``). True when an account was released; the caller's
        transaction holds the change (it commits with the new account)."""
        now = self.clock()
        holder = await users.unverified_holder(db, email, now - self.hold)
        if holder is None:
            return False
        families = await session_rows.revoke_user_families(db, holder, now)
        await users.remove(db, holder)
        record(db, OutboxEvent, schema.USER_DELETED, holder, {"reason": "unverified_email_claimed"})
        await db.flush()
        await self.sessions.deny(families)
        log.info("unverified account released its address", user_id=str(holder))
        return True
