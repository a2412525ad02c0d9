"""Taking a mailed token (verification, reset): found by its hash, once, before it expires."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from foundation.auth_service.models import AccountToken
from foundation.auth_service.repository import account_tokens
from foundation.auth_service.services.refresh_tokens import looks_like_token, token_hash
from foundation.shared.errors import BadRequest


def _refused(detail: str, code: str) -> BadRequest:
    return BadRequest(detail, code=code)


async def take(db: AsyncSession, token: str, purpose: str, now: datetime) -> AccountToken:
    """The token's row, locked, if it is one of ``purpose`` that is unused and unexpired;
    else 400 ``invalid_token`` (unknown, or made for something else), ``token_expired`` or
    ``token_used``. The caller spends it (``account_tokens.use_all``) and commits."""
    row = await account_tokens.lock_by_hash(db, token_hash(token)) if looks_like_token(token) else None
    if row is None or row.purpose != purpose:
        await db.rollback()
        raise _refused("This link is not valid. Ask for a new one.", "invalid_token")
    if row.used_at is not None:
        await db.rollback()
        raise _refused("This link has been used already. Ask for a new one.", "token_used")
    if row.expires_at <= now:
        await db.rollback()
        raise _refused("This link has expired. Ask for a new one.", "token_expired")
    return row
