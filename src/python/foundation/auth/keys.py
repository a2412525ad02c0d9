"""Where verification keys come from: a JWKS document, fixed or fetched over HTTP.

``JwksKeySource`` caches auth-service's JWKS and refetches it when a token names an unknown
``kid`` (at most once per ``min_refresh_interval``), so a key rotation never needs a restart
and a flood of tokens with made-up ``kid``s cannot turn into a flood of fetches.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

import httpx
import jwt

ALLOWED_KEY_TYPES = {"OKP", "EC"}  # Ed25519 and P-256; never "oct" (HMAC) or RSA here


class KeySource(Protocol):
    async def key_for(self, kid: str) -> jwt.PyJWK:
        """The public key with this ``kid``; ``KeyError`` when there is none."""
        ...


def parse_jwks(jwks: dict[str, Any]) -> dict[str, jwt.PyJWK]:
    keys: dict[str, jwt.PyJWK] = {}
    for entry in jwks.get("keys", []):
        kid = entry.get("kid")
        if not kid or entry.get("kty") not in ALLOWED_KEY_TYPES or "d" in entry:
            continue  # unusable, symmetric, or (wrongly published) private
        if entry.get("use", "sig") != "sig":
            continue
        try:
            keys[kid] = jwt.PyJWK(entry)
        except jwt.PyJWTError:
            continue
    return keys


class StaticKeySource:
    def __init__(self, jwks: dict[str, Any]) -> None:
        self._keys = parse_jwks(jwks)

    async def key_for(self, kid: str) -> jwt.PyJWK:
        return self._keys[kid]


class JwksKeySource:
    def __init__(
        self,
        url: str,
        *,
        min_refresh_interval: float = 30.0,
        timeout: float = 3.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url
        self.min_refresh_interval = min_refresh_interval
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._owns_client = client is None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key_for(self, kid: str) -> jwt.PyJWK:
        key = self._keys.get(kid)
        if key is not None:
            return key
        async with self._lock:
            if kid not in self._keys and time.monotonic() - self._fetched_at >= self.min_refresh_interval:
                await self._refresh()
        return self._keys[kid]

    async def _refresh(self) -> None:
        self._fetched_at = time.monotonic()
        self.fetches += 1
        try:
            response = await self._client.get(self.url)
            response.raise_for_status()
            self._keys = parse_jwks(response.json())
        except (httpx.HTTPError, ValueError):
            # Keep the keys we had: auth-service being briefly down must not fail every request.
            return

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
