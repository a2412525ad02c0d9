from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from foundation.auth.oauth.state import OAuthStateStore, PendingAuthorization, digest
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


def test_a_flow_is_bound_only_to_the_secret_it_was_started_with() -> None:
    binding = "b" * 43
    pending = PendingAuthorization("google", "n" * 43, "v" * 43, "https://app/cb", None, digest(binding))
    assert pending.bound_to(binding)
    assert not pending.bound_to("c" * 43)
    assert not pending.bound_to(None)
    assert not pending.bound_to(digest(binding))  # the stored hash is no key
    assert not PENDING.bound_to("")  # a flow saved without a binding matches nothing


async def test_the_binding_hash_survives_the_round_trip_and_the_binding_is_not_stored(
    store: OAuthStateStore, redis: aioredis.Redis, redis_prefix: str
) -> None:
    binding = "b" * 43
    pending = PendingAuthorization("google", "n" * 43, "v" * 43, "https://app/cb", None, digest(binding))
    state = await store.save(pending)
    raw = await redis.get(f"{redis_prefix}auth:oauth:state:{state}")
    assert raw is not None and binding.encode() not in raw
    taken = await store.take(state)
    assert taken is not None and taken.bound_to(binding)


async def test_a_native_nonce_works_once_for_its_provider_only(store: OAuthStateStore) -> None:
    nonce = await store.issue_nonce("apple")
    assert await store.redeem_nonce("google", nonce) is False
    assert await store.redeem_nonce("apple", nonce) is True
    assert await store.redeem_nonce("apple", nonce) is False


@pytest.mark.parametrize("nonce", ["made-up-by-the-app-0123456789", "short", "x" * 200, "../../etc"])
async def test_a_nonce_the_store_never_issued_is_refused(store: OAuthStateStore, nonce: str) -> None:
    assert await store.redeem_nonce("apple", nonce) is False


async def test_native_nonces_expire_with_the_state_ttl(
    store: OAuthStateStore, redis: aioredis.Redis, redis_prefix: str
) -> None:
    nonce = await store.issue_nonce("google")
    [key] = [k async for k in redis.scan_iter(f"{redis_prefix}auth:oauth:native-nonce:google:*")]
    assert 0 < await redis.ttl(key) <= 300
    assert nonce.encode() not in key  # kept as a hash


async def test_an_id_token_is_claimed_once_by_issuer_subject_and_nonce(store: OAuthStateStore) -> None:
    assert await store.claim_id_token("https://issuer", "sub-1", "nonce-claim", ttl_seconds=60) is True
    assert await store.claim_id_token("https://issuer", "sub-1", "nonce-claim", ttl_seconds=60) is False
    assert await store.claim_id_token("https://issuer", "sub-2", "nonce-claim", ttl_seconds=60) is True
    assert await store.claim_id_token("https://other", "sub-1", "nonce-claim", ttl_seconds=60) is True
