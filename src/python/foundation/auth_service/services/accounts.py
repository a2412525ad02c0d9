"""Accounts: registration, the signed-in user, deletion, and roles."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from foundation.auth_service.models import OutboxEvent, User
from foundation.auth_service.repository import sessions as session_rows
from foundation.auth_service.repository import users
from foundation.auth_service.services.passwords import PasswordHasher, PasswordPolicy
from foundation.auth_service.services.sessions import SessionService
from foundation.events import schema
from foundation.events.outbox import record
from foundation.shared.errors import Conflict, NotFound


def _taken() -> Conflict:
    return Conflict("An account with this email already exists.", code="email_taken")


class AccountService:
    def __init__(self, *, hasher: PasswordHasher, policy: PasswordPolicy, sessions: SessionService) -> None:
        self.hasher = hasher
        self.policy = policy
        self.sessions = sessions

    async def register(
        self,
        db: AsyncSession,
        email: str,
        password: str,
        *,
        on_created: Callable[[AsyncSession, User], Awaitable[None]] | None = None,
    ) -> User:
        """``on_created`` runs in the transaction that adds the user (the verification mail)."""
        self.policy.check(password, user_inputs=[email, email.split("@", 1)[0]])
        # Hashed first, taken or not: the hash is nearly all a sign-up costs, so a 409 takes as
        # long as a 201 and its timing does not tell which emails have accounts (ASVS V6.3.8).
        password_hash = await self.hasher.hash_async(password)
        if await users.by_email(db, email) is not None:
            raise _taken()
        try:
            user = await users.add(db, email, password_hash)
            record(db, OutboxEvent, schema.USER_REGISTERED, user.id, {"method": "password"})
            if on_created is not None:
                await on_created(db, user)
            await db.commit()
        except IntegrityError as exc:  # registered at the same moment by another request
            await db.rollback()
            raise _taken() from exc
        return user

    async def get(self, db: AsyncSession, user_id: uuid.UUID) -> User:
        user = await users.by_id(db, user_id)
        if user is None:
            raise NotFound("The account no longer exists.", code="user_not_found")
        return user

    async def delete(self, db: AsyncSession, user_id: uuid.UUID) -> None:
        """Delete the account and end its sessions; history and stats forget the user on the event."""
        families = await session_rows.revoke_user_families(db, user_id, self.sessions.clock())
        if not await users.remove(db, user_id):
            await db.rollback()
            raise NotFound("The account no longer exists.", code="user_not_found")
        record(db, OutboxEvent, schema.USER_DELETED, user_id, {})
        await db.commit()
        await self.sessions.deny(families)
