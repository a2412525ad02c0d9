"""Where verification keys come from: a JWKS document, fixed or fetched over HTTP.

``JwksKeySource`` caches a JWKS (auth-service's own, or a sign-in provider's) under
``foundation.auth.jwks``'s policy: it is fetched again every 1-5 minutes (``Cache-Control``),
so a withdrawn key stops verifying; a rotated-in ``kid`` is fetched at once (at most once per
``min_refresh_interval``, so made-up ``kid`` values cannot turn into a flood of fetches); an
outage keeps the last good keys for a bounded time.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import replace
from typing import Any, Protocol

import httpx
import jwt

from foundation.auth.jwks import (
    FetchedJwks,
    JwksFetchError,
    JwksPolicy,
    RefreshingJwks,
    cache_control_max_age,
)

ALLOWED_KEY_TYPES = frozenset({"OKP", "EC"})  # our own keys: Ed25519 and P-256
PROVIDER_KEY_TYPES = frozenset({"RSA", "EC"})  # Google's and Apple's; never "oct" (HMAC)


class KeySource(Protocol):
    async def key_for(self, kid: str) -> jwt.PyJWK:
        """The public key with this ``kid``; ``KeyError`` when there is none, and
        ``foundation.auth.jwks.JwksUnavailable`` when no key set can be trusted."""
        ...


def parse_jwks(jwks: dict[str, Any], key_types: Collection[str] = ALLOWED_KEY_TYPES) -> dict[str, jwt.PyJWK]:
    """The document's public signing keys of ``key_types``, by ``kid``; others are skipped."""
    keys: dict[str, jwt.PyJWK] = {}
    for entry in jwks.get("keys", []):
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid or entry.get("kty") not in key_types or "d" in entry:
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
    """A JWKS over HTTP, kept fresh by ``foundation.auth.jwks``'s policy.

    ``url``: the document's URL, or a coroutine function finding it (a provider's comes from
    its discovery document). ``key_types``: the ``kty`` values accepted. ``min_refresh_interval``
    is the policy's least time between refetches caused by unknown ``kid`` values.
    ``key_for`` raises ``KeyError`` (``UnknownSigningKey``) for a key that is not published,
    and ``JwksUnavailable`` when no key set may be trusted (never fetched, or stale past the
    policy's bound)."""

    def __init__(
        self,
        url: str | Callable[[], Awaitable[str]],
        *,
        min_refresh_interval: float | None = None,
        policy: JwksPolicy | None = None,
        key_types: Collection[str] = ALLOWED_KEY_TYPES,
        what: str = "auth-service JWKS",
        timeout: float = 3.0,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._key_types = frozenset(key_types)
        policy = policy or JwksPolicy()
        if min_refresh_interval is not None:
            policy = replace(policy, min_refresh_interval=min_refresh_interval)
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._owns_client = client is None
        self._keys: RefreshingJwks[jwt.PyJWK] = RefreshingJwks(
            self._fetch, policy=policy, what=what, clock=clock
        )

    @property
    def fetches(self) -> int:
        return self._keys.fetches

    async def key_for(self, kid: str) -> jwt.PyJWK:
        return await self._keys.key_for(kid)

    async def _fetch(self) -> FetchedJwks[jwt.PyJWK]:
        url = self._url if isinstance(self._url, str) else await self._url()
        try:
            response = await self._client.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            keys = parse_jwks(response.json(), self._key_types)
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            raise JwksFetchError(f"could not load the JWKS from {url}: {exc}") from exc
        return FetchedJwks(keys, cache_control_max_age(response.headers))

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
