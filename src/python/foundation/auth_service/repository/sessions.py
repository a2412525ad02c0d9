"""Queries over ``sessions``: one row per refresh-token generation, grouped by family.

Revocation and rotation are serialised on the family's *head*, its first row (``id =
family_id``), which lives as long as the family does. A refresh takes the head ``FOR KEY
SHARE`` inside its one statement, before it rotates; every revocation first locks the heads
of the families it ends ``FOR UPDATE`` (``lock_families``), then revokes in a second
statement. Under READ COMMITTED that second statement's snapshot is taken once the lock is
granted, so a refresh that was in flight has committed and its successor is revoked with the
rest; a refresh that comes later waits on the head, then re-reads its row, finds it revoked
and rotates nothing. Refreshes of different families, and of one family, do not block each
other (``FOR KEY SHARE`` is shared); the lock is one primary-key probe in the same round trip.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Update, and_, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from foundation.auth_service.models import Session, User
from foundation.database.direct import DirectSql
from foundation.events import outbox
from foundation.events.schema import TOKEN_REFRESHED


@dataclass(frozen=True)
class TokenRow:
    """A refresh-token row with what a refresh needs of its user."""

    session: Session
    roles: list[str]
    user_active: bool


_START = f"""
    WITH session AS (
        INSERT INTO sessions
            (id, user_id, token, family_id, authenticated_at, created_at, expires_at, user_agent, ip, amr)
        VALUES (%(id)s, %(user_id)s, %(token)s, %(id)s, %(now)s, %(now)s, %(expires_at)s,
                %(user_agent)s, %(ip)s, %(amr)s)
    )
    {outbox.insert_sql()}
"""  # noqa: S608 - no value in the text: the outbox module's SQL


async def start(
    direct: DirectSql,
    *,
    family_id: uuid.UUID,
    user_id: uuid.UUID,
    token_hash: bytes,
    now: datetime,
    expires_at: datetime,
    user_agent: str | None,
    ip: str | None,
    amr: Sequence[str],
    event_type: str,
    event_data: dict[str, Any],
) -> None:
    """A new session (its first token generation) and its outbox event, in one statement."""
    await direct.execute(
        _START,
        {
            "id": family_id,
            "user_id": user_id,
            "token": token_hash,
            "now": now,
            "expires_at": expires_at,
            "user_agent": user_agent,
            "ip": ip,
            "amr": list(amr),
            **outbox.insert_params(event_type, user_id, event_data, occurred_at=now),
        },
    )


async def add(
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    token_hash: bytes,
    family_id: uuid.UUID,
    authenticated_at: datetime,
    created_at: datetime,
    expires_at: datetime,
    user_agent: str | None,
    ip: str | None,
    session_id: uuid.UUID | None = None,
) -> Session:
    row = Session(
        id=session_id or uuid.uuid4(),
        user_id=user_id,
        token=token_hash,
        family_id=family_id,
        authenticated_at=authenticated_at,
        created_at=created_at,
        expires_at=expires_at,
        user_agent=user_agent,
        ip=ip,
    )
    db.add(row)
    return row


async def family_of(db: AsyncSession, token_hash: bytes) -> uuid.UUID | None:
    """The family of the row holding this token, read without a lock."""
    result = await db.execute(select(Session.family_id).where(Session.token == token_hash))
    return result.scalar_one_or_none()


async def lock_by_token(db: AsyncSession, token_hash: bytes, *, lock: bool = True) -> TokenRow | None:
    """The row holding this token, locked until the transaction ends (``FOR UPDATE``).

    Lock the family's head first (``lock_families``): heads before rows is the order every
    refresh and revocation takes, so none of them deadlock. ``lock=False``: just read it.
    """
    query = (
        select(Session, User.roles, User.is_active)
        .join(User, User.id == Session.user_id)
        .where(Session.token == token_hash)
    )
    result = await db.execute(query.with_for_update(of=Session) if lock else query)
    found = result.one_or_none()
    if found is None:
        return None
    return TokenRow(found[0], list(found[1] or []), bool(found[2]))


# The common refresh in one statement: rotate a live token of an active user, add its
# successor and the outbox event. A concurrent refresh of the same token waits on the row
# lock, then finds it replaced (no row) and takes the careful path (grace window or reuse).
#
# "Live" is written num_nulls(replaced_by_id, revoked_at) = 2, not as two IS NULL tests:
# those would let the planner read the row through ix_sessions_user_live (whose predicate
# they match) and filter every live row of every user by token, instead of the one lookup
# in uq_sessions_token; without statistics (a new database, autovacuum off) it does.
# test_sessions_sql.py checks the plan.
#
# The EXISTS takes the family's head FOR KEY SHARE before the row is rotated (see the module
# docstring): a revocation holding it waits for this statement's transaction, or makes it
# wait, re-check its row (revoked by then) and rotate nothing.
_REFRESHED_EVENT = outbox.insert_sql(
    source="old", user_id="user_id", data="jsonb_build_object('session_id', family_id::text)"
)
_ROTATE_LIVE = f"""
    WITH old AS (
        UPDATE sessions AS s
        SET replaced_by_id = %(successor_id)s, last_used_at = %(now)s, successor_sealed = %(sealed)s
        FROM users AS u
        WHERE s.token = %(token)s AND num_nulls(s.replaced_by_id, s.revoked_at) = 2
          AND s.expires_at > %(now)s AND u.id = s.user_id AND u.is_active
          AND EXISTS (SELECT FROM sessions AS h WHERE h.id = s.family_id FOR KEY SHARE)
        RETURNING s.user_id, s.family_id, s.authenticated_at, s.amr, u.roles
    ), successor AS (
        INSERT INTO sessions
            (id, user_id, token, family_id, authenticated_at, created_at, expires_at, user_agent, ip, amr)
        SELECT %(successor_id)s, user_id, %(successor_token)s, family_id, authenticated_at, %(now)s,
               LEAST(%(now)s + %(idle)s, authenticated_at + %(absolute)s), %(user_agent)s, %(ip)s, amr
        FROM old
    ), event AS (
        {_REFRESHED_EVENT}
    )
    SELECT user_id, family_id, authenticated_at, amr, roles FROM old
