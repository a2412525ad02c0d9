from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from fastapi import FastAPI
from redis.exceptions import ConnectionError as RedisConnectionError

from foundation.shared.errors import install_error_handlers
from foundation.shared.redis import create_redis
from foundation.shared.settings import ServiceSettings
from tests.helpers.apps import serve_app


async def test_a_burst_wider_than_the_pool_waits_for_connections(redis_url: str) -> None:
    redis = create_redis(ServiceSettings(redis_url=redis_url, redis_max_connections=2))
    try:
        key = f"pool-test:{uuid.uuid4().hex}"
        answers = await asyncio.gather(*(redis.incr(key) for _ in range(100)))
        assert sorted(answers) == list(range(1, 101))
        # Idle and lent-out connections together: the pool never made more than its two.
        assert sum(count for count, _ in redis.connection_pool.get_connection_count()) <= 2
        await redis.delete(key)
    finally:
        await redis.aclose()


async def test_every_connection_busy_past_the_pool_timeout_is_a_503(
    redis_url: str, redis_prefix: str
) -> None:
    settings = ServiceSettings(redis_url=redis_url, redis_max_connections=1, redis_pool_timeout=0.2)
    redis = create_redis(settings)
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/count")
    async def count() -> dict[str, int]:
        return {"keys": int(await redis.exists(f"{redis_prefix}anything"))}

    async def hold_the_only_connection() -> None:
        assert await redis.blpop([f"{redis_prefix}never-pushed"], timeout=2) is None  # type: ignore[misc]

    try:
        holder = asyncio.create_task(hold_the_only_connection())
        await asyncio.sleep(0.1)  # the pool's only connection now waits in BLPOP
        started = time.monotonic()
        with pytest.raises(RedisConnectionError):
            await redis.ping()
        assert 0.15 <= time.monotonic() - started < 1.5
        async with serve_app(app) as client:
            answer = await client.get("/count")
        assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
        assert answer.json()["code"] == "redis_unavailable"
        await holder
        async with serve_app(app) as client:
            assert (await client.get("/count")).json() == {"keys": 0}
    finally:
        await redis.aclose()
