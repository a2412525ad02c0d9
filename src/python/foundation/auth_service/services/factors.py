"""Second factors: TOTP with recovery codes, and passkeys (WebAuthn), for sign-in and step-up.

- **TOTP** (RFC 6238, pyotp): 30-second steps, six digits, one step of clock drift either
  way. A code is accepted once: the factor keeps the last step it accepted and refuses that
  step and older ones. The secret is stored sealed (``foundation.auth.encryption``), bound to
  the user, and shown once, at enrolment; the factor counts once a first code confirms it.
- **Recovery codes**: ten random codes (about 60 bits each) issued when the first factor is
  confirmed (and on request), shown once, stored as SHA-256, each usable once. They stand in
  for a factor, never add one: with no TOTP and no passkey left they are deleted.
- **Passkeys** (the ``webauthn`` library: options, attestation ``none``, COSE keys, signature
  counters): registered by a signed-in user; used as a second factor after a password, or
  alone (a discoverable credential with user verification) to sign in without a password.
- **The sign-in step**: a correct password for an account with a factor opens no session; the
  answer is 403 ``mfa_required`` with an ``mfa_token`` (random, kept hashed in Redis for
  ``MFA_CHALLENGE_TTL_SECONDS``) and the methods to choose from. ``POST /auth/mfa/verify`` with
  the token and a code, a recovery code or a passkey assertion opens the session.
- **Guessing**: every attempt is counted before it is checked (so concurrent guesses cannot
  overtake the limits): ``MFA_MAX_ATTEMPTS_PER_CHALLENGE`` per token (then the token is gone:
  sign in again), and ``MFA_MAX_FAILURES_PER_ACCOUNT`` per account per
  ``LOGIN_FAILURE_WINDOW`` (then 429 ``too_many_attempts`` with ``Retry-After``) over all tokens.
- **amr** (RFC 8176) in the access tokens says how the session was opened: ``pwd``;
  ``pwd otp mfa`` (TOTP or a recovery code); ``pwd hwk mfa`` (password and passkey);
  ``hwk mfa`` (a passkey alone, with user verification).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import pyotp
import redis.asyncio as aioredis
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from webauthn import (
    base64url_to_bytes,
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from foundation.auth.encryption import KeyConfigurationError, TokenCipher, token_cipher
from foundation.auth_service.models import OutboxEvent, Passkey
from foundation.auth_service.repository import factors as rows
from foundation.auth_service.repository import oauth_providers, users
from foundation.auth_service.services.sessions import ClientInfo, SessionService, TokenPair
from foundation.auth_service.settings import AuthServiceSettings
from foundation.database.direct import DirectSql
from foundation.events import schema
from foundation.events.outbox import record
from foundation.shared.errors import BadRequest, Conflict, Forbidden, NotFound, TooManyRequests, Unauthorized
from foundation.shared.logging import get_logger
from foundation.shared.redis import Keys

log = get_logger(__name__)

TOTP_DIGITS = 6
TOTP_PERIOD = 30
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
_RECOVERY_GROUPS = 3
_RECOVERY_GROUP_LENGTH = 4

AMR_PASSWORD = ("pwd",)
AMR_PASSWORD_AND_OTP = ("pwd", "otp", "mfa")
AMR_PASSWORD_AND_PASSKEY = ("pwd", "hwk", "mfa")
AMR_PASSKEY = ("hwk", "mfa")


class MfaRequired(Forbidden):
    code = "mfa_required"
    title = "Second factor required"


class InvalidMfaToken(Unauthorized):
    code = "invalid_mfa_token"
    title = "Sign-in step unknown or expired"


class InvalidSecondFactor(Unauthorized):
    code = "invalid_second_factor"
    title = "Second factor not accepted"


class InvalidPasskey(BadRequest):
    code = "invalid_passkey"
    title = "Passkey not accepted"


# -- TOTP and recovery codes -----------------------------------------------------------------


def new_totp_secret() -> str:
    return pyotp.random_base32(32)  # 160 bits, RFC 4226's recommended length


def totp_uri(secret: str, account: str, issuer: str) -> str:
    """The ``otpauth://`` URI an authenticator app scans (as a QR code) or imports."""
    return str(
        pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD).provisioning_uri(
            name=account, issuer_name=issuer
        )
    )


