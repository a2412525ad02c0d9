"""A forgotten password (a reset link by mail) and a known one changed.

- ``forgot`` answers the same, in the same time, whether or not an account has the address
  (the API always says 202): after the throttle (services/mail_throttle.py: per address and
  per client), the address is looked up and the link written after the answer
  (services/deferred.py), and the message is sent by the mail relay.
- ``reset`` spends a single-use, expiring token (only its SHA-256 is stored; only the newest
  link of a user works), sets the password under the registration policy, ends every session
  of the account, and confirms the address (the link reached it).
- ``change`` needs the current password (and a fresh sign-in, checked by the API), and ends
  every other session; the one that asked stays signed in.

Each writes its event and mails a notice to the account's address.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from foundation.auth_service.models import OutboxEvent, User
from foundation.auth_service.repository import account_tokens, users
from foundation.auth_service.repository import sessions as session_rows
from foundation.auth_service.services import account_mail
from foundation.auth_service.services.account_tokens import take
from foundation.auth_service.services.deferred import Deferred
from foundation.auth_service.services.mail_throttle import MailThrottle
from foundation.auth_service.services.passwords import PasswordHasher, PasswordPolicy
from foundation.auth_service.services.reauthentication import Reauthentication
from foundation.auth_service.services.sessions import ClientInfo, SessionService
from foundation.events import schema
from foundation.events.outbox import record
from foundation.shared.errors import Forbidden, NotFound


def _inputs(email: str) -> list[str]:
    return [email, email.split("@", 1)[0]]


class PasswordChanges:
    def __init__(
        self,
        *,
        hasher: PasswordHasher,
        policy: PasswordPolicy,
        sessions: SessionService,
        reauthentication: Reauthentication,
        throttle: MailThrottle,
        ttl: timedelta,
        db_sessions: async_sessionmaker[AsyncSession],
        deferred: Deferred,
        mail_written: Callable[[], None] = lambda: None,
    ) -> None:
        self.db_sessions = db_sessions
        self.deferred = deferred
        self.hasher = hasher
        self.policy = policy
        self.sessions = sessions
        self.reauthentication = reauthentication
        self.throttle = throttle
        self.ttl = ttl
        self.mail_written = mail_written

    def clock(self) -> datetime:
        return self.sessions.clock()

    async def forgot(self, email: str, client: ClientInfo) -> None:
        """Mail a reset link if an account has ``email`` (after this returns)."""
        if await self.throttle.allow("reset", email, client.ip):
            self.deferred.run("password-reset-link", self._mail_reset_link(email, client.ip))

    async def _mail_reset_link(self, email: str, ip: str) -> None:
        async with self.db_sessions() as db:
            user = await users.by_email(db, email)
            if user is None or not user.is_active:
                return
            token = await account_tokens.add(
                db, user.id, account_tokens.RESET_PASSWORD, user.email, self.clock() + self.ttl
            )
            account_mail.request(db, account_mail.RESET_PASSWORD, user.id, user.email, token_id=str(token.id))
            record(db, OutboxEvent, schema.USER_PASSWORD_RESET_REQUESTED, user.id, {"ip": ip})
            await db.commit()
        self.mail_written()

    async def reset(self, db: AsyncSession, token: str, new_password: str) -> None:
        now = self.clock()
        row = await take(db, token, account_tokens.RESET_PASSWORD, now)
        user = await users.lock(db, row.user_id)
        if user is None:  # pragma: no cover - tokens go with their account (ON DELETE CASCADE)
            await db.rollback()
            raise NotFound("The account no longer exists.", code="user_not_found")
        try:
            self.policy.check(new_password, user_inputs=_inputs(user.email))
        except Exception:
            await db.rollback()  # the token stays usable with a better password
            raise
        await users.set_password_hash(db, user.id, await self.hasher.hash_async(new_password))
        await account_tokens.use_all(db, user.id, account_tokens.RESET_PASSWORD, now)
        if row.email.strip().lower() == user.email.strip().lower():
            await users.mark_email_verified(db, user.id)  # the link reached the address
        families = await self._end_sessions(db, user.id, now, keep=None, reason="password_reset")
        record(
            db, OutboxEvent, schema.USER_PASSWORD_RESET_COMPLETED, user.id, {"sessions_ended": len(families)}
        )
        self._notice(db, user, "with a reset link")
        await db.commit()
        self.mail_written()
        await self.sessions.deny(families)

    async def change(
        self,
        db: AsyncSession,
        user_id: uuid.UUID,
        session_id: uuid.UUID | None,
        current_password: str,
        new_password: str,
        client: ClientInfo,
    ) -> int:
        """Set a new password; every session but ``session_id`` ends. How many ended."""
        user = await users.by_id(db, user_id)
        if user is None:
            raise NotFound("The account no longer exists.", code="user_not_found")
        if user.password_hash is None:
            raise Forbidden(
                "This account has no password yet: set one with a reset link "
                "(POST /auth/password/forgot).",
                code="password_not_set",
            )
        await self.reauthentication.confirm_password(user, current_password, client)
        self.policy.check(new_password, user_inputs=_inputs(user.email))
        password_hash = await self.hasher.hash_async(new_password)
        now = self.clock()
        await users.set_password_hash(db, user.id, password_hash)
        families = await self._end_sessions(db, user.id, now, keep=session_id, reason="password_changed")
        record(db, OutboxEvent, schema.USER_PASSWORD_CHANGED, user.id, {"sessions_ended": len(families)})
        self._notice(db, user, "by someone signed in to it")
        await db.commit()
        self.mail_written()
        await self.sessions.deny(families)
        return len(families)

    async def _end_sessions(
        self, db: AsyncSession, user_id: uuid.UUID, now: datetime, *, keep: uuid.UUID | None, reason: str
    ) -> list[uuid.UUID]:
        """Revoke the user's live sessions, but ``keep``; one ``session.revoked`` each."""
        if keep is None:
            families = await session_rows.revoke_user_families(db, user_id, now)
        else:
            families = []
            after: tuple[datetime, uuid.UUID] | None = None
            while page := await session_rows.live_for_user(db, user_id, now, limit=200, after=after):
                families += [row.family_id for row in page if row.family_id != keep]
                after = (page[-1].authenticated_at, page[-1].family_id)
            revoked: list[uuid.UUID] = []
            for family_id in sorted(families):  # in id order, as every revocation locks
                revoked += await session_rows.revoke_user_families(db, user_id, now, family_id)
            families = revoked
        for family_id in families:
            record(
                db,
                OutboxEvent,
                schema.SESSION_REVOKED,
                user_id,
                {"session_id": str(family_id), "reason": reason},
            )
        return families

    def _notice(self, db: AsyncSession, user: User, how: str) -> None:
        account_mail.request(db, account_mail.PASSWORD_CHANGED_NOTICE, user.id, user.email, how=how)
