"""How many messages the requests that anyone may make (forgot password, resend the
verification) can cause: per address and per client address, in fixed windows in Redis.

The counters and their script are the sign-in throttle's (services/login_throttle.py: one
script checks every counter and counts the request in all of them, or in none). The address
is counted by a hash of the normalised email whether or not an account has it, so the
answers say nothing about which emails have accounts:

- over the limit for the address: the request is answered as always (202) and no message is
  sent, so nobody can flood someone's inbox through us;
- over the limit for the client address: 429 ``too_many_requests`` with ``Retry-After``;
  it is about the client, not the account.

Redis away: not throttled, logged as an error (sign-in does the same).
"""

from __future__ import annotations

import hashlib
import math

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from foundation.auth_service.services.device_cookies import normalised_email
from foundation.auth_service.services.login_throttle import RESERVE, client_network
from foundation.shared.errors import TooManyRequests
from foundation.shared.logging import get_logger
from foundation.shared.redis import Keys

log = get_logger(__name__)


class MailThrottle:
    def __init__(
        self, redis: aioredis.Redis, keys: Keys, *, per_address: int, per_ip: int, window: int
    ) -> None:
        self.keys = keys
        self.per_address = per_address
        self.per_ip = per_ip
        self.window = window
        self._reserve = redis.register_script(RESERVE)

    async def allow(self, kind: str, email: str, ip: str) -> bool:
        """Count a request of ``kind`` for ``email``: True when its message may go, False
        when the address has had enough; raises ``TooManyRequests`` for the client."""
        address = hashlib.sha256(normalised_email(email).encode()).hexdigest()[:32]
        keys = [
            self.keys("auth", "mail", kind, "address", address),
            self.keys("auth", "mail", kind, "ip", client_network(ip)),
        ]
        try:
            refusing, wait_ms = await self._reserve(
                keys=keys, args=[self.window * 1000, self.per_address, self.per_ip]
            )
        except RedisError as exc:
            log.error("mail throttle unavailable", error=str(exc))
            return True
        if int(refusing) == 2:
            retry_after = max(1, math.ceil(int(wait_ms) / 1000))
            raise TooManyRequests(
                "Too many requests from this address. Try again later.",
                retry_after=retry_after,
                code="too_many_requests",
                headers={
                    "RateLimit-Policy": f'"{kind}-ip";q={self.per_ip};w={self.window}',
                    "RateLimit": f'"{kind}-ip";r=0;t={retry_after}',
                },
            )
        return int(refusing) == 0
