"""Sign-in with Google and Apple: accounts by (provider, subject), links, encrypted tokens.

- A callback brings either ``code`` + ``state`` + ``binding`` (web flow: the state is taken
  once from Redis, the binding must be the secret handed to the client that started the
  flow, the code is exchanged with the PKCE verifier, the id_token verified with the nonce),
  or ``id_token`` + ``nonce`` from a native app's SDK (verified the same way; the nonce must be
  one this service issued for the native path, and is accepted once).
- Users are found by (``provider``, ``sub``), never by email. A first sign-in creates the
  user with the provider's email only when the provider marks it verified; if any account
  already has that email the answer is 409 ``account_exists`` (sign in to it, then link).
- Provider access and refresh tokens are stored sealed (``foundation.auth.encryption``),
  bound to (provider, subject, kind) so a value copied to another row does not open.
- Unlinking never leaves an account with no way to sign in, and revokes the stored token
  at the provider (Apple requires it); so does ``revoke_provider_tokens`` on account deletion.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from foundation.auth.encryption import TokenCipher, TokenEncryptionError, token_cipher
from foundation.auth.oauth import (
    Identity,
    InvalidIdToken,
    OAuthProviders,
    OAuthSettings,
    OAuthStateStore,
    OpenIDProvider,
    PendingAuthorization,
    ProviderTokens,
    parse_apple_user,
)
from foundation.auth.oauth.pkce import new_secret
from foundation.auth.oauth.registry import KNOWN_PROVIDERS, UnknownProvider
from foundation.auth.oauth.state import digest
from foundation.auth_service.models import OAuthProvider, OutboxEvent
from foundation.auth_service.repository import oauth_providers as links
from foundation.auth_service.repository import users
from foundation.auth_service.services.email_verification import EmailVerification
from foundation.auth_service.services.sessions import ClientInfo, SessionService, TokenPair
from foundation.events import schema
from foundation.events.outbox import record
from foundation.shared.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from foundation.shared.logging import get_logger
from foundation.shared.redis import Keys

log = get_logger(__name__)

AMR_FEDERATED = ("fed",)  # the access tokens' amr: signed in at Google or Apple


class InvalidState(BadRequest):
    code = "invalid_state"
    title = "Invalid or expired sign-in state"


class BindingMissing(BadRequest):
    code = "binding_missing"
    title = "Sign-in binding missing"


class BindingMismatch(BadRequest):
    code = "binding_mismatch"
    title = "Sign-in started by another client"


class InvalidNonce(BadRequest):
    code = "invalid_nonce"
    title = "Invalid or expired nonce"


@dataclass(frozen=True)
class StartedAuthorization:
    """Where to send the user, and the flow's binding: only its holder may finish it."""

    url: str
    binding: str
    expires_in: int


@dataclass(frozen=True)
class CallbackData:
    """What a provider's callback or a native app sends (already shape-checked by the API)."""

    code: str | None = None
    state: str | None = None
    id_token: str | None = None
    nonce: str | None = None
    user: str | Mapping[str, Any] | None = None  # Apple, first authorization only
    error: str | None = None  # the provider's error (e.g. the user cancelled)
    binding: str | None = None  # web flow: the secret ``authorization_url`` gave its client


@dataclass(frozen=True)
class Verified:
    identity: Identity
    tokens: ProviderTokens | None
    name: str | None


def open_oauth(
    stack: AsyncExitStack,
    settings: OAuthSettings,
    redis: aioredis.Redis,
    sessions: SessionService,
    *,
    production: bool,
    key_prefix: str,
    email_verification: EmailVerification | None = None,
) -> OAuthService:
    """The service for the configured providers, their HTTP client closed with ``stack``. A
    token cipher is made only when a provider will use it (a development key otherwise)."""
    providers = OAuthProviders.from_settings(settings)
    stack.push_async_callback(providers.aclose)
    if not providers.names:
        log.info("no oauth provider configured: Google and Apple sign-in are off")
    cipher = None
    if providers.names:
        keys = settings.oauth_token_encryption_keys
        cipher = token_cipher(
            keys.get_secret_value() if keys else None, production=production, data_dir=settings.oauth_data_dir
        )
    return OAuthService(
        providers=providers,
        states=OAuthStateStore(redis, Keys(key_prefix), settings.oauth_state_ttl_seconds),
        cipher=cipher,
        sessions=sessions,
        redirect_uris=settings.oauth_redirect_uris,
        email_verification=email_verification,
    )


