"""Sign-in, token refresh with rotation, sign-out, and the user's list of sessions.

A session is a refresh-token family (``family_id`` is the ``sid`` in access tokens). Every
state change is written to the outbox in the same transaction; revoked families are also
put on the Redis deny-list so their access tokens stop working at once.

Sign-out (logout, logout-all, ``DELETE /auth/sessions/{id}``) fails safe: the revocation
commits first (the refresh tokens are dead whatever Redis does), then the deny-list is
written; if Redis refuses, the answer is 503 ``redis_unavailable`` and the client retries.
A retried logout, or ``DELETE`` of a session revoked within the access-token lifetime, writes
the deny-list entry again. Reuse detection and account deletion only log a failed write.

A refresh racing a revocation never leaves a live successor: both lock the family's head
row (repository/sessions.py's docstring); every revocation path locks head before row.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import psycopg
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from foundation.auth.denylist import SessionDenyList
from foundation.auth.signing import AccessTokenIssuer
from foundation.auth_service.models import OutboxEvent, Session
from foundation.auth_service.repository import events, users
from foundation.auth_service.repository import sessions as session_rows
from foundation.auth_service.services.login_throttle import LoginThrottle
from foundation.auth_service.services.passwords import PasswordHasher
from foundation.auth_service.services.refresh_tokens import (
    looks_like_token,
    new_token,
    open_successor,
    seal_successor,
    token_hash,
)
from foundation.database.direct import DirectSql
from foundation.events import schema
from foundation.events.outbox import record
from foundation.shared.errors import AppError, Forbidden, NotFound, ServiceUnavailable, Unauthorized
from foundation.shared.logging import get_logger

log = get_logger(__name__)
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ClientInfo:
    ip: str
    user_agent: str | None = None


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str
    session_id: uuid.UUID


@dataclass(frozen=True)
class Lifetimes:
    idle: timedelta
    absolute: timedelta
    grace: timedelta


# RFC 8176 ``amr`` values of a session opened by a password alone (services/factors.py has the rest).
AMR_PASSWORD = ("pwd",)


class SecondStep(Protocol):
    async def required(self, user_id: uuid.UUID, roles: Sequence[str]) -> AppError | None:
        """The answer to give instead of a session when the user must prove a second factor."""
        ...


def _refused(detail: str, code: str) -> Unauthorized:
    return Unauthorized(detail, code=code)


class SessionService:
    def __init__(
        self,
        *,
        hasher: PasswordHasher,
        issuer: AccessTokenIssuer,
        throttle: LoginThrottle,
        denylist: SessionDenyList,
        lifetimes: Lifetimes,
        direct: DirectSql,
        db_sessions: async_sessionmaker[AsyncSession],
        clock: Clock = utcnow,
    ) -> None:
        # Sign-in and refresh run on ``direct`` (one statement each); a database session of
        # ``db_sessions`` is opened only on their rare paths (a hash to upgrade, a token that
        # is not live).
        self.direct = direct
        self.db_sessions = db_sessions
        self.hasher = hasher
        self.issuer = issuer
        self.throttle = throttle
        self.denylist = denylist
        self.lifetimes = lifetimes
        self.clock = clock
        # Set by the lifespan: asked after every correct password.
        self.second_factors: SecondStep | None = None
        # UNVERIFIED_SIGN_IN: false refuses a right password for an unverified address.
        self.unverified_sign_in = True

    # -- sign-in ---------------------------------------------------------------------------

    async def login(
        self, email: str, password: str, client: ClientInfo, device_cookie: str | None = None
    ) -> TokenPair:
        """Sign in with a password. ``device_cookie``: the one an earlier sign-in gave this
        client (``throttle.devices.issue``); valid for this account, the attempt counts
        against that device alone (services/login_throttle.py)."""
        # Counted before the password is checked, so concurrent guesses cannot overtake the limit.
        attempt = await self.throttle.reserve(email, client.ip, device_cookie)
        try:
            user = await users.credentials(self.direct, email)
            # Always one argon2 verification (a dummy hash for unknown emails): same time either way.
            valid = await self.hasher.verify_async(user.password_hash if user else None, password)
            if user is None or not valid or not user.is_active:
                await events.add(
                    self.direct,
                    schema.USER_LOGIN_FAILED,
                    user.id if user else None,
                    {"reason": "invalid_credentials", "ip": client.ip},
                    self.clock(),
                )
                raise _refused("The email or password is not correct.", "invalid_credentials")
            assert user.password_hash is not None
            if self.hasher.needs_rehash(user.password_hash):
                upgraded = await self.hasher.hash_async(password)
                async with self.db_sessions() as db:
                    await users.set_password_hash(db, user.id, upgraded)
                    await db.commit()
            if not (self.unverified_sign_in or user.email_verified):
                # After the password was found right: the answer tells nothing to a guesser.
                raise Forbidden(
                    "Confirm your email address first: open the link we sent, or ask for a new one.",
                    code="email_not_verified",
                )
            if self.second_factors is not None and (
                step := await self.second_factors.required(user.id, user.roles or [])
            ):
                await self.throttle.succeeded(attempt)  # the password was right
                raise step
            pair = await self.start_session(
                user.id, user.roles or [], client, method="password", amr=AMR_PASSWORD
            )
        except Unauthorized:
            raise  # a failed attempt keeps its count
        except Exception:
            await self.throttle.undecided(attempt)  # the database away, ...: nothing was learnt
            raise
        await self.throttle.succeeded(attempt)
        return pair

    async def start_session(
        self, user_id: uuid.UUID, roles: Iterable[str], client: ClientInfo, *, method: str, amr: Sequence[str]
    ) -> TokenPair:
        """Open a session for a user who has proven who they are (password, second factor,
        passkey, Google, Apple; ``amr`` says how): a new refresh-token family and its first
        token; records the login; commits."""
        now = self.clock()
        token = new_token()
        family_id = uuid.uuid4()  # the first generation's id is the family's id: the sid
        await session_rows.start(
            self.direct,
            family_id=family_id,
            user_id=user_id,
            token_hash=token_hash(token),
            now=now,
            expires_at=min(now + self.lifetimes.idle, now + self.lifetimes.absolute),
            user_agent=client.user_agent,
            ip=client.ip,
            amr=amr,
            event_type=schema.USER_LOGGED_IN,
            event_data={"session_id": str(family_id), "method": method, "ip": client.ip},
        )
        return self._pair(user_id, family_id, list(roles), token, now, amr)

    def _pair(
        self,
        user_id: uuid.UUID,
        family_id: uuid.UUID,
        roles: Iterable[str],
        refresh: str,
        authenticated_at: datetime,
        amr: Sequence[str],
    ) -> TokenPair:
        # ``auth_time``: the sign-in that opened the session; a refresh is no new proof of identity.
        access = self.issuer.issue(
            user_id, family_id, roles, auth_time=int(authenticated_at.timestamp()), amr=amr
        )
        return TokenPair(access.token, access.expires_in, refresh, family_id)

    # -- refresh ---------------------------------------------------------------------------

    async def refresh(self, refresh_token: str, client: ClientInfo) -> TokenPair:
        invalid = _refused("The refresh token is not valid.", "invalid_refresh_token")
        if not looks_like_token(refresh_token):
            raise invalid
        now, presented = self.clock(), token_hash(refresh_token)
        successor_token, successor_id = new_token(), uuid.uuid4()
        rotated = await session_rows.rotate_live(  # the common case: one statement
            self.direct,
            token_hash=presented,
            successor_id=successor_id,
            successor_hash=token_hash(successor_token),
            sealed=seal_successor(refresh_token, successor_token),
            now=now,
            idle=self.lifetimes.idle,
            absolute=self.lifetimes.absolute,
            user_agent=client.user_agent,
            ip=client.ip,
        )
        if rotated is not None:
            return self._pair(
                rotated.user_id,
                rotated.family_id,
                rotated.roles,
                successor_token,
                rotated.authenticated_at,
                rotated.amr,
            )
        # Not a live token: find out why in a transaction, holding its row lock.
        async with self.db_sessions() as db:
            return await self._not_live(db, refresh_token, presented, now, invalid)

    async def _not_live(
        self, db: AsyncSession, refresh_token: str, presented: bytes, now: datetime, invalid: Unauthorized
    ) -> TokenPair:
        # The family's head first, then the row: the lock order of every refresh and
        # revocation, so stale tokens of one family replayed at once queue, not deadlock.
        family_id = await session_rows.family_of(db, presented)
        if family_id is None:
            await db.rollback()
            raise invalid
        await session_rows.lock_families(db, [family_id])
        found = await session_rows.lock_by_token(db, presented)
        if found is None:
            await db.rollback()
            raise invalid
        row = found.session
        if row.revoked_at is not None:
            await db.rollback()
            raise _refused("This session has been signed out.", "refresh_token_revoked")
        if row.replaced_by_id is not None:
            return await self._spent(db, found, refresh_token, now)
        # Neither revoked nor spent, yet not rotated: expired, or its user is deactivated.
        await db.rollback()
        raise _refused("The session has expired; sign in again.", "refresh_token_expired")

    async def _spent(
        self, db: AsyncSession, found: session_rows.TokenRow, refresh_token: str, now: datetime
    ) -> TokenPair:
        """A rotated token came back: the same successor within the grace window, else theft."""
        row = found.session
        in_grace = row.last_used_at is not None and now - row.last_used_at <= self.lifetimes.grace
        if in_grace and row.successor_sealed and row.replaced_by_id:
            successor = await session_rows.lock(db, row.replaced_by_id)
            successor_token = open_successor(refresh_token, row.successor_sealed)
            if (
                successor is not None
                and successor_token is not None
                and successor.replaced_by_id is None
                and successor.revoked_at is None
                and successor.expires_at > now
                and found.user_active
            ):
                user_id, family_id, authenticated_at, amr = (
                    row.user_id,
                    row.family_id,
                    row.authenticated_at,
                    row.amr,
                )
                await db.commit()
                return self._pair(user_id, family_id, found.roles, successor_token, authenticated_at, amr)
        user_id, family_id = row.user_id, row.family_id
        reused = _refused(
            "This refresh token was already used; the session has been signed out.", "refresh_token_reused"
        )
        await session_rows.revoke_family(db, family_id, now)
        record(db, OutboxEvent, schema.REFRESH_TOKEN_REUSED, user_id, {"session_id": str(family_id)})
        record(
            db,
            OutboxEvent,
            schema.SESSION_REVOKED,
            user_id,
            {"session_id": str(family_id), "reason": "reuse"},
        )
        await db.commit()
        log.warning("refresh token reuse: family revoked", user_id=str(user_id), session_id=str(family_id))
        await self.deny([family_id])
        raise reused

    # -- sign-out --------------------------------------------------------------------------

    async def logout(self, db: AsyncSession, refresh_token: str) -> None:
        """End the session holding this token. Unknown or ended sessions: nothing to do (RFC 7009)."""
        if not looks_like_token(refresh_token):
            return
        # Not locked: the family's head is (revoke_family), before any of its rows, as a
        # refresh does; locking this row first could deadlock with a refresh of it.
        found = await session_rows.lock_by_token(db, token_hash(refresh_token), lock=False)
        if found is None:
            await db.rollback()
            return
        now, row = self.clock(), found.session
        user_id, family_id, revoked_at = row.user_id, row.family_id, row.revoked_at
        if revoked_at is not None:
            await db.rollback()
            await self._deny_again(family_id, revoked_at, now)  # a retry after a 503
            return
        if not await session_rows.revoke_family(db, family_id, now):
            await db.rollback()  # signed out meanwhile
            return
        record(db, OutboxEvent, schema.USER_LOGGED_OUT, user_id, {"session_id": str(family_id)})
        await db.commit()
        await self.deny([family_id], fail_closed=True)

    async def logout_all(self, db: AsyncSession, user_id: uuid.UUID) -> int:
        families = await session_rows.revoke_user_families(db, user_id, self.clock())
        for family_id in families:
            record(
                db,
                OutboxEvent,
                schema.SESSION_REVOKED,
                user_id,
                {"session_id": str(family_id), "reason": "logout_all"},
            )
        record(
            db, OutboxEvent, schema.USER_LOGGED_OUT, user_id, {"all_sessions": True, "count": len(families)}
        )
        await db.commit()
        await self.deny(families, fail_closed=True)
        return len(families)

    async def revoke(self, db: AsyncSession, user_id: uuid.UUID, family_id: uuid.UUID) -> None:
        """End one of the user's own live sessions; 404 for anyone else's (no probing)."""
        now = self.clock()
        if not await session_rows.family_is_live_for_user(db, family_id, user_id, now):
            revoked_at = await session_rows.family_revoked_at(db, family_id, user_id)
            await db.rollback()
            if revoked_at is not None:  # perhaps a retry after a 503: deny its tokens again
                await self._deny_again(family_id, revoked_at, now)
            raise NotFound("No such session.", code="session_not_found")
        await session_rows.revoke_user_families(db, user_id, now, family_id)
        record(
            db, OutboxEvent, schema.SESSION_REVOKED, user_id, {"session_id": str(family_id), "reason": "user"}
        )
        await db.commit()
        await self.deny([family_id], fail_closed=True)

    async def live_sessions(
        self, db: AsyncSession, user_id: uuid.UUID, *, limit: int, after: tuple[datetime, uuid.UUID] | None
    ) -> list[Session]:
        return await session_rows.live_for_user(db, user_id, self.clock(), limit=limit, after=after)

    # -- housekeeping ----------------------------------------------------------------------

    async def purge_ended(self, retention: timedelta) -> int:
        return await purge_ended_sessions(
            self.direct, absolute=self.lifetimes.absolute, retention=retention, now=self.clock()
        )

    async def _deny_again(self, family_id: uuid.UUID, revoked_at: datetime, now: datetime) -> None:
        """Deny a revoked family's access tokens again if some may still be unexpired."""
        if now - revoked_at < timedelta(seconds=self.issuer.lifetime):
            await self.deny([family_id], fail_closed=True)

    async def deny(self, families: Iterable[uuid.UUID], *, fail_closed: bool = False) -> None:
        """Refuse the families' access tokens everywhere until the last one has expired.

        Redis refusing: ``fail_closed`` raises 503 ``redis_unavailable`` (sign-out: the
        client retries); otherwise logged (the refresh tokens are revoked already)."""
        for family_id in families:
            try:
                await self.denylist.deny(family_id, self.issuer.lifetime)
            except RedisError as exc:
                log.error("session deny-list unavailable", session_id=str(family_id), error=str(exc))
                if fail_closed:
                    raise ServiceUnavailable(
                        "A backing store is unavailable; try again shortly.",
                        code="redis_unavailable",
                        headers={"Retry-After": "1"},
                    ) from exc


