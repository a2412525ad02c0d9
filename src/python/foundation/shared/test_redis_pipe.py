"""The gateway's pipelined Redis connection against a real Redis (and a silent one)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from foundation.shared.redis_pipe import RedisPipe
from tests.helpers.apps import closed_port_redis_url, silent_redis_url

ECHO = "return {ARGV[1], KEYS[1]}"


def sha(script: str) -> str:
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


async def test_concurrent_calls_share_one_connection_and_get_their_own_answers(redis_url: str) -> None:
    pipe = RedisPipe(redis_url, connect_timeout=1)
    try:
        answers = await asyncio.gather(*(pipe.evalsha(sha(ECHO), ECHO, [f"k{i}"], [i]) for i in range(200)))
        assert answers == [[str(i).encode(), f"k{i}".encode()] for i in range(200)]
        assert pipe._protocol is not None and not pipe._protocol.closed
    finally:
        await pipe.aclose()


async def test_an_unknown_script_is_sent_whole_once(redis_url: str) -> None:
    script = f"-- {uuid.uuid4().hex}\nreturn tonumber(ARGV[1]) + 1"
    pipe = RedisPipe(redis_url, connect_timeout=1)
    plain = aioredis.Redis.from_url(redis_url)
    try:
        assert await plain.script_exists(sha(script)) == [False]
        assert await pipe.evalsha(sha(script), script, [], [41]) == 42
        assert await plain.script_exists(sha(script)) == [True]
        assert await pipe.evalsha(sha(script), script, [], [1]) == 2
    finally:
        await pipe.aclose()
        await plain.aclose()


async def test_an_error_answer_raises_and_the_connection_stays(redis_url: str) -> None:
    failing = "return redis.error_reply('NOPE wrong')"
    pipe = RedisPipe(redis_url, connect_timeout=1)
    try:
        with pytest.raises(ResponseError, match="NOPE"):
            await pipe.evalsha(sha(failing), failing, [], [])
        assert await pipe.evalsha(sha(ECHO), ECHO, ["k"], ["v"]) == [b"v", b"k"]
    finally:
        await pipe.aclose()


async def test_user_password_and_database_from_the_url(redis_url: str) -> None:
    admin = aioredis.Redis.from_url(redis_url)
    user, password = f"gw-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    key = f"test:pipe:{uuid.uuid4().hex}"
    parts = urlsplit(redis_url)
    url = f"redis://{user}:{password}@{parts.hostname}:{parts.port}/3"
    setter = "redis.call('SET', KEYS[1], ARGV[1], 'EX', 60) return 1"
    await admin.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], keys=["*"], channels=["*"], commands=["+@all"]
    )
    pipe = RedisPipe(url, connect_timeout=1)
    wrong = RedisPipe(url.replace(password, "not-" + password), connect_timeout=1)
    database_3 = aioredis.Redis.from_url(f"redis://{parts.hostname}:{parts.port}/3")
    try:
        assert await pipe.evalsha(sha(setter), setter, [key], ["there"]) == 1
        assert await database_3.get(key) == b"there"
        assert await admin.get(key) is None  # database 0
        with pytest.raises(ResponseError, match="WRONGPASS|invalid"):
            await wrong.evalsha(sha(setter), setter, [key], ["x"])
    finally:
        await pipe.aclose()
        await wrong.aclose()
        await database_3.delete(key)
        await database_3.aclose()
        await admin.acl_deluser(user)
        await admin.aclose()


async def test_a_call_cut_short_drops_the_connection() -> None:
    async with silent_redis_url() as url:
        pipe = RedisPipe(url, connect_timeout=1)
        try:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await pipe.evalsha(sha(ECHO), ECHO, ["k"], ["v"])
            first = pipe._protocol
            assert first is not None and first.closed  # late answers can never be misread
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await pipe.evalsha(sha(ECHO), ECHO, ["k"], ["v"])
            assert pipe._protocol is not first  # a new connection was opened
        finally:
            await pipe.aclose()


async def test_call_timeout_fails_every_call_in_flight_and_drops_the_connection() -> None:
    async with silent_redis_url() as url:
        pipe = RedisPipe(url, connect_timeout=1, call_timeout=0.2)
        try:
            started = asyncio.get_running_loop().time()
            outcomes = await asyncio.gather(
                *(pipe.evalsha(sha(ECHO), ECHO, [f"k{i}"], [i]) for i in range(5)), return_exceptions=True
            )
            waited = asyncio.get_running_loop().time() - started
            # redis-py's TimeoutError (what every Redis caller handles) and the builtin one.
            assert all(isinstance(outcome, RedisTimeoutError) for outcome in outcomes), outcomes
            assert all(isinstance(outcome, TimeoutError) for outcome in outcomes), outcomes
            assert 0.15 < waited < 1.0
            first = pipe._protocol
            assert first is not None and first.closed
            with pytest.raises(TimeoutError):
                await pipe.evalsha(sha(ECHO), ECHO, ["k"], ["v"])
            assert pipe._protocol is not first  # a new connection was opened, and timed out too
        finally:
            await pipe.aclose()


async def test_call_timeout_leaves_answered_calls_alone(redis_url: str) -> None:
    pipe = RedisPipe(redis_url, connect_timeout=1, call_timeout=0.2)
    try:
        for _ in range(3):  # calls spread over more than one timeout: the timer re-arms
            answers = await asyncio.gather(*(pipe.evalsha(sha(ECHO), ECHO, ["k"], [i]) for i in range(50)))
            assert answers == [[str(i).encode(), b"k"] for i in range(50)]
            await asyncio.sleep(0.15)
        assert pipe._protocol is not None and not pipe._protocol.closed
    finally:
        await pipe.aclose()


async def test_nothing_listening_is_redis_pys_connection_error() -> None:
    pipe = RedisPipe(closed_port_redis_url(), connect_timeout=1)
    with pytest.raises(RedisConnectionError, match="cannot connect"):
        await pipe.evalsha(sha(ECHO), ECHO, ["k"], ["v"])
    with pytest.raises(RedisConnectionError):
        await pipe.exists("k")
    await pipe.aclose()


async def test_exists_answers_one_or_zero(redis_url: str) -> None:
    key = f"pipe-test:{uuid.uuid4().hex}"
    redis = aioredis.Redis.from_url(redis_url)
    pipe = RedisPipe(redis_url, connect_timeout=1, call_timeout=1)
    try:
        assert await pipe.exists(key) == 0
        await redis.set(key, b"1", ex=10)
        assert await pipe.exists(key) == 1
    finally:
        await pipe.aclose()
        await redis.aclose()
