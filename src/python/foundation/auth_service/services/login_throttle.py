"""Failed-login throttling in Redis: per account and per client address.

Fixed windows: the first failure starts a window of ``window`` seconds; after ``limit``
failures in it, further attempts answer 429 with ``Retry-After`` until the window ends. A
refused attempt is not counted (it cannot extend the wait), so the real owner is never
locked out for longer than one window, and a successful login clears the account's count.
The account key is a hash of the normalised email, the same whether or not the account
exists (no enumeration), and keeps emails out of Redis.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from foundation.shared.errors import TooManyRequests
from foundation.shared.logging import get_logger
from foundation.shared.redis import Keys

log = get_logger(__name__)


@dataclass(frozen=True)
class Limit:
    name: str
    key: str
    limit: int


class LoginThrottle:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        per_account: int,
        per_ip: int,
        window: int,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.per_account = per_account
        self.per_ip = per_ip
        self.window = window

    def _limits(self, email: str, ip: str) -> tuple[Limit, Limit]:
        account = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
        return (
            Limit("login-account", self.keys("auth", "login-failures", "account", account), self.per_account),
            Limit("login-ip", self.keys("auth", "login-failures", "ip", ip), self.per_ip),
        )

    async def check(self, email: str, ip: str) -> int:
        """Raise ``TooManyRequests`` when the account or the address has failed too often;
        else return the account's failures in the current window."""
        limits = self._limits(email, ip)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for limit in limits:
                    pipe.get(limit.key)
                    pipe.pttl(limit.key)
                values = await pipe.execute()
        except RedisError as exc:
            # Fail open: Redis being down must not stop every sign-in; it is logged loudly.
            log.error("login throttle unavailable", error=str(exc))
            return 0
        for index, limit in enumerate(limits):
            count, pttl = values[2 * index], values[2 * index + 1]
            if count is not None and int(count) >= limit.limit and pttl > 0:
                retry_after = max(1, math.ceil(pttl / 1000))
                raise TooManyRequests(
                    "Too many failed sign-in attempts. Try again later.",
                    retry_after=retry_after,
                    code="too_many_attempts",
                    headers={
                        "RateLimit-Policy": f'"{limit.name}";q={limit.limit};w={self.window}',
                        "RateLimit": f'"{limit.name}";r=0;t={retry_after}',
                    },
                )
        return int(values[0] or 0)

    async def record_failure(self, email: str, ip: str) -> None:
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                for limit in self._limits(email, ip):
                    pipe.set(limit.key, 0, ex=self.window, nx=True)
                    pipe.incr(limit.key)
                await pipe.execute()
        except RedisError as exc:
            log.error("login throttle unavailable", error=str(exc))

    async def clear_account(self, email: str) -> None:
        try:
            await self.redis.delete(self._limits(email, "-")[0].key)
        except RedisError as exc:
            log.error("login throttle unavailable", error=str(exc))
