"""Whether Redis is answering, shared by the rate limiter and the deny-list check.

After a failure the gateway stops asking Redis for ``retry_after`` seconds (each request
would otherwise wait for its own connection error) and applies the configured failure mode.
Failures are logged at most once per ``retry_after``; ``/health`` shows the state.
"""

from __future__ import annotations

import asyncio
import time

from redis.exceptions import RedisError

from foundation.shared.logging import get_logger

REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError)

log = get_logger(__name__)


class RedisStatus:
    def __init__(self, retry_after: float = 1.0) -> None:
        self.retry_after = retry_after
        self.down_since: float | None = None
        self.last_error: str | None = None
        self._skip_until = 0.0
        self._logged_at = float("-inf")

    @property
    def available(self) -> bool:
        return self.down_since is None or time.monotonic() >= self._skip_until

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = time.time()
        self.last_error = type(exc).__name__
        self._skip_until = now + self.retry_after
        if now - self._logged_at >= self.retry_after:
            self._logged_at = now
            log.warning("redis unavailable for rate limits and deny-list", error=repr(exc))

    def succeeded(self) -> None:
        if self.down_since is not None:
            log.info("redis available again")
        self.down_since = None
        self.last_error = None
