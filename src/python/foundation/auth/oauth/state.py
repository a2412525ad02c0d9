"""Server-side OAuth state: what a callback needs, kept in Redis for a few minutes, used once.

- Web flow: ``save`` stores the nonce, PKCE verifier, redirect URI, provider, (when linking)
  the signed-in user and the hash of the flow's *binding* under a fresh random ``state``;
  ``take`` returns it at most once (``GETDEL``), so a replayed or forged callback finds
  nothing. The binding is a second secret handed only to the client that started the flow
  (RFC 9700 section 4.7: a code and state are redeemable only by it): ``bound_to`` compares
  what a callback presents with the stored hash in constant time.
- Native apps: ``issue_nonce`` hands out a random nonce that the app passes to the
  provider's SDK; ``redeem_nonce`` accepts it once, so an id_token bound to it is accepted
  once, and an id_token whose nonce we never issued for the native path (a web flow's, one an
  app made up) is refused. ``claim_id_token`` also remembers each accepted token by issuer,
  subject and nonce claim until it expires.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis

from foundation.auth.oauth.pkce import new_secret
from foundation.shared.redis import Keys

DEFAULT_TTL_SECONDS = 600
_STATE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")


def digest(value: str) -> str:
    """SHA-256, hex: what the store keeps of a binding or nonce instead of the value."""
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class PendingAuthorization:
    provider: str
    nonce: str
    code_verifier: str
    redirect_uri: str
    link_user_id: uuid.UUID | None = None
    binding_hash: str = ""

    def bound_to(self, binding: str | None) -> bool:
        """Whether ``binding`` is the secret of the client that started this flow."""
        if not binding or not self.binding_hash:
            return False
        return hmac.compare_digest(digest(binding).encode(), self.binding_hash.encode())

    def to_json(self) -> str:
        return json.dumps(
            {
                "provider": self.provider,
                "nonce": self.nonce,
                "code_verifier": self.code_verifier,
                "redirect_uri": self.redirect_uri,
                "link_user_id": str(self.link_user_id) if self.link_user_id else None,
                "binding_hash": self.binding_hash,
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> PendingAuthorization:
        data = json.loads(raw)
        link = data.get("link_user_id")
        return cls(
            provider=data["provider"],
            nonce=data["nonce"],
            code_verifier=data["code_verifier"],
            redirect_uri=data["redirect_uri"],
            link_user_id=uuid.UUID(link) if link else None,
            binding_hash=str(data.get("binding_hash") or ""),
        )


class OAuthStateStore:
    def __init__(self, redis: aioredis.Redis, keys: Keys, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> None:
        self._redis = redis
        self._keys = keys
        self.ttl_seconds = ttl_seconds

    def _state_key(self, state: str) -> str:
        return self._keys("auth", "oauth", "state", state)

    def _nonce_key(self, provider: str, nonce: str) -> str:
        return self._keys("auth", "oauth", "native-nonce", provider, digest(nonce))

    async def save(self, pending: PendingAuthorization) -> str:
        """Store ``pending`` under a new random state and return the state."""
        state = new_secret()
        await self._redis.set(self._state_key(state), pending.to_json(), ex=self.ttl_seconds, nx=True)
        return state

    async def take(self, state: str) -> PendingAuthorization | None:
        """The pending authorization for ``state``, once; None when unknown, used or expired."""
        if not _STATE.match(state):
            return None
        raw = await self._redis.getdel(self._state_key(state))
        return PendingAuthorization.from_json(raw) if raw else None

    async def issue_nonce(self, provider: str) -> str:
        """A new nonce for a native sign-in with ``provider``, valid for ``ttl_seconds``."""
        nonce = new_secret()
        await self._redis.set(self._nonce_key(provider, nonce), b"1", ex=self.ttl_seconds, nx=True)
        return nonce

    async def redeem_nonce(self, provider: str, nonce: str) -> bool:
        """True once for a nonce ``issue_nonce`` gave out for ``provider`` and that has not expired."""
        if not _STATE.match(nonce):
            return False
        return bool(await self._redis.getdel(self._nonce_key(provider, nonce)))

    async def claim_id_token(self, issuer: str, subject: str, nonce_claim: str, ttl_seconds: int) -> bool:
        """True the first time an id_token with these claims is presented (until it expires)."""
        key = self._keys("auth", "oauth", "id-token", digest(f"{issuer}\n{subject}\n{nonce_claim}"))
        return bool(await self._redis.set(key, b"1", ex=max(1, ttl_seconds), nx=True))
