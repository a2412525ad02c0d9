"""Exact rate limits in Redis: a sliding log per key, checked and updated in one Lua script.

Why not fastapi-limiter + pyrate-limiter's RedisBucket as they are (see docs/gateway.md):
the bucket's script takes timestamps from each process's clock (replicas disagree), answers
only yes/no (no remaining count for the RateLimit headers, no exact retry time), and the
limiter needs a bucket object per key; fastapi-limiter is a per-route dependency that scans
every route per request and trusts the first ``X-Forwarded-For``. This keeps the bucket's
algorithm (a sorted set of admitted requests, ``ZCOUNT`` over the window, atomic in Lua) and
adds what the gateway needs: Redis's own clock, the remaining count and the exact wait.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
from dataclasses import dataclass

from foundation.shared.redis_pipe import RedisPipe

# KEYS[1] the log; ARGV: limit, window (ms), unique member. Returns {admitted, remaining, wait_ms}
# where wait_ms is when the oldest admitted request leaves the window (a slot frees up).
# An optional KEYS[2] is the caller's session deny-list entry: when it exists the request is
# not counted and {-1, 0, 0} comes back (the deny-list check costs no second round trip).
SLIDING_LOG = """
if #KEYS > 1 and redis.call('EXISTS', KEYS[2]) == 1 then
  return {-1, 0, 0}
end
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local admitted = 0
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  count = count + 1
  admitted = 1
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = window
if oldest[2] then
  wait = tonumber(oldest[2]) + window - now
end
return {admitted, limit - count, wait}
"""
# Redis names scripts by their SHA-1 (EVALSHA); a name, not a security measure.
SLIDING_LOG_SHA = hashlib.sha1(SLIDING_LOG.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True, slots=True)
class Quota:
    name: str  # the policy name in the RateLimit headers: "user", "anonymous", "login", ...
    limit: int
    window: int  # seconds


@dataclass(frozen=True, slots=True)
class Decision:
    quota: Quota
    admitted: bool
    remaining: int
    reset: int  # seconds until a slot frees up (ceil), >= 1 when refused
    session_denied: bool = False  # the deny key given to ``hit`` exists: nothing was counted

    def headers(self) -> list[tuple[bytes, bytes]]:
        """IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers), plus Retry-After on 429."""
        name = self.quota.name
        out = [
            (b"ratelimit-policy", f'"{name}";q={self.quota.limit};w={self.quota.window}'.encode()),
            (b"ratelimit", f'"{name}";r={self.remaining};t={self.reset}'.encode()),
        ]
        if not self.admitted:
            out.append((b"retry-after", str(self.reset).encode()))
        return out


class RedisRateLimiter:
    def __init__(self, redis: RedisPipe) -> None:
        self.redis = redis  # bounds each call by its call_timeout (see GatewayRuntime)
        self._member_prefix = f"{os.getpid()}-{os.urandom(4).hex()}-"
        self._counter = itertools.count()

    async def hit(self, key: str, quota: Quota, deny_key: str | None = None) -> Decision:
        """Count one request against ``key`` unless ``deny_key`` (a revoked session) exists."""
        member = self._member_prefix + str(next(self._counter))
        keys = [key] if deny_key is None else [key, deny_key]
        admitted, remaining, wait_ms = await self.redis.evalsha(
            SLIDING_LOG_SHA, SLIDING_LOG, keys, [quota.limit, quota.window * 1000, member]
        )
        if int(admitted) < 0:
            return Decision(quota, False, 0, 0, session_denied=True)
        reset = (
            max(1, math.ceil(int(wait_ms) / 1000)) if not admitted else max(0, math.ceil(int(wait_ms) / 1000))
        )
        return Decision(quota, bool(admitted), max(0, int(remaining)), reset)
