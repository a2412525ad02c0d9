"""Queries over ``account_tokens``: the single-use tokens mailed to users."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from foundation.auth_service.models import AccountToken

VERIFY_EMAIL = "verify_email"
RESET_PASSWORD = "reset_password"  # noqa: S105 - a purpose, not a secret


async def add(
    db: AsyncSession, user_id: uuid.UUID, purpose: str, email: str, expires_at: datetime
) -> AccountToken:
    """A new token (armed when its message is composed); the user's earlier unused tokens of
    the same purpose stop working: only the newest link does."""
    await db.execute(
        delete(AccountToken).where(
            AccountToken.user_id == user_id, AccountToken.purpose == purpose, AccountToken.used_at.is_(None)
        )
    )
    row = AccountToken(id=uuid.uuid4(), user_id=user_id, purpose=purpose, email=email, expires_at=expires_at)
    db.add(row)
    await db.flush()
    return row


async def arm(db: AsyncSession, token_id: uuid.UUID, token_hash: bytes, now: datetime) -> AccountToken | None:
    """Store the hash of the token about to be mailed; None when the token is gone (replaced
    by a newer one), used or expired: its message is moot then."""
    result = await db.execute(
        update(AccountToken)
        .where(AccountToken.id == token_id, AccountToken.used_at.is_(None), AccountToken.expires_at > now)
        .values(token_hash=token_hash)
        .returning(AccountToken)
    )
    return result.scalar_one_or_none()


async def lock_by_hash(db: AsyncSession, token_hash: bytes) -> AccountToken | None:
    """The token with this hash, locked until the transaction ends (one use at a time)."""
    result = await db.execute(
        select(AccountToken).where(AccountToken.token_hash == token_hash).with_for_update()
    )
    return result.scalar_one_or_none()


async def use_all(db: AsyncSession, user_id: uuid.UUID, purpose: str, now: datetime) -> None:
    """Spend every unused token of the user for ``purpose`` (the one used, and any other)."""
    await db.execute(
        update(AccountToken)
        .where(
            AccountToken.user_id == user_id, AccountToken.purpose == purpose, AccountToken.used_at.is_(None)
        )
        .values(used_at=now)
    )


async def purge_ended(db: AsyncSession, before: datetime) -> int:
    """Delete tokens that expired before ``before``."""
    result = await db.execute(delete(AccountToken).where(AccountToken.expires_at < before))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
