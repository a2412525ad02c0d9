"""A provider's signing keys (its JWKS), fetched over HTTP and cached.

Keys are looked up by ``kid``. An unknown ``kid`` (the provider rotated its keys) triggers one
refetch, at most once per ``min_refresh_interval`` so a flood of forged ``kid`` values cannot
make us hammer the provider; the whole set is also refreshed once it is ``max_age`` old.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet


class UnknownSigningKey(LookupError):
    """No key with that ``kid``, even after a refetch."""


class JwksUnavailable(RuntimeError):
    """The JWKS could not be fetched or parsed."""


class JwksCache:
    def __init__(
        self,
        http: httpx.AsyncClient,
        url: Callable[[], Awaitable[str]],
        *,
        min_refresh_interval: float = 30.0,
        max_age: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._url = url
        self._min_refresh_interval = min_refresh_interval
        self._max_age = max_age
        self._clock = clock
        self._keys: dict[str, Key] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetch_count = 0

    async def key_for(self, kid: str) -> Key:
        now = self._clock()
        if self._fetched_at is None or now - self._fetched_at >= self._max_age:
            await self._refresh(only_if_fetched_before=now)
        key = self._keys.get(kid)
        if (
            key is None
            and self._fetched_at is not None
            and now - self._fetched_at >= self._min_refresh_interval
        ):
            await self._refresh(only_if_fetched_before=now - self._min_refresh_interval)
            key = self._keys.get(kid)
        if key is None:
            raise UnknownSigningKey(kid)
        return key

    async def _refresh(self, only_if_fetched_before: float) -> None:
        async with self._lock:
            # Someone else refreshed while we waited for the lock: use their result.
            if self._fetched_at is not None and self._fetched_at > only_if_fetched_before:
                return
            url = await self._url()
            try:
                response = await self._http.get(url, headers={"Accept": "application/json"})
                response.raise_for_status()
                key_set = KeySet.import_key_set(response.json())
            except (httpx.HTTPError, ValueError, KeyError, TypeError, JoseError) as exc:
                raise JwksUnavailable(f"could not load the JWKS from {url}: {exc}") from exc
            self._keys = {str(key.kid): key for key in key_set if key.kid}
            self._fetched_at = self._clock()
            self.fetch_count += 1
