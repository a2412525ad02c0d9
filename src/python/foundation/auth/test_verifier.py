from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import jwt
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from fastapi import FastAPI

from foundation.auth.denylist import SessionDenyList
from foundation.auth.dependencies import AdminPrincipal, AuthState, CurrentPrincipal
from foundation.auth.jwks import JwksPolicy
from foundation.auth.keys import JwksKeySource, StaticKeySource, parse_jwks
from foundation.auth.verifier import TokenVerifier, build_verifier, service_verifier
from foundation.shared.errors import ServiceUnavailable, Unauthorized, install_error_handlers
from foundation.shared.settings import ServiceSettings
from tests.helpers.apps import serve_app
from tests.helpers.auth import TEST_AUDIENCE, TEST_ISSUER, TestSigner, bearer, test_verifier


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def expect_refused(verifier: TokenVerifier, token: str, code: str = "invalid_token") -> None:
    with pytest.raises(Unauthorized) as caught:
        await verifier.verify(token)
    assert caught.value.code == code


async def test_valid_token_gives_the_principal() -> None:
    signer = TestSigner()
    user, session = uuid.uuid4(), uuid.uuid4()
    principal = await test_verifier(signer).verify(signer.issue(user, session, roles=["admin"]))
    assert principal.user_id == user and principal.session_id == session
    assert principal.has_role("admin") and not principal.has_role("owner")


async def test_es256_tokens_are_accepted_too() -> None:
    signer = TestSigner(algorithm="ES256")
    assert (await test_verifier(signer).verify(signer.issue())).roles == frozenset()


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"audience": "someone-else"}, "invalid_token"),
        ({"issuer": "https://evil.example"}, "invalid_token"),
        ({"ttl": -5}, "token_expired"),
        ({"nbf": int(time.time()) + 600}, "invalid_token"),
        ({"headers": {"typ": "JWT"}}, "invalid_token"),
        ({"sub": "not-a-uuid"}, "invalid_token"),
        ({"roles": "admin"}, "invalid_token"),
    ],
)
async def test_wrong_claims_are_refused(overrides: dict[str, object], code: str) -> None:
    signer = TestSigner()
    await expect_refused(test_verifier(signer), signer.issue(**overrides), code)  # type: ignore[arg-type]


async def test_missing_required_claim_is_refused() -> None:
    signer = TestSigner()
    token = jwt.encode(
        {
            "iss": TEST_ISSUER,
            "aud": TEST_AUDIENCE,
            "sub": str(uuid.uuid4()),
            "exp": int(time.time()) + 60,
            "iat": int(time.time()),
            "jti": "x",
        },
        signer.private_key,
        algorithm="EdDSA",
        headers={"kid": signer.kid, "typ": "at+jwt"},
    )
    await expect_refused(test_verifier(signer), token)


async def test_alg_none_is_refused() -> None:
    signer = TestSigner()
    good = signer.issue()
    payload = good.split(".")[1]
    header = b64(json.dumps({"alg": "none", "typ": "at+jwt", "kid": signer.kid}).encode())
    await expect_refused(test_verifier(signer), f"{header}.{payload}.")


async def test_hmac_signed_with_the_public_key_is_refused() -> None:
    signer = TestSigner()
    # The classic key-confusion attack: HS256 with the public key as the shared secret.
    public_bytes = json.dumps(signer.public_jwk).encode()
    header = b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": signer.kid}).encode())
    claims = {
        "iss": TEST_ISSUER,
        "aud": TEST_AUDIENCE,
        "sub": str(uuid.uuid4()),
        "sid": str(uuid.uuid4()),
        "exp": int(time.time()) + 60,
        "iat": int(time.time()),
        "jti": "x",
    }
    signing_input = f"{header}.{b64(json.dumps(claims).encode())}"
    signature = b64(hmac.new(public_bytes, signing_input.encode(), hashlib.sha256).digest())
    forged = f"{signing_input}.{signature}"
    await expect_refused(test_verifier(signer), forged)


async def test_bad_signature_and_unknown_key_and_garbage_are_refused() -> None:
    signer, stranger = TestSigner(), TestSigner()
    verifier = test_verifier(signer)
    forged = stranger.issue(headers={"kid": signer.kid})
    await expect_refused(verifier, forged)
    await expect_refused(verifier, stranger.issue())
    await expect_refused(verifier, "not.a.token")
    await expect_refused(verifier, signer.issue(headers={"kid": ""}))


def test_unsafe_algorithms_cannot_be_configured() -> None:
    with pytest.raises(ValueError, match="unsafe"):
        TokenVerifier(StaticKeySource({"keys": []}), issuer="i", audience="a", algorithms=["EdDSA", "HS256"])


