"""Queries over ``users``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import any_, case, delete, exists, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from foundation.auth_service.models import OAuthProvider, User
from foundation.database.direct import DirectSql


async def by_email(db: AsyncSession, email: str) -> User | None:
    result = await db.execute(select(User).where(func.lower(User.email) == email.strip().lower()))
    return result.scalar_one_or_none()


@dataclass(frozen=True)
class Credentials:
    id: uuid.UUID
    password_hash: str | None
    is_active: bool
    roles: list[str]
    email_verified: bool


async def credentials(direct: DirectSql, email: str) -> Credentials | None:
    """What sign-in needs of the user with this email (any letter case)."""
    row = await direct.fetch_one(
        "SELECT id, password_hash, is_active, roles, email_verified FROM users"
        " WHERE lower(email) = %(email)s",
        {"email": email.strip().lower()},
    )
    if row is None:
        return None
    return Credentials(
        row["id"],
        row["password_hash"],
        bool(row["is_active"]),
        list(row["roles"] or []),
        bool(row["email_verified"]),
    )


async def by_id(db: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await db.get(User, user_id)


async def add(
    db: AsyncSession, email: str, password_hash: str | None, *, email_verified: bool | None = None
) -> User:
    """Insert and flush; ``IntegrityError`` when the email is taken (in any case).

    ``email_verified`` defaults to whether the account has no password: such an account is
    made by a Google or Apple sign-in, which only creates one for an address it verified."""
    verified = password_hash is None if email_verified is None else email_verified
    user = User(id=uuid.uuid4(), email=email, password_hash=password_hash, roles=[], email_verified=verified)
    db.add(user)
    await db.flush()
    await db.refresh(user, ["created_at", "updated_at", "is_active"])
    return user


async def set_password_hash(db: AsyncSession, user_id: uuid.UUID, password_hash: str) -> None:
    await db.execute(update(User).where(User.id == user_id).values(password_hash=password_hash))


async def lock(db: AsyncSession, user_id: uuid.UUID) -> User | None:
    result = await db.execute(select(User).where(User.id == user_id).with_for_update())
    return result.scalar_one_or_none()


async def set_email(db: AsyncSession, user_id: uuid.UUID, email: str) -> None:
    """A verified new address; ``IntegrityError`` when another account has it (in any case)."""
    await db.execute(update(User).where(User.id == user_id).values(email=email, email_verified=True))
    await db.flush()


async def mark_email_verified(db: AsyncSession, user_id: uuid.UUID) -> None:
    await db.execute(update(User).where(User.id == user_id).values(email_verified=True))


async def unverified_holder(db: AsyncSession, email: str, created_before: datetime) -> uuid.UUID | None:
    """The account holding ``email`` without having verified it, if it is a password account
    made before ``created_before`` and linked to no provider: one that may be released (and
    is locked until the transaction ends)."""
    linked = exists().where(OAuthProvider.user_id == User.id)
    result = await db.execute(
        select(User.id)
        .where(
            func.lower(User.email) == email.strip().lower(),
            User.email_verified.is_(False),
            User.password_hash.is_not(None),
            User.created_at < created_before,
            ~linked,
        )
        .with_for_update()
    )
    return result.scalar_one_or_none()


async def add_role(db: AsyncSession, email: str, role: str) -> User | None:
    """Give the user ``role`` (once); None when no user has that email."""
    result = await db.execute(
        update(User)
        .where(func.lower(User.email) == email.strip().lower())
        .values(
            roles=case(
                (literal(role) == any_(User.roles), User.roles), else_=func.array_append(User.roles, role)
            )
        )
        .returning(User)
    )
    return result.scalar_one_or_none()


async def remove(db: AsyncSession, user_id: uuid.UUID) -> bool:
    result = await db.execute(delete(User).where(User.id == user_id).returning(User.id))
    return result.scalar_one_or_none() is not None
