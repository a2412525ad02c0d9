"""When a cached JWKS is fetched again: one policy for auth-service's keys and the providers'.

A JWKS cache that refetches only on an unknown ``kid`` never notices a key that was
*withdrawn*: tokens signed by it stay valid until the process restarts. ``RefreshingJwks``
therefore keeps a key set for a bounded time and then fetches it again, dropping every key no
longer published:

- A fetched set is used for the response's ``Cache-Control: max-age``, raised to at least
  ``min_age`` (1 min) and capped at ``max_age`` (5 min, also the default without the header).
  While it is fresh, a lookup is a dict read: no I/O on the hot path.
- The lookup that finds the set expired fetches it (others that arrive meanwhile keep using
  the set they have rather than queue behind the fetch), so a withdrawn key stops verifying
  at most ``max_age`` (plus one fetch) after it disappears.
- A failed fetch keeps the last good set (logged) and is retried every ``retry_interval``,
  for at most ``max_stale`` past the set's refresh time; after that lookups raise
  ``JwksUnavailable`` rather than trust keys nobody can confirm.
- An unknown ``kid`` (a key rotated in) refetches at most once per ``min_refresh_interval``,
  so made-up ``kid`` values cannot turn into a flood of fetches.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from foundation.shared.logging import get_logger

log = get_logger(__name__)

K = TypeVar("K")

_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-)?max-age\s*=\s*\"?(\d+)\"?", re.IGNORECASE)


class UnknownSigningKey(KeyError):
    """No published key has this ``kid`` (after a refetch, when one was allowed)."""


class JwksUnavailable(RuntimeError):
    """No key set that may be trusted: never fetched, or stale past ``max_stale``."""


class JwksFetchError(RuntimeError):
    """One fetch failed (network, status, or a document with no usable key)."""


@dataclass(frozen=True)
class JwksPolicy:
    max_age: float = 300.0  # seconds a fetched set is used at most (and without Cache-Control)
    min_age: float = 60.0  # a shorter Cache-Control max-age is raised to this
    min_refresh_interval: float = 30.0  # least seconds between refetches caused by unknown kids
    retry_interval: float = 5.0  # after a failed fetch, seconds before the next try
    max_stale: float = 3600.0  # seconds past its refresh time a set serves while fetches fail

    def __post_init__(self) -> None:
        if self.max_age <= 0 or self.min_age < 0 or self.max_stale < 0:
            raise ValueError("JWKS ages must be positive")

    def ttl(self, cache_control_max_age: float | None) -> float:
        """How long a set fetched with this ``max-age`` is used."""
        wanted = self.max_age if cache_control_max_age is None else cache_control_max_age
        return max(min(self.min_age, self.max_age), min(wanted, self.max_age))


def cache_control_max_age(headers: Mapping[str, str]) -> float | None:
    """``max-age`` (or ``s-maxage``) of a ``Cache-Control`` header; 0 for no-cache/no-store."""
    value = headers.get("cache-control") or ""
    if re.search(r"\bno-(?:cache|store)\b", value, re.IGNORECASE):
        return 0.0
    match = _MAX_AGE.search(value)
    return float(match.group(1)) if match else None


@dataclass(frozen=True)
class FetchedJwks(Generic[K]):
    keys: dict[str, K]
    max_age: float | None  # from Cache-Control, when the answer had one


class RefreshingJwks(Generic[K]):
    """A key set by ``kid``, kept fresh by ``fetch`` under ``policy`` (see the module text).

    ``fetch`` returns the parsed set or raises ``JwksFetchError``; ``what`` names the set in
    logs. ``clock`` is monotonic seconds (tests pass their own)."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[FetchedJwks[K]]],
        *,
        policy: JwksPolicy,
        what: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.policy = policy
        self._what = what
        self._clock = clock
        self._keys: dict[str, K] | None = None
        self._fetched_at = -math.inf  # last good fetch
        self._ttl = policy.max_age
        self._attempted_at = -math.inf  # last fetch, good or not
        self._failing = False
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key_for(self, kid: str) -> K:
        now = self._clock()
        if self._due(now) and (self._keys is None or not self._lock.locked()):
            await self._refresh(now)
        key = self._usable(now).get(kid)
        if key is None and now - self._attempted_at >= self.policy.min_refresh_interval:
            await self._refresh(now)
            key = self._usable(now).get(kid)
        if key is None:
            raise UnknownSigningKey(kid)
        return key

    def _due(self, now: float) -> bool:
        if self._failing and now - self._attempted_at < self.policy.retry_interval:
            return False
        return self._keys is None or now - self._fetched_at >= self._ttl

    def _usable(self, now: float) -> dict[str, K]:
        if self._keys is None:
            raise JwksUnavailable(f"the {self._what} could not be fetched yet")
        if now - self._fetched_at > self._ttl + self.policy.max_stale:
            raise JwksUnavailable(f"the {self._what} is stale and could not be fetched again")
        return self._keys

    async def _refresh(self, requested_at: float) -> None:
        async with self._lock:
            if self._attempted_at >= requested_at:
                return  # fetched (or tried) while this caller waited: use that result
            self._attempted_at = self._clock()
            self.fetches += 1
            try:
                fetched = await self._fetch()
                if not fetched.keys:
                    raise JwksFetchError("the document holds no usable key")
            except JwksFetchError as exc:
                self._failing = True
                log.warning(
                    "jwks refresh failed; keeping the last good keys",
                    jwks=self._what,
                    error=str(exc),
                    keys_age_seconds=(
                        round(self._attempted_at - self._fetched_at, 1) if self._keys is not None else None
                    ),
                )
                return
            if self._failing:
                log.info("jwks refresh recovered", jwks=self._what)
            self._keys = fetched.keys
            self._fetched_at = self._attempted_at
            self._ttl = self.policy.ttl(fetched.max_age)
            self._failing = False
