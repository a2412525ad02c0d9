"""The shared Redis client and the key namespace every service writes under."""

from __future__ import annotations

import redis.asyncio as aioredis

from foundation.shared.settings import ServiceSettings


def create_redis(settings: ServiceSettings, **overrides: object) -> aioredis.Redis:
    if not settings.redis_url:
        raise RuntimeError(
            "REDIS_URL is not set. Start the whole stack with `./pants run //:dev`, "
            "or point REDIS_URL at a Redis server."
        )
    options: dict[str, object] = {
        "decode_responses": False,
        "socket_connect_timeout": 2.0,
        "socket_timeout": 5.0,
        "health_check_interval": 30,
        "client_name": settings.service_name,
    }
    options.update(overrides)
    return aioredis.Redis.from_url(settings.redis_url, **options)  # type: ignore[arg-type]


class Keys:
    """Builds Redis keys under one prefix, so tests (and tenants) can share a server."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def __call__(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)