def accepted_step(secret: str, code: str, last_used_step: int | None, now: float) -> int | None:
    """The time step ``code`` is right for (this one or one either side), if it is later than
    ``last_used_step``; None otherwise. Every candidate is compared, in constant time."""
    if len(code) != TOTP_DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD)
    current = int(now) // TOTP_PERIOD
    found = None
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step).encode(), code.encode()) and (
            last_used_step is None or step > last_used_step
        ):
            found = step
    return found


def new_recovery_codes(count: int) -> list[str]:
    """``count`` codes like ``k7qm-3vxe-p2ha``: 12 characters of 31, about 59 bits each."""
    return [
        "-".join(
            "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_GROUP_LENGTH))
            for _ in range(_RECOVERY_GROUPS)
        )
        for _ in range(count)
    ]


def recovery_code_hash(code: str) -> bytes | None:
    """SHA-256 of the code as issued (case, spaces and dashes ignored); None if it cannot be one."""
    normal = "".join(ch for ch in code.lower() if ch not in "- ")
    if len(normal) != _RECOVERY_GROUPS * _RECOVERY_GROUP_LENGTH or any(
        ch not in _RECOVERY_ALPHABET for ch in normal
    ):
        return None
    return hashlib.sha256(normal.encode()).digest()


# -- the sign-in step in Redis -------------------------------------------------------------


@dataclass(frozen=True)
class PendingSignIn:
    """A sign-in that proved its first factor and waits for its second."""

    user_id: str
    roles: list[str]
    methods: list[str]
    passkey_challenge: str | None = None  # hex, once passkey options were asked for


# KEYS: the challenge hash; ARGV: the most attempts. Counts the attempt first; returns the
# sign-in's JSON while attempts remain, and deletes it with the attempt that uses the last.
_ATTEMPT = """
local data = redis.call('HGET', KEYS[1], 'data')
if not data then
  return false
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if attempts >= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
end
return data
"""

# KEYS: the account's failure counter; ARGV: its limit, the window in ms. Counts an attempt
# unless the counter is at its limit; returns 0, or the ms until it frees.
_RESERVE = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count >= tonumber(ARGV[1]) then
  local left = redis.call('PTTL', KEYS[1])
  if left < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    left = tonumber(ARGV[2])
  end
  return left