async def purge_ended_sessions(
    direct: DirectSql, *, absolute: timedelta, retention: timedelta, now: datetime, batch: int = 5_000
) -> int:
    """Delete the rows of sessions that ended at least ``retention`` ago; how many went.

    A row created before ``now - absolute - retention`` belongs to a session that signed in
    even earlier, so that session ended (at its absolute lifetime at the latest) at least
    ``retention`` ago, revoked or not. Every row of a live session is younger, so reuse
    detection keeps every generation it needs, and the table holds about one absolute
    lifetime of rows instead of growing forever (a row per refresh)."""
    cutoff = now - absolute - retention
    total = 0
    while True:
        deleted = await session_rows.purge_created_before(direct, cutoff, batch)
        total += deleted
        if deleted < batch:
            break
    if total:
        log.info("ended sessions purged", rows=total, created_before=cutoff.isoformat())
    return total


async def purge_periodically(service: SessionService, *, retention: timedelta, interval: float) -> None:
    """``purge_ended`` every ``interval`` seconds until cancelled. The first run waits a
    random part of the interval, so replicas started together spread out; a failure is
    logged and the next run tries again."""
    await asyncio.sleep(random.uniform(0, interval))  # noqa: S311 - spreading load, not a secret
    while True:
        try:
            await service.purge_ended(retention)
        except (psycopg.Error, OSError) as exc:
            log.warning("purging ended sessions failed; the next run retries", error=str(exc))
        await asyncio.sleep(interval)
