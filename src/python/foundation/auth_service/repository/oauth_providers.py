"""Queries over ``oauth_providers``: a user's links to Google/Apple accounts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from foundation.auth_service.models import OAuthProvider, User


async def by_subject(db: AsyncSession, provider: str, subject: str) -> OAuthProvider | None:
    result = await db.execute(
        select(OAuthProvider).where(OAuthProvider.provider == provider, OAuthProvider.provider_id == subject)
    )
    return result.scalar_one_or_none()


async def for_user(
    db: AsyncSession, user_id: uuid.UUID, provider: str | None = None
) -> Sequence[OAuthProvider]:
    query = select(OAuthProvider).where(OAuthProvider.user_id == user_id).order_by(OAuthProvider.created_at)
    if provider is not None:
        query = query.where(OAuthProvider.provider == provider)
    return (await db.execute(query)).scalars().all()


async def count_for_user(db: AsyncSession, user_id: uuid.UUID) -> int:
    result = await db.scalar(
        select(func.count()).select_from(OAuthProvider).where(OAuthProvider.user_id == user_id)
    )
    return int(result or 0)


async def lock_user(db: AsyncSession, user_id: uuid.UUID) -> User | None:
    """The user row, locked until the transaction ends (serialises link/unlink of one user)."""
    result = await db.execute(select(User).where(User.id == user_id).with_for_update())
    return result.scalar_one_or_none()


async def add(
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    provider: str,
    subject: str,
    access_token: str | None,
    refresh_token: str | None,
    expires_at: datetime | None,
) -> OAuthProvider:
    row = OAuthProvider(
        id=uuid.uuid4(),
        user_id=user_id,
        provider=provider,
        provider_id=subject,
        access_token=access_token,
        refresh_token=refresh_token,
        expires_at=expires_at,
    )
    db.add(row)
    await db.flush()
    await db.refresh(row, ["created_at", "updated_at"])
    return row


async def remove(db: AsyncSession, row_id: uuid.UUID) -> None:
    await db.execute(delete(OAuthProvider).where(OAuthProvider.id == row_id))


async def with_tokens(db: AsyncSession, *, after: uuid.UUID | None, limit: int) -> Sequence[OAuthProvider]:
    """Rows holding a stored token, in id order (for re-encryption in batches), locked."""
    query = (
        select(OAuthProvider)
        .where((OAuthProvider.access_token.is_not(None)) | (OAuthProvider.refresh_token.is_not(None)))
        .order_by(OAuthProvider.id)
        .limit(limit)
        .with_for_update()
    )
    if after is not None:
        query = query.where(OAuthProvider.id > after)
    return (await db.execute(query)).scalars().all()