end
if redis.call('INCR', KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class SignInSteps:
    """Pending sign-ins by ``mfa_token`` (kept as its SHA-256), and the per-account guess counter."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, settings: AuthServiceSettings) -> None:
        self._redis = redis
        self._keys = keys
        self.ttl = settings.mfa_challenge_ttl_seconds
        self._max_attempts = settings.mfa_max_attempts_per_challenge
        self._max_failures = settings.mfa_max_failures_per_account
        self._window_ms = settings.login_failure_window * 1000
        self._attempt = redis.register_script(_ATTEMPT)
        self._reserve = redis.register_script(_RESERVE)

    def _key(self, token: str) -> str:
        return self._keys("auth", "mfa", "step", hashlib.sha256(token.encode()).hexdigest())

    def _failures(self, user_id: str) -> str:
        return self._keys("auth", "mfa", "failures", user_id)

    async def open(self, pending: PendingSignIn) -> str:
        token = secrets.token_urlsafe(32)
        key = self._key(token)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"data": json.dumps(asdict(pending)), "attempts": 0})
            pipe.expire(key, self.ttl)
            await pipe.execute()
        return token

    async def attempt(self, token: str) -> PendingSignIn:
        """The pending sign-in, with this attempt counted; ``InvalidMfaToken`` when there is none."""
        raw = await self._attempt(keys=[self._key(token)], args=[self._max_attempts]) if token else None
        if not raw:
            raise InvalidMfaToken("This sign-in step is unknown, used or expired; sign in again.")
        return PendingSignIn(**json.loads(raw))

    async def remember_passkey_challenge(self, token: str, pending: PendingSignIn, challenge: bytes) -> None:
        key = self._key(token)
        data = json.dumps({**asdict(pending), "passkey_challenge": challenge.hex()})
        await self._redis.hset(key, "data", data)

    async def close(self, token: str) -> None:
        await self._redis.delete(self._key(token))

    async def reserve_guess(self, user_id: str) -> None:
        """Count a second-factor guess against the account, or refuse it (429) at the limit."""
        wait = int(
            await self._reserve(keys=[self._failures(user_id)], args=[self._max_failures, self._window_ms])
        )
        if wait > 0:
            raise TooManyRequests(
                "Too many wrong second factors for this account; try again later.",
                code="too_many_attempts",
                retry_after=max(1, -(-wait // 1000)),
            )

    async def guess_succeeded(self, user_id: str) -> None:
        await self._redis.delete(self._failures(user_id))


# -- the service -----------------------------------------------------------------------------


def totp_cipher(settings: AuthServiceSettings) -> TokenCipher | None:
    """What seals TOTP secrets: ``OAUTH_TOKEN_ENCRYPTION_KEYS`` (a development key when unset,
    outside production); None in production without keys (authenticator apps are off)."""
    keys = settings.oauth_token_encryption_keys
    try:
        return token_cipher(
            keys.get_secret_value() if keys else None,
            production=settings.is_production,
            data_dir=settings.oauth_data_dir,
        )
    except KeyConfigurationError:
        log.warning("OAUTH_TOKEN_ENCRYPTION_KEYS is not set: authenticator apps (TOTP) are off")
        return None


@dataclass(frozen=True)
class TotpEnrolment:
    secret: str
    uri: str


def _credential_descriptors(passkeys: Sequence[Passkey]) -> list[PublicKeyCredentialDescriptor]:
    descriptors = []
    for key in passkeys:
        transports = []
        for name in key.transports or []:
            try:
                transports.append(AuthenticatorTransport(name))
            except ValueError:
                continue
        descriptors.append(PublicKeyCredentialDescriptor(id=key.credential_id, transports=transports or None))
    return descriptors


def _raw_id(credential: dict[str, Any]) -> bytes | None:
    raw = credential.get("rawId") or credential.get("id")
    if not isinstance(raw, str) or not raw or len(raw) > 2048:
        return None
    try:
        return base64url_to_bytes(raw)
    except (ValueError, TypeError):
        return None


class SecondFactors:
    def __init__(
        self,
        *,
        settings: AuthServiceSettings,
        db_sessions: async_sessionmaker[AsyncSession],
        direct: DirectSql,
        redis: aioredis.Redis,
        keys: Keys,
        cipher: TokenCipher | None,
        sessions: SessionService,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.db_sessions = db_sessions
        self.direct = direct
        self.redis = redis
        self._keys = keys
        self.cipher = cipher
        self.sessions = sessions
        self.steps = SignInSteps(redis, keys, settings)
        self.clock = clock

    # -- the step after the password ------------------------------------------------------

    async def required(self, user_id: uuid.UUID, roles: Sequence[str]) -> MfaRequired | None:
        """The 403 to answer instead of a session when the user has a second factor."""
        methods = await rows.enrolled(self.direct, user_id)
        if not methods:
            return None
        token = await self.steps.open(PendingSignIn(str(user_id), list(roles), methods))
        return MfaRequired(
            "This account has a second factor: send it with the mfa_token to POST /auth/mfa/verify.",
            extra={"mfa_token": token, "methods": methods, "expires_in": self.steps.ttl},
        )

    async def verify_code(
        self, mfa_token: str, client: ClientInfo, *, code: str | None, recovery_code: str | None
    ) -> TokenPair:
        pending = await self.steps.attempt(mfa_token)
        await self.steps.reserve_guess(pending.user_id)
        user_id = uuid.UUID(pending.user_id)
        async with self.db_sessions() as db:
            if code is not None and "totp" in pending.methods:
                accepted = await self._spend_totp(db, user_id, code)
                kind = "totp"
            elif recovery_code is not None and "recovery_code" in pending.methods:
                accepted = await self._spend_recovery_code(db, user_id, recovery_code)
                kind = "recovery_code"
            else:
                accepted, kind = False, "totp" if code is not None else "recovery_code"
            if not accepted:
                record(db, OutboxEvent, schema.MFA_FAILED, user_id, {"method": kind, "ip": client.ip})
                await db.commit()
                raise InvalidSecondFactor("The code is not correct.")
            if kind == "recovery_code":
                left = await rows.unused_recovery_codes(db, user_id)
                record(db, OutboxEvent, schema.MFA_RECOVERY_CODE_USED, user_id, {"remaining": left})
            await db.commit()
        return await self._open_session(mfa_token, pending, client, AMR_PASSWORD_AND_OTP, kind)

    async def _spend_totp(self, db: AsyncSession, user_id: uuid.UUID, code: str) -> bool:
        factor = await rows.totp(db, user_id, lock=True)
        if factor is None or factor.confirmed_at is None:
            return False
        secret = self._open(factor.secret, user_id)
        step = accepted_step(secret, code.strip(), factor.last_used_step, self.clock())
        if step is None:
            return False
        factor.last_used_step = step
        return True

    async def _spend_recovery_code(self, db: AsyncSession, user_id: uuid.UUID, code: str) -> bool:
        digest = recovery_code_hash(code)
        return digest is not None and await rows.spend_recovery_code(db, user_id, digest, datetime.now(UTC))

    async def _open_session(
        self, mfa_token: str, pending: PendingSignIn, client: ClientInfo, amr: Sequence[str], kind: str
    ) -> TokenPair:
        await self.steps.close(mfa_token)
        await self.steps.guess_succeeded(pending.user_id)
        return await self.sessions.start_session(
            uuid.UUID(pending.user_id), pending.roles, client, method=f"password+{kind}", amr=amr
        )

    # -- TOTP enrolment -------------------------------------------------------------------

    def _cipher(self) -> TokenCipher:
        if self.cipher is None:
            raise NotFound(
                "Authenticator apps are not configured on this server.", code="totp_not_configured"
            )
        return self.cipher

    def _open(self, sealed: str, user_id: uuid.UUID) -> str:
        return self._cipher().decrypt(sealed, _totp_context(user_id))

    async def start_totp(self, db: AsyncSession, user_id: uuid.UUID) -> TotpEnrolment:
        user = await rows.lock_user(db, user_id)
        if user is None:
            await db.rollback()
            raise NotFound("The account no longer exists.", code="user_not_found")
        existing = await rows.totp(db, user_id)
        if existing is not None and existing.confirmed_at is not None:
            await db.rollback()
            raise Conflict(
                "An authenticator app is set up already; remove it first.", code="totp_already_enabled"
            )
        secret = new_totp_secret()
        await rows.put_totp(db, user_id, self._cipher().encrypt(secret, _totp_context(user_id)))
        await db.commit()
        return TotpEnrolment(secret, totp_uri(secret, user.email, self.settings.mfa_issuer))

    async def confirm_totp(self, db: AsyncSession, user_id: uuid.UUID, code: str) -> list[str] | None:
        """Confirm the enrolment with a first code; the recovery codes when they are new."""
        if await rows.lock_user(db, user_id) is None:
            await db.rollback()
            raise NotFound("The account no longer exists.", code="user_not_found")
        factor = await rows.totp(db, user_id, lock=True)
        if factor is None or factor.confirmed_at is not None:
            await db.rollback()
            raise Conflict("There is no authenticator app waiting to be confirmed.", code="totp_not_pending")
        secret = self._open(factor.secret, user_id)
        step = accepted_step(secret, code.strip(), None, self.clock())
        if step is None:
            await db.rollback()
            raise InvalidSecondFactor("The code is not correct; check the app's clock and try the next one.")
        first = not await rows.has_factor(db, user_id)
        factor.confirmed_at = datetime.now(UTC)
        factor.last_used_step = step
        codes = await self._replace_recovery_codes(db, user_id) if first else None
        record(db, OutboxEvent, schema.MFA_FACTOR_ADDED, user_id, {"factor": "totp"})
        await db.commit()
        return codes

    async def remove_totp(self, db: AsyncSession, user_id: uuid.UUID) -> None:
        await rows.lock_user(db, user_id)
        factor = await rows.totp(db, user_id)
        if factor is None:
            await db.rollback()
            raise NotFound("No authenticator app is set up.", code="totp_not_enabled")
        await rows.remove_totp(db, user_id)
        await self._after_removal(db, user_id, "totp")

    async def new_recovery_codes(self, db: AsyncSession, user_id: uuid.UUID) -> list[str]:
        await rows.lock_user(db, user_id)
        if not await rows.has_factor(db, user_id):
            await db.rollback()
            raise Conflict("Set up a second factor first.", code="no_second_factor")
        codes = await self._replace_recovery_codes(db, user_id)
        record(db, OutboxEvent, schema.MFA_RECOVERY_CODES_REPLACED, user_id, {"count": len(codes)})
        await db.commit()
        return codes

    async def _replace_recovery_codes(self, db: AsyncSession, user_id: uuid.UUID) -> list[str]:
        codes = new_recovery_codes(self.settings.mfa_recovery_codes)
        hashes = [recovery_code_hash(code) for code in codes]
        await rows.replace_recovery_codes(db, user_id, [h for h in hashes if h is not None])
        return codes

    async def _after_removal(self, db: AsyncSession, user_id: uuid.UUID, factor: str) -> None:
        if not await rows.has_factor(db, user_id):
            await rows.remove_recovery_codes(db, user_id)  # nothing left for them to stand in for
        record(db, OutboxEvent, schema.MFA_FACTOR_REMOVED, user_id, {"factor": factor})
        await db.commit()

    # -- passkeys: registration -----------------------------------------------------------

    def _registration_key(self, user_id: uuid.UUID) -> str:
        return self._keys("auth", "mfa", "passkey-registration", str(user_id))

    async def passkey_registration_options(self, db: AsyncSession, user_id: uuid.UUID) -> dict[str, Any]:
        user = await users.by_id(db, user_id)
        if user is None:
            raise NotFound("The account no longer exists.", code="user_not_found")
        options = generate_registration_options(
            rp_id=self.settings.webauthn_rp_id,
            rp_name=self.settings.mfa_issuer,
            user_id=user.id.bytes,
            user_name=user.email,
            user_display_name=user.display_name or user.email,
            exclude_credentials=_credential_descriptors(await rows.passkeys(db, user_id)),
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
        )
        await self.redis.set(self._registration_key(user_id), options.challenge.hex(), ex=self.steps.ttl)
        return json.loads(options_to_json(options))  # type: ignore[no-any-return]

    async def register_passkey(
        self, db: AsyncSession, user_id: uuid.UUID, credential: dict[str, Any], name: str
    ) -> tuple[Passkey, list[str] | None]:
        challenge = await self.redis.getdel(self._registration_key(user_id))
        if not challenge:
            raise InvalidPasskey("Ask for registration options first (they are valid for a few minutes).")
        try:
            verified = verify_registration_response(
                credential=credential,
                expected_challenge=_challenge(challenge),
                expected_rp_id=self.settings.webauthn_rp_id,
                expected_origin=list(self.settings.webauthn_origins),
            )
        except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
            raise InvalidPasskey(f"The passkey could not be registered: {exc}"[:300]) from exc
        if await rows.lock_user(db, user_id) is None:
            await db.rollback()
            raise NotFound("The account no longer exists.", code="user_not_found")
        first = not await rows.has_factor(db, user_id)
        transports = credential.get("response", {}).get("transports") or []
        try:
            row = await rows.add_passkey(
                db,
                user_id=user_id,
                credential_id=verified.credential_id,
                public_key=verified.credential_public_key,
                sign_count=verified.sign_count,
                transports=[str(t)[:32] for t in transports if isinstance(t, str)][:8],
                name=name,
                backed_up=verified.credential_backed_up,
            )
        except IntegrityError as exc:
            await db.rollback()
            raise Conflict("This passkey is registered already.", code="passkey_exists") from exc
        codes = await self._replace_recovery_codes(db, user_id) if first else None
        record(
            db,
            OutboxEvent,
            schema.MFA_FACTOR_ADDED,
            user_id,
            {"factor": "passkey", "passkey_id": str(row.id)},
        )
        await db.commit()
        return row, codes

    async def remove_passkey(self, db: AsyncSession, user_id: uuid.UUID, passkey_id: uuid.UUID) -> None:
        user = await rows.lock_user(db, user_id)
        if user is None or not await rows.remove_passkey(db, user_id, passkey_id):
            await db.rollback()
            raise NotFound("There is no such passkey on this account.", code="passkey_not_found")
        if (
            user.password_hash is None
            and not await rows.has_factor(db, user_id)
            and not await oauth_providers.count_for_user(db, user_id)
        ):
            await db.rollback()
            raise Conflict(
                "This is the account's only way to sign in: set a password or add another first.",
                code="last_sign_in_method",
            )
        await self._after_removal(db, user_id, "passkey")

    # -- passkeys: assertions -------------------------------------------------------------

    def _passwordless_key(self, handle: str) -> str:
        return self._keys("auth", "mfa", "passkey-sign-in", hashlib.sha256(handle.encode()).hexdigest())

    async def second_factor_options(self, mfa_token: str) -> dict[str, Any]:
        """Assertion options for the user of a pending sign-in (their passkeys only)."""
        pending = await self.steps.attempt(mfa_token)
        if "passkey" not in pending.methods:
            raise InvalidSecondFactor("This account has no passkey.")
        async with self.db_sessions() as db:
            passkeys = await rows.passkeys(db, uuid.UUID(pending.user_id))
        options = generate_authentication_options(
            rp_id=self.settings.webauthn_rp_id,
            allow_credentials=_credential_descriptors(passkeys),
            user_verification=UserVerificationRequirement.PREFERRED,
        )
        await self.steps.remember_passkey_challenge(mfa_token, pending, options.challenge)
        return json.loads(options_to_json(options))  # type: ignore[no-any-return]

    async def verify_passkey_second_factor(
        self, mfa_token: str, credential: dict[str, Any], client: ClientInfo
    ) -> TokenPair:
        pending = await self.steps.attempt(mfa_token)
        await self.steps.reserve_guess(pending.user_id)
        if not pending.passkey_challenge:
            raise InvalidPasskey("Ask for passkey options with this mfa_token first.")
        user_id = uuid.UUID(pending.user_id)
        await self._verify_assertion(
            credential, bytes.fromhex(pending.passkey_challenge), user_id, client, require_uv=False
        )
        return await self._open_session(mfa_token, pending, client, AMR_PASSWORD_AND_PASSKEY, "passkey")

    async def passwordless_options(self) -> tuple[dict[str, Any], str]:
        """Options for signing in with a passkey alone, and the handle to send back with it."""
        options = generate_authentication_options(
            rp_id=self.settings.webauthn_rp_id, user_verification=UserVerificationRequirement.REQUIRED
        )
        handle = secrets.token_urlsafe(32)
        await self.redis.set(self._passwordless_key(handle), options.challenge.hex(), ex=self.steps.ttl)
        return json.loads(options_to_json(options)), handle

    async def passwordless_sign_in(
        self, handle: str, credential: dict[str, Any], client: ClientInfo
    ) -> TokenPair:
        challenge = await self.redis.getdel(self._passwordless_key(handle)) if handle else None
        if not challenge:
            raise InvalidPasskey("Ask for sign-in options first (they are valid once, for a few minutes).")
        user_id = await self._verify_assertion(
            credential, _challenge(challenge), None, client, require_uv=True
        )
        async with self.db_sessions() as db:
            user = await users.by_id(db, user_id)
        if user is None or not user.is_active:
            raise Unauthorized("This account is disabled.", code="account_disabled")
        return await self.sessions.start_session(
            user.id, user.roles or [], client, method="passkey", amr=AMR_PASSKEY
        )

    async def _verify_assertion(
        self,
        credential: dict[str, Any],
        challenge: bytes,
        user_id: uuid.UUID | None,
        client: ClientInfo,
        *,
        require_uv: bool,
    ) -> uuid.UUID:
        """Check an assertion against the stored passkey (its owner: ``user_id`` when given, and
        the assertion's user handle); update its counter. Returns the owner."""
        refused = InvalidPasskey("The passkey was not accepted.")
        raw_id = _raw_id(credential)
        async with self.db_sessions() as db:
            key = await rows.passkey_by_credential(db, raw_id, lock=True) if raw_id else None
            handle = (
                credential.get("response", {}).get("userHandle")
                if isinstance(credential.get("response"), dict)
                else None
            )
            owner_ok = key is not None and (user_id is None or key.user_id == user_id)
            if key is not None and handle and not _same_handle(handle, key.user_id):
                owner_ok = False
            if key is None or not owner_ok:
                await db.rollback()
                if user_id is not None:
                    await self._record_failure(user_id, "passkey", client)
                raise refused
            try:
                verified = verify_authentication_response(
                    credential=credential,
                    expected_challenge=challenge,
                    expected_rp_id=self.settings.webauthn_rp_id,
                    expected_origin=list(self.settings.webauthn_origins),
                    credential_public_key=key.public_key,
                    credential_current_sign_count=key.sign_count,
                    require_user_verification=require_uv,
                )
            except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
                owner = key.user_id
                await db.rollback()
                await self._record_failure(owner, "passkey", client)
                raise refused from exc
            key.sign_count = verified.new_sign_count
            key.last_used_at = datetime.now(UTC)
            owner = key.user_id
            await db.commit()
        return owner

    async def _record_failure(self, user_id: uuid.UUID, method: str, client: ClientInfo) -> None:
        async with self.db_sessions() as db:
            record(db, OutboxEvent, schema.MFA_FAILED, user_id, {"method": method, "ip": client.ip})
            await db.commit()


def _challenge(stored: bytes | str) -> bytes:
    """A challenge as kept in Redis (hex) back to its bytes."""
    return bytes.fromhex(stored.decode() if isinstance(stored, bytes) else stored)


def _totp_context(user_id: uuid.UUID) -> bytes:
    return f"totp:{user_id}".encode()


def _same_handle(handle: object, user_id: uuid.UUID) -> bool:
    if not isinstance(handle, str):
        return False
    try:
        return hmac.compare_digest(base64url_to_bytes(handle), user_id.bytes)
    except (ValueError, TypeError):
        return False