"""  # noqa: S608 - no value in the text: the outbox module's SQL


@dataclass(frozen=True)
class Rotated:
    user_id: uuid.UUID
    family_id: uuid.UUID
    roles: list[str]
    authenticated_at: datetime
    amr: list[str]


async def rotate_live(
    direct: DirectSql,
    *,
    token_hash: bytes,
    successor_id: uuid.UUID,
    successor_hash: bytes,
    sealed: bytes,
    now: datetime,
    idle: timedelta,
    absolute: timedelta,
    user_agent: str | None,
    ip: str | None,
) -> Rotated | None:
    """Rotate the token if it is live (records ``token.refreshed``); None otherwise."""
    row = await direct.fetch_one(
        _ROTATE_LIVE,
        {
            "token": token_hash,
            "successor_id": successor_id,
            "successor_token": successor_hash,
            "sealed": sealed,
            "now": now,
            "idle": idle,
            "absolute": absolute,
            "user_agent": user_agent,
            "ip": ip,
            **outbox.insert_params(TOKEN_REFRESHED, occurred_at=now),
        },
    )
    if row is None:
        return None
    return Rotated(
        row["user_id"],
        row["family_id"],
        list(row["roles"] or []),
        row["authenticated_at"],
        list(row["amr"] or []),
    )


async def lock(db: AsyncSession, session_id: uuid.UUID) -> Session | None:
    result = await db.execute(select(Session).where(Session.id == session_id).with_for_update())
    return result.scalar_one_or_none()


async def lock_families(db: AsyncSession, family_ids: list[uuid.UUID]) -> None:
    """Lock the families' heads ``FOR UPDATE`` (in id order: no deadlock between two
    revocations) until the transaction ends; revoke them in a later statement."""
    if family_ids:
        await db.execute(
            select(Session.id).where(Session.id.in_(family_ids)).order_by(Session.id).with_for_update()
        )


async def revoke_family(db: AsyncSession, family_id: uuid.UUID, now: datetime) -> int:
    """Revoke every row of the family; lock it first (``lock_families``), in a statement of its own."""
    await lock_families(db, [family_id])
    result = await db.execute(
        update(Session)
        .where(Session.family_id == family_id, Session.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def revoke_families_statement(
    user_id: uuid.UUID, now: datetime, family_id: uuid.UUID | None = None
) -> Update:
    """Revoke the user's live families (or just ``family_id``), returning their rows.

    The families are found through their current rows (``ix_sessions_user_live``), then every
    row of each is revoked through ``ix_sessions_family_id``: asking for "the user's rows not
    yet revoked" directly matches no index and reads the whole table."""
    current = select(Session.family_id).where(Session.user_id == user_id, *_current())
    if family_id is not None:
        current = current.where(Session.family_id == family_id)
    return (
        update(Session)
        .where(Session.family_id.in_(current.scalar_subquery()), Session.revoked_at.is_(None))
        .values(revoked_at=now)
        .returning(Session.family_id, Session.expires_at)
    )


