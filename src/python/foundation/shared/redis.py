"""The shared Redis client and the key namespace every service writes under."""

from __future__ import annotations

import redis.asyncio as aioredis

from foundation.shared.redis_pipe import RedisPipe
from foundation.shared.settings import ServiceSettings

CONNECT_TIMEOUT = 2.0  # seconds
CALL_TIMEOUT = 5.0  # seconds, per socket operation (redis-py) or per call (RedisPipe)


def create_redis(settings: ServiceSettings, **overrides: object) -> aioredis.Redis:
    """The process's Redis client.

    Its pool blocks: when every one of its ``REDIS_MAX_CONNECTIONS`` connections is busy, a
    call waits up to ``REDIS_POOL_TIMEOUT`` seconds for one to come back. redis-py's default
    pool raises ``MaxConnectionsError`` at once instead (100 connections): a burst of requests
    each calling Redis (the session deny-list check did, before it moved to the pipe below)
    then failed by the hundred, each failure slower than the request it replaced, until the
    service spent all its time answering 500s.
    """
    options: dict[str, object] = {
        "decode_responses": False,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": CALL_TIMEOUT,
        "health_check_interval": 30,
        "client_name": settings.service_name,
        "max_connections": settings.redis_max_connections,
        "timeout": settings.redis_pool_timeout,
    }
    options.update(overrides)
    pool = aioredis.BlockingConnectionPool.from_url(_redis_url(settings), **options)
    return aioredis.Redis.from_pool(pool)  # closing the client closes its pool


def create_redis_pipe(
    settings: ServiceSettings, *, connect_timeout: float = CONNECT_TIMEOUT, call_timeout: float = CALL_TIMEOUT
) -> RedisPipe:
    """One pipelined connection for the calls every request makes (the session deny-list
    check, the gateway's rate-limit script): much cheaper per call than redis-py's client,
    and no pool to run out of."""
    return RedisPipe(_redis_url(settings), connect_timeout=connect_timeout, call_timeout=call_timeout)


def _redis_url(settings: ServiceSettings) -> str:
    if not settings.redis_url:
        raise RuntimeError(
            "REDIS_URL is not set. Start the whole stack with `./pants run //:dev`, "
            "or point REDIS_URL at a Redis server."
        )
    return settings.redis_url


class Keys:
    """Builds Redis keys under one prefix, so tests (and tenants) can share a server."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def __call__(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)