def test_jwks_parsing_skips_symmetric_private_and_broken_keys() -> None:
    signer = TestSigner()
    private = dict(signer.public_jwk, kid="leaked", d="AAAA")
    keys = parse_jwks(
        {
            "keys": [
                signer.public_jwk,
                {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
                private,
                {"kty": "OKP", "kid": "broken", "crv": "Ed25519", "x": "!!"},
            ]
        }
    )
    assert list(keys) == [signer.kid]


async def test_warm_cache_never_outlives_the_token() -> None:
    signer = TestSigner()
    verifier = test_verifier(signer)
    # ttl=2, not 1: claims are whole seconds, so a 1 s token could expire before its first check.
    token = signer.issue(ttl=2)
    first = await verifier.verify(token)
    assert await verifier.verify(token) is first  # served warm
    deadline = first.expires_at + 0.05
    while time.time() < deadline:
        await asyncio.sleep(0.05)
    await expect_refused(verifier, token, "token_expired")


@pytest.fixture()
async def jwks_server(unused_tcp_port: int) -> AsyncIterator[tuple[str, dict[str, object]]]:
    state: dict[str, object] = {"jwks": {"keys": []}, "hits": 0, "fail": False, "cache_control": None}

    async def handler(_: web.Request) -> web.Response:
        state["hits"] = int(state["hits"]) + 1  # type: ignore[call-overload]
        if state["fail"]:
            return web.Response(status=503)
        headers = {"Cache-Control": str(state["cache_control"])} if state["cache_control"] else {}
        return web.json_response(state["jwks"], headers=headers)

    app = web.Application()
    app.router.add_get("/jwks.json", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", unused_tcp_port)
    await site.start()
    yield f"http://127.0.0.1:{unused_tcp_port}/jwks.json", state
    await runner.cleanup()


async def test_jwks_source_refetches_once_on_unknown_kid_for_rotation(jwks_server) -> None:  # type: ignore[no-untyped-def]
    url, state = jwks_server
    old, new = TestSigner(), TestSigner()
    state["jwks"] = old.jwks
    source = JwksKeySource(url, min_refresh_interval=0.2)
    verifier = TokenVerifier(source, issuer=TEST_ISSUER, audience=TEST_AUDIENCE)
    try:
        await verifier.verify(old.issue())
        assert state["hits"] == 1
        state["jwks"] = {"keys": [old.public_jwk, new.public_jwk]}  # rotation at auth-service
        await asyncio.sleep(0.25)
        await verifier.verify(new.issue())
        assert state["hits"] == 2
        # Unknown kids cannot make it fetch more than once per interval.
        for _ in range(5):
            await expect_refused(verifier, TestSigner().issue())
        assert state["hits"] <= 3
        # auth-service down: the keys already known keep working.
        state["fail"] = True
        await asyncio.sleep(0.25)
        await expect_refused(verifier, TestSigner().issue())
        assert (await verifier.verify(old.issue())).roles == frozenset()
    finally:
        await source.aclose()


async def test_withdrawn_key_is_refused_after_the_refresh_interval(jwks_server) -> None:  # type: ignore[no-untyped-def]
    url, state = jwks_server
    old, new = TestSigner(), TestSigner()
    state["jwks"] = {"keys": [old.public_jwk, new.public_jwk]}
    source = JwksKeySource(url, policy=JwksPolicy(max_age=1.0, min_age=0.5))
    verifier = TokenVerifier(source, issuer=TEST_ISSUER, audience=TEST_AUDIENCE)
    try:
        remembered = old.issue()
        await verifier.verify(remembered)  # now in the warm cache
        state["jwks"] = {"keys": [new.public_jwk]}  # auth-service withdrew the old key
        await verifier.verify(remembered)  # fresh set: no fetch on the hot path
        assert state["hits"] == 1
        await asyncio.sleep(1.1)
        await expect_refused(verifier, remembered)  # the warm cache does not outlive the key
        await expect_refused(verifier, old.issue())
        assert state["hits"] == 2
        assert (await verifier.verify(new.issue())).roles == frozenset()
    finally:
        await source.aclose()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_jwks_refresh_honours_cache_control_within_bounds(jwks_server) -> None:  # type: ignore[no-untyped-def]
    url, state = jwks_server
    signer, clock = TestSigner(), FakeClock()
    state["jwks"], state["cache_control"] = signer.jwks, "public, max-age=30"  # auth-service's own
    source = JwksKeySource(url, clock=clock)  # defaults: refresh within [60 s, 300 s]
    verifier = TokenVerifier(source, issuer=TEST_ISSUER, audience=TEST_AUDIENCE)
    try:
        token = signer.issue()
        await verifier.verify(token)
        clock.now += 59
        await verifier.verify(token)
        assert state["hits"] == 1  # 30 s is raised to the 60 s floor
        clock.now += 2
        state["cache_control"] = None  # no Cache-Control: the 5 min default
        await verifier.verify(token)
        assert state["hits"] == 2
        clock.now += 299
        await verifier.verify(token)
        assert state["hits"] == 2
        clock.now += 2
        await verifier.verify(token)
        assert state["hits"] == 3
    finally:
        await source.aclose()


async def test_jwks_outage_keeps_the_last_good_keys_for_a_bounded_time(jwks_server) -> None:  # type: ignore[no-untyped-def]
    url, state = jwks_server
    signer, clock = TestSigner(), FakeClock()
    state["jwks"] = signer.jwks
    policy = JwksPolicy(max_age=60, retry_interval=5, max_stale=600)
    source = JwksKeySource(url, policy=policy, clock=clock)
    verifier = TokenVerifier(source, issuer=TEST_ISSUER, audience=TEST_AUDIENCE)
    try:
        await verifier.verify(signer.issue())
        state["fail"] = True
        clock.now += 61
        await verifier.verify(signer.issue())  # refresh failed (logged): last good set serves
        assert state["hits"] == 2
        clock.now += 1
        for _ in range(5):  # neither good nor forged kids retry before retry_interval
            await verifier.verify(signer.issue())
            await expect_refused(verifier, TestSigner().issue())
        assert state["hits"] == 2
        clock.now = 1_000 + 60 + 600 + 1  # beyond the staleness bound: refuse, do not guess
        with pytest.raises(ServiceUnavailable) as caught:
            await verifier.verify(signer.issue())
        assert (caught.value.status, caught.value.code) == (503, "keys_unavailable")
        state["fail"] = False
        clock.now += 5
        assert (await verifier.verify(signer.issue())).roles == frozenset()
    finally:
        await source.aclose()


async def test_jwks_unreachable_at_start_is_503_and_retried(jwks_server) -> None:  # type: ignore[no-untyped-def]
    url, state = jwks_server
    signer, clock = TestSigner(), FakeClock()
    state["jwks"], state["fail"] = signer.jwks, True
    source = JwksKeySource(url, policy=JwksPolicy(retry_interval=5), clock=clock)
    verifier = TokenVerifier(source, issuer=TEST_ISSUER, audience=TEST_AUDIENCE)
    try:
        for _ in range(3):
            with pytest.raises(ServiceUnavailable):
                await verifier.verify(signer.issue())
        assert state["hits"] == 1
        state["fail"] = False
        clock.now += 5
        assert (await verifier.verify(signer.issue())).roles == frozenset()
    finally:
        await source.aclose()


def test_build_verifier_needs_a_jwks_url() -> None:
    with pytest.raises(RuntimeError, match="JWKS_URL"):
        build_verifier(ServiceSettings())
    assert isinstance(build_verifier(ServiceSettings(jwks_url="http://127.0.0.1:1/jwks")), TokenVerifier)


async def test_dependencies_enforce_token_denylist_and_role(redis_url: str, redis_prefix: str) -> None:
    signer = TestSigner()
    redis = aioredis.Redis.from_url(redis_url)
    denylist = SessionDenyList(redis, redis_prefix)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[AuthState]:
        yield {"token_verifier": test_verifier(signer), "session_denylist": denylist}

    app = FastAPI(lifespan=lifespan)
    install_error_handlers(app)

    @app.get("/me")
    async def me(principal: CurrentPrincipal) -> dict[str, str]:
        return {"user_id": str(principal.user_id)}

    @app.get("/admin")
    async def admin(principal: AdminPrincipal) -> dict[str, str]:
        return {"ok": "yes"}

    user, session = uuid.uuid4(), uuid.uuid4()
    token = signer.issue(user, session)
    try:
        async with serve_app(app) as client:
            assert (await client.get("/me", headers=bearer(token))).json() == {"user_id": str(user)}
            missing = await client.get("/me")
            assert missing.status_code == 401 and missing.json()["code"] == "missing_token"
            assert missing.headers["www-authenticate"] == "Bearer"
            basic = await client.get("/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
            assert basic.json()["code"] == "missing_token"
            assert (await client.get("/admin", headers=bearer(token))).status_code == 403
            admin_token = signer.issue(roles=["admin"])
            assert (await client.get("/admin", headers=bearer(admin_token))).status_code == 200
            await denylist.deny(session, 60)
            revoked = await client.get("/me", headers=bearer(token))
            assert revoked.status_code == 401 and revoked.json()["code"] == "session_revoked"
            assert await redis.ttl(f"{redis_prefix}auth:denied-session:{session}") > 0
    finally:
        await redis.aclose()


async def test_service_verifier_refuses_everything_without_jwks_in_development_only() -> None:
    signer = TestSigner()
    refusing = service_verifier(ServiceSettings(jwks_url=None))
    await expect_refused(refusing, signer.issue())
    await refusing.aclose()  # a static key source has nothing to close
    with pytest.raises(RuntimeError, match="JWKS_URL"):
        service_verifier(
            ServiceSettings(jwks_url=None, environment="production", jwt_issuer="https://api.acme.io/auth")
        )
    fetching = service_verifier(ServiceSettings(jwks_url="http://127.0.0.1:1/jwks"))
    assert isinstance(fetching.keys, JwksKeySource)
    await fetching.aclose()