async def revoke_user_families(
    db: AsyncSession, user_id: uuid.UUID, now: datetime, family_id: uuid.UUID | None = None
) -> list[uuid.UUID]:
    """Revoke the user's live families (or just ``family_id``); returns the ones revoked.

    Two statements: their heads are locked first, then a fresh snapshot revokes every row,
    successors committed by refreshes that held the head meanwhile included."""
    current = select(Session.family_id).where(Session.user_id == user_id, *_current())
    if family_id is not None:
        current = current.where(Session.family_id == family_id)
    await db.execute(
        select(Session.id)
        .where(Session.id.in_(current.scalar_subquery()))
        .order_by(Session.id)
        .with_for_update()
    )
    result = await db.execute(revoke_families_statement(user_id, now, family_id))
    return sorted({family for family, expires_at in result.all() if expires_at > now})


def _current() -> list[Any]:
    """A family's current row: not replaced, not revoked (the ``ix_sessions_user_live`` rows)."""
    return [Session.replaced_by_id.is_(None), Session.revoked_at.is_(None)]


def _live(now: datetime) -> list[Any]:
    return [*_current(), Session.expires_at > now]


async def live_for_user(
    db: AsyncSession,
    user_id: uuid.UUID,
    now: datetime,
    *,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None = None,
) -> list[Session]:
    """The current token row of each live family, newest sign-in first (keyset pages)."""
    query = select(Session).where(Session.user_id == user_id, *_live(now))
    if after is not None:
        query = query.where(tuple_(Session.authenticated_at, Session.family_id) < tuple_(*after))
    query = query.order_by(Session.authenticated_at.desc(), Session.family_id.desc()).limit(limit)
    return list((await db.execute(query)).scalars())


async def family_is_live_for_user(
    db: AsyncSession, family_id: uuid.UUID, user_id: uuid.UUID, now: datetime
) -> bool:
    count = await db.scalar(
        select(func.count())
        .select_from(Session)
        .where(and_(Session.family_id == family_id, Session.user_id == user_id, *_live(now)))
    )
    return bool(count)


async def family_revoked_at(db: AsyncSession, family_id: uuid.UUID, user_id: uuid.UUID) -> datetime | None:
    """When the user's family was revoked (its latest revocation), or None."""
    return await db.scalar(
        select(func.max(Session.revoked_at)).where(Session.family_id == family_id, Session.user_id == user_id)
    )


# Oldest rows first, a batch at a time; concurrent purges (every replica runs one) skip each
# other's rows instead of waiting on them.
_PURGE = """
    DELETE FROM sessions WHERE id IN (
        SELECT id FROM sessions WHERE created_at < %(cutoff)s
        ORDER BY created_at LIMIT %(batch)s FOR UPDATE SKIP LOCKED
    )
"""


async def purge_created_before(direct: DirectSql, cutoff: datetime, batch: int) -> int:
    """Delete up to ``batch`` rows created before ``cutoff``; how many went."""
    return await direct.execute(_PURGE, {"cutoff": cutoff, "batch": batch})
