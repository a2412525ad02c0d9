from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from foundation.auth.oauth.state import OAuthStateStore, PendingAuthorization
from foundation.shared.redis import Keys


@pytest.fixture()
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture()
def store(redis: aioredis.Redis, redis_prefix: str) -> OAuthStateStore:
    return OAuthStateStore(redis, Keys(redis_prefix), ttl_seconds=300)


PENDING = PendingAuthorization(
    provider="google", nonce="n" * 43, code_verifier="v" * 43, redirect_uri="https://app.example.com/cb"
)


async def test_state_is_returned_once(store: OAuthStateStore) -> None:
    state = await store.save(PENDING)
    assert len(state) >= 43
    assert await store.take(state) == PENDING
    assert await store.take(state) is None


async def test_linking_user_survives_the_round_trip(store: OAuthStateStore) -> None:
    user_id = uuid.uuid4()
    pending = PendingAuthorization("apple", "n" * 43, "v" * 43, "https://app.example.com/cb", user_id)
    assert (await store.take(await store.save(pending))) == pending


async def test_state_lives_under_the_prefix_with_a_few_minutes_ttl(
    store: OAuthStateStore, redis: aioredis.Redis, redis_prefix: str
) -> None:
    state = await store.save(PENDING)
    key = f"{redis_prefix}auth:oauth:state:{state}"
    assert 0 < await redis.ttl(key) <= 300


@pytest.mark.parametrize("state", ["", "short", "x" * 129, "../../etc", "a b c d e f g h i j k l"])
async def test_unknown_or_malformed_state_finds_nothing(store: OAuthStateStore, state: str) -> None:
    assert await store.take(state) is None


async def test_expired_state_finds_nothing(redis: aioredis.Redis, redis_prefix: str) -> None:
    store = OAuthStateStore(redis, Keys(redis_prefix), ttl_seconds=300)
    state = await store.save(PENDING)
    await redis.pexpire(f"{redis_prefix}auth:oauth:state:{state}", 1)
    key = f"{redis_prefix}auth:oauth:state:{state}"
    # Poll until Redis has expired it rather than sleeping a fixed time.
    for _ in range(200):
        if not await redis.exists(key):
            break
        await redis.ping()
    assert await store.take(state) is None


async def test_native_nonce_is_accepted_once(store: OAuthStateStore, redis: aioredis.Redis) -> None:
    assert await store.claim_nonce("apple", "raw-nonce", ttl_seconds=60) is True
    assert await store.claim_nonce("apple", "raw-nonce", ttl_seconds=60) is False
    assert await store.claim_nonce("google", "raw-nonce", ttl_seconds=60) is True
