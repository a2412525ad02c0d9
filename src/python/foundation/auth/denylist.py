"""Revoked sessions, kept in Redis until their last access token has expired.

auth-service adds a session id when a session ends; every verifier checks it, so a revoked
session's access tokens stop working within a request, not after their 15 minutes.
"""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis


class SessionDenyList:
    def __init__(self, redis: aioredis.Redis, prefix: str = "") -> None:
        self.redis = redis
        self.prefix = prefix

    def key(self, session_id: uuid.UUID) -> str:
        return f"{self.prefix}auth:denied-session:{session_id}"

    async def deny(self, session_id: uuid.UUID, ttl_seconds: int) -> None:
        await self.redis.set(self.key(session_id), b"1", ex=max(1, int(ttl_seconds)))

    async def is_denied(self, session_id: uuid.UUID) -> bool:
        return bool(await self.redis.exists(self.key(session_id)))
