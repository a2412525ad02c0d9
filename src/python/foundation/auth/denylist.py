"""Revoked sessions, kept in Redis until their last access token has expired.

auth-service adds a session id when a session ends; every verifier checks it, so a revoked
session's access tokens stop working within a request, not after their 15 minutes.
"""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

from foundation.shared.redis import create_redis_pipe
from foundation.shared.redis_pipe import RedisPipe
from foundation.shared.settings import ServiceSettings


class SessionDenyList:
    """``deny`` writes through ``redis``; ``is_denied``, called on every authenticated request,
    reads through ``reads`` when given (a pipelined connection, closed by ``aclose``)."""

    def __init__(self, redis: aioredis.Redis, prefix: str = "", *, reads: RedisPipe | None = None) -> None:
        self.redis = redis
        self.prefix = prefix
        self.reads = reads

    @classmethod
    def for_service(cls, settings: ServiceSettings, redis: aioredis.Redis) -> SessionDenyList:
        """A service's deny-list: written through ``redis``, read over a pipelined connection of
        its own (``aclose`` closes it)."""
        return cls(redis, settings.redis_key_prefix, reads=create_redis_pipe(settings))

    def key(self, session_id: uuid.UUID) -> str:
        return f"{self.prefix}auth:denied-session:{session_id}"

    async def deny(self, session_id: uuid.UUID, ttl_seconds: int) -> None:
        await self.redis.set(self.key(session_id), b"1", ex=max(1, int(ttl_seconds)))

    async def is_denied(self, session_id: uuid.UUID) -> bool:
        if self.reads is not None:
            return bool(await self.reads.exists(self.key(session_id)))
        return bool(await self.redis.exists(self.key(session_id)))

    async def aclose(self) -> None:
        if self.reads is not None:
            await self.reads.aclose()
