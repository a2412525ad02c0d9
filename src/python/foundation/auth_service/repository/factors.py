"""Queries over a user's second factors: ``totp_factors``, ``recovery_codes``, ``passkeys``."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from foundation.auth_service.models import Passkey, RecoveryCode, TotpFactor, User
from foundation.database.direct import DirectSql

# One probe per sign-in with a correct password: which second factors the user must choose from.
_ENROLLED = """
    SELECT EXISTS (SELECT FROM totp_factors WHERE user_id = %(user_id)s AND confirmed_at IS NOT NULL)
               AS totp,
           EXISTS (SELECT FROM passkeys WHERE user_id = %(user_id)s) AS passkey,
           EXISTS (SELECT FROM recovery_codes WHERE user_id = %(user_id)s AND used_at IS NULL)
               AS recovery_code
"""


async def enrolled(direct: DirectSql, user_id: uuid.UUID) -> list[str]:
    """The user's usable second factors: ``totp``, ``passkey``, ``recovery_code`` (none: [])."""
    row = await direct.fetch_one(_ENROLLED, {"user_id": user_id})
    if row is None or not (row["totp"] or row["passkey"]):
        return []  # recovery codes alone are no factor: they stand in for one
    return [name for name in ("totp", "passkey", "recovery_code") if row[name]]


async def lock_user(db: AsyncSession, user_id: uuid.UUID) -> User | None:
    """The user row, locked until the transaction ends (serialises changes to one user's factors)."""
    return (await db.execute(select(User).where(User.id == user_id).with_for_update())).scalar_one_or_none()


# -- TOTP ------------------------------------------------------------------------------------


async def totp(db: AsyncSession, user_id: uuid.UUID, *, lock: bool = False) -> TotpFactor | None:
    query = select(TotpFactor).where(TotpFactor.user_id == user_id)
    return (await db.execute(query.with_for_update() if lock else query)).scalar_one_or_none()


async def put_totp(db: AsyncSession, user_id: uuid.UUID, sealed_secret: str) -> TotpFactor:
    """A new unconfirmed TOTP factor, replacing an unconfirmed one."""
    await db.execute(delete(TotpFactor).where(TotpFactor.user_id == user_id))
    row = TotpFactor(user_id=user_id, secret=sealed_secret)
    db.add(row)
    await db.flush()
    return row


async def remove_totp(db: AsyncSession, user_id: uuid.UUID) -> bool:
    result = await db.execute(delete(TotpFactor).where(TotpFactor.user_id == user_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]


# -- recovery codes --------------------------------------------------------------------------


async def replace_recovery_codes(db: AsyncSession, user_id: uuid.UUID, hashes: Sequence[bytes]) -> None:
    await db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    db.add_all(RecoveryCode(id=uuid.uuid4(), user_id=user_id, code_hash=h) for h in hashes)
    await db.flush()


async def remove_recovery_codes(db: AsyncSession, user_id: uuid.UUID) -> None:
    await db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))


async def spend_recovery_code(db: AsyncSession, user_id: uuid.UUID, code_hash: bytes, now: datetime) -> bool:
    """Mark the user's unused code with this hash used; False when there is none (one statement,
    so the same code presented twice at once is spent once)."""
    result = await db.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user_id,
            RecoveryCode.code_hash == code_hash,
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def unused_recovery_codes(db: AsyncSession, user_id: uuid.UUID) -> int:
    count = await db.scalar(
        select(func.count())
        .select_from(RecoveryCode)
        .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
    )
    return int(count or 0)


# -- passkeys --------------------------------------------------------------------------------


async def passkeys(db: AsyncSession, user_id: uuid.UUID) -> Sequence[Passkey]:
    query = select(Passkey).where(Passkey.user_id == user_id).order_by(Passkey.created_at, Passkey.id)
    return (await db.execute(query)).scalars().all()


async def passkey_by_credential(
    db: AsyncSession, credential_id: bytes, *, lock: bool = False
) -> Passkey | None:
    query = select(Passkey).where(Passkey.credential_id == credential_id)
    return (await db.execute(query.with_for_update() if lock else query)).scalar_one_or_none()


async def add_passkey(
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    credential_id: bytes,
    public_key: bytes,
    sign_count: int,
    transports: Sequence[str],
    name: str,
    backed_up: bool,
) -> Passkey:
    row = Passkey(
        id=uuid.uuid4(),
        user_id=user_id,
        credential_id=credential_id,
        public_key=public_key,
        sign_count=sign_count,
        transports=list(transports),
        name=name,
        backed_up=backed_up,
    )
    db.add(row)
    await db.flush()
    await db.refresh(row, ["created_at", "updated_at"])
    return row


async def remove_passkey(db: AsyncSession, user_id: uuid.UUID, passkey_id: uuid.UUID) -> bool:
    result = await db.execute(delete(Passkey).where(Passkey.id == passkey_id, Passkey.user_id == user_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def has_factor(db: AsyncSession, user_id: uuid.UUID) -> bool:
    """Whether a confirmed TOTP or any passkey is left (recovery codes stand in for them)."""
    totp_left = exists().where(TotpFactor.user_id == user_id, TotpFactor.confirmed_at.is_not(None))
    passkey_left = exists().where(Passkey.user_id == user_id)
    return bool(await db.scalar(select(totp_left | passkey_left)))
