"""Server-side OAuth state: what a callback needs, kept in Redis for a few minutes, used once.

``save`` stores the nonce, PKCE verifier, redirect URI, provider and (when linking) the
signed-in user under a fresh random ``state``; ``take`` returns it at most once (``GETDEL``),
so a replayed or forged callback finds nothing. ``claim_nonce`` records a native app's nonce
until its id_token expires, so the same ``{id_token, nonce}`` cannot be replayed.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis

from foundation.auth.oauth.pkce import new_secret
from foundation.shared.redis import Keys

DEFAULT_TTL_SECONDS = 600
_STATE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")


@dataclass(frozen=True)
class PendingAuthorization:
    provider: str
    nonce: str
    code_verifier: str
    redirect_uri: str
    link_user_id: uuid.UUID | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "provider": self.provider,
                "nonce": self.nonce,
                "code_verifier": self.code_verifier,
                "redirect_uri": self.redirect_uri,
                "link_user_id": str(self.link_user_id) if self.link_user_id else None,
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
        )


class OAuthStateStore:
    def __init__(self, redis: aioredis.Redis, keys: Keys, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> None:
        self._redis = redis
        self._keys = keys
        self.ttl_seconds = ttl_seconds

    def _state_key(self, state: str) -> str:
        return self._keys("auth", "oauth", "state", state)

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

    async def claim_nonce(self, provider: str, nonce: str, ttl_seconds: int) -> bool:
        """True the first time ``nonce`` is presented for ``provider`` within ``ttl_seconds``."""
        digest = hashlib.sha256(nonce.encode()).hexdigest()
        key = self._keys("auth", "oauth", "nonce", provider, digest)
        return bool(await self._redis.set(key, b"1", ex=max(1, ttl_seconds), nx=True))