class OAuthService:
    def __init__(
        self,
        *,
        providers: OAuthProviders,
        states: OAuthStateStore,
        cipher: TokenCipher | None,
        sessions: SessionService,
        redirect_uris: Sequence[str],
        email_verification: EmailVerification | None = None,
    ) -> None:
        # Releases an address an unverified password account has held too long (below).
        self.email_verification = email_verification
        self.providers = providers
        self.states = states
        self.cipher = cipher
        self.sessions = sessions
        self.redirect_uris = frozenset(redirect_uris)

    # -- authorization request ---------------------------------------------------------------

    async def authorization_url(
        self, provider_name: str, redirect_uri: str, *, link_user_id: uuid.UUID | None = None
    ) -> StartedAuthorization:
        provider = self.providers.get(provider_name)
        if redirect_uri not in self.redirect_uris:  # exact match, as the providers do
            raise BadRequest("This redirect_uri is not on the allow-list.", code="redirect_uri_not_allowed")
        await provider.metadata()  # an unreachable provider fails here, before a state is stored
        nonce, verifier, binding = new_secret(), new_secret(), new_secret()
        state = await self.states.save(
            PendingAuthorization(provider.name, nonce, verifier, redirect_uri, link_user_id, digest(binding))
        )
        url = await provider.authorization_url(redirect_uri, state=state, nonce=nonce, code_verifier=verifier)
        return StartedAuthorization(url, binding, self.states.ttl_seconds)

    async def native_nonce(self, provider_name: str) -> tuple[str, int]:
        """A single-use nonce for a native app's sign-in, and how many seconds it stays valid."""
        provider = self.providers.get(provider_name)
        return await self.states.issue_nonce(provider.name), self.states.ttl_seconds

    # -- verifying a callback ----------------------------------------------------------------

    async def _verify(
        self, provider: OpenIDProvider, data: CallbackData, *, link_user_id: uuid.UUID | None
    ) -> Verified:
        apple_user = parse_apple_user(data.user) if provider.name == "apple" else None
        name = apple_user.name if apple_user else None
        if data.code or data.error:
            if not data.binding:  # checked first: a client that forgot it keeps its state
                raise BindingMissing(
                    "Send the binding the authorize answer gave (or its oauth_binding cookie)."
                )
            pending = await self.states.take(data.state or "")
            if pending is None or pending.provider != provider.name or pending.link_user_id != link_user_id:
                raise InvalidState("The sign-in state is unknown, used or expired; start again.")
            if not pending.bound_to(data.binding):
                raise BindingMismatch("This sign-in was started by another client; start again.")
            if data.error or not data.code:
                raise BadRequest(
                    f"{provider.name.capitalize()} did not authorize the sign-in.",
                    code="authorization_denied",
                )
            tokens = await provider.exchange_code(
                data.code, redirect_uri=pending.redirect_uri, code_verifier=pending.code_verifier
            )
            identity = await provider.verify_id_token(
                tokens.id_token, nonce=pending.nonce, access_token=tokens.access_token
            )
            return Verified(identity, tokens, name or identity.name)
        assert data.id_token  # the API accepts no other shape
        assert data.nonce
        identity = await provider.verify_id_token(data.id_token, nonce=data.nonce, native=True)
        if not await self.states.redeem_nonce(provider.name, data.nonce):
            raise InvalidNonce(
                f"This nonce was not issued by POST /auth/oauth/{provider.name}/nonce, "
                "was used already, or has expired; ask for a new one."
            )
        ttl = identity.expires_at - int(time.time()) + provider.leeway
        claims = identity.claims
        if not await self.states.claim_id_token(
            str(claims.get("iss")), identity.subject, str(claims.get("nonce")), ttl
        ):
            raise InvalidIdToken("This id_token was used already.")
        return Verified(identity, None, name or identity.name)

    # -- sign-in -----------------------------------------------------------------------------

    async def sign_in(
        self, db: AsyncSession, provider_name: str, data: CallbackData, client: ClientInfo
    ) -> TokenPair:
        provider = self.providers.get(provider_name)
        verified = await self._verify(provider, data, link_user_id=None)
        identity = verified.identity
        link = await links.by_subject(db, provider.name, identity.subject)
        if link is not None:
            user = await users.by_id(db, link.user_id)
            if user is None or not user.is_active:
                await db.rollback()
                raise Unauthorized("This account is disabled.", code="account_disabled")
            self._store_tokens(link, verified.tokens)
            await db.commit()
            return await self.sessions.start_session(
                user.id, user.roles or [], client, method=provider.name, amr=AMR_FEDERATED
            )

        if not identity.email or not identity.email_verified:
            raise Forbidden(
                f"{provider.name.capitalize()} did not share a verified email address for this account.",
                code="email_not_verified",
            )
        conflict = Conflict(
            "An account with this email already exists. Sign in to it, then link "
            f"{provider.name.capitalize()} from your account.",
            code="account_exists",
        )
        if self.email_verification is not None:
            # The provider vouches for the address; an unverified password account that has
            # held it past UNVERIFIED_EMAIL_HOLD_SECONDS gives it up (never a silent link).
            await self.email_verification.release_squatted(db, identity.email)
        if await users.by_email(db, identity.email) is not None:
            raise conflict
        try:
            user = await users.add(db, identity.email, None)
            user.display_name = verified.name
            row = await links.add(
                db,
                user_id=user.id,
                provider=provider.name,
                subject=identity.subject,
                **self._sealed(identity, verified.tokens),
            )
        except IntegrityError as exc:  # the same email or subject signed up at the same moment
            await db.rollback()
            raise conflict from exc
        record(db, OutboxEvent, schema.USER_REGISTERED, user.id, {"method": provider.name})
        record(
            db, OutboxEvent, schema.OAUTH_LINKED, user.id, {"provider": provider.name, "link_id": str(row.id)}
        )
        # The account exists on its own; the session is opened next (like a sign-in that follows
        # a registration), so the outbox holds registered and linked before logged in.
        await db.commit()
        return await self.sessions.start_session(
            user.id, user.roles or [], client, method=provider.name, amr=AMR_FEDERATED
        )

    # -- linking -----------------------------------------------------------------------------

    async def link(
        self, db: AsyncSession, provider_name: str, data: CallbackData, user_id: uuid.UUID
    ) -> OAuthProvider:
        provider = self.providers.get(provider_name)
        verified = await self._verify(provider, data, link_user_id=user_id)
        identity = verified.identity
        if await links.lock_user(db, user_id) is None:
            await db.rollback()
            raise NotFound("The account no longer exists.", code="user_not_found")
        row = await links.by_subject(db, provider.name, identity.subject)
        if row is not None and row.user_id != user_id:
            await db.rollback()
            raise Conflict(
                f"This {provider.name.capitalize()} account is linked to another account.",
                code="provider_account_in_use",
            )
        if row is None:
            if await links.for_user(db, user_id, provider.name):
                await db.rollback()
                raise Conflict(
                    f"Another {provider.name.capitalize()} account is linked already; unlink it first.",
                    code="provider_already_linked",
                )
            try:
                row = await links.add(
                    db,
                    user_id=user_id,
                    provider=provider.name,
                    subject=identity.subject,
                    **self._sealed(identity, verified.tokens),
                )
            except IntegrityError as exc:
                await db.rollback()
                raise Conflict(
                    "This account was linked at the same moment.", code="provider_account_in_use"
                ) from exc
            record(
                db,
                OutboxEvent,
                schema.OAUTH_LINKED,
                user_id,
                {"provider": provider.name, "link_id": str(row.id)},
            )
        else:
            self._store_tokens(row, verified.tokens)
        await db.commit()
        return row

    async def unlink(self, db: AsyncSession, provider_name: str, user_id: uuid.UUID) -> None:
        if provider_name not in KNOWN_PROVIDERS:
            raise UnknownProvider(f"There is no sign-in provider called {provider_name[:40]!r}.")
        user = await links.lock_user(db, user_id)
        rows = await links.for_user(db, user_id, provider_name) if user is not None else []
        if user is None or not rows:
            await db.rollback()
            raise NotFound(
                f"{provider_name.capitalize()} is not linked to this account.", code="provider_not_linked"
            )
        row = rows[0]
        if user.password_hash is None and await links.count_for_user(db, user_id) <= 1:
            await db.rollback()
            raise Conflict(
                "This is the account's only way to sign in: set a password or link another provider first.",
                code="last_sign_in_method",
            )
        token = self._revocable_token(row)
        await links.remove(db, row.id)
        record(
            db,
            OutboxEvent,
            schema.OAUTH_UNLINKED,
            user_id,
            {"provider": provider_name, "link_id": str(row.id)},
        )
        await db.commit()
        if token:
            await self._revoke(provider_name, *token, user_id=user_id)

    async def revoke_provider_tokens(self, db: AsyncSession, user_id: uuid.UUID) -> int:
        """Revoke every stored provider token of the user (call before deleting the account)."""
        revoked = 0
        for row in await links.for_user(db, user_id):
            token = self._revocable_token(row)
            if token and await self._revoke(row.provider, *token, user_id=user_id):
                revoked += 1
        return revoked

    async def _revoke(self, provider_name: str, token: str, hint: str, *, user_id: uuid.UUID) -> bool:
        """Best effort: the link is gone either way; a failure is logged for follow-up."""
        try:
            await self.providers.get(provider_name).revoke(token, hint)
        except Exception as exc:  # noqa: BLE001 - any failure is logged, never shown to the user
            log.warning(
                "oauth token revocation failed", provider=provider_name, user_id=str(user_id), error=str(exc)
            )
            return False
        return True

    # -- token storage -----------------------------------------------------------------------

    @staticmethod
    def _context(provider: str, subject: str, kind: str) -> bytes:
        return f"{provider}:{subject}:{kind}".encode()

    def _sealed(self, identity: Identity, tokens: ProviderTokens | None) -> dict[str, Any]:
        if tokens is None or self.cipher is None:
            return {"access_token": None, "refresh_token": None, "expires_at": None}
        seal = self.cipher.encrypt
        ctx = self._context
        p, s = identity.provider, identity.subject
        return {
            "access_token": (
                seal(tokens.access_token, ctx(p, s, "access_token")) if tokens.access_token else None
            ),
            "refresh_token": (
                seal(tokens.refresh_token, ctx(p, s, "refresh_token")) if tokens.refresh_token else None
            ),
            "expires_at": (
                datetime.now(UTC) + timedelta(seconds=tokens.expires_in) if tokens.expires_in else None
            ),
        }

    def _store_tokens(self, row: OAuthProvider, tokens: ProviderTokens | None) -> None:
        if tokens is None or self.cipher is None:
            return
        identity = Identity(row.provider, row.provider_id, None, False, 0)
        sealed = self._sealed(identity, tokens)
        row.access_token = sealed["access_token"]
        if sealed["refresh_token"]:  # providers send a refresh token only sometimes: keep the old one
            row.refresh_token = sealed["refresh_token"]
        row.expires_at = sealed["expires_at"]

    def _revocable_token(self, row: OAuthProvider) -> tuple[str, str] | None:
        """(plaintext, token_type_hint): the refresh token if stored, else the access token."""
        if self.cipher is None:
            return None
        for kind, sealed in (("refresh_token", row.refresh_token), ("access_token", row.access_token)):
            if sealed:
                try:
                    return (
                        self.cipher.decrypt(sealed, self._context(row.provider, row.provider_id, kind)),
                        kind,
                    )
                except TokenEncryptionError as exc:
                    log.error("stored oauth token does not decrypt", link_id=str(row.id), error=str(exc))
        return None


async def reencrypt_stored_tokens(db: AsyncSession, cipher: TokenCipher, batch: int = 200) -> int:
    """Seal every stored provider token with the newest key (after a key rotation); returns
    how many values moved. Runs in batches, each its own transaction; safe to run again."""
    moved, after = 0, None
    while rows := await links.with_tokens(db, after=after, limit=batch):
        for row in rows:
            for kind in ("access_token", "refresh_token"):
                value = getattr(row, kind)
                if value and cipher.needs_reencryption(value):
                    context = OAuthService._context(row.provider, row.provider_id, kind)
                    setattr(row, kind, cipher.reencrypt(value, context))
                    moved += 1
        after = rows[-1].id
        await db.commit()
    return moved
