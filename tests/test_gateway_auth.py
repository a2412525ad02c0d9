"""Tokens are checked at the edge: missing, expired, wrong audience, revoked, rotated keys."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
import redis.asyncio as aioredis

from foundation.auth.denylist import SessionDenyList
from foundation.gateway.app import create_app
from tests.helpers.auth import TEST_AUDIENCE, TEST_ISSUER, TestSigner, bearer
from tests.helpers.gateway_stack import FakeService, gateway_settings, read_http_answer, serve_asgi


@dataclass
class Stack:
    url: str
    auth: FakeService
    history: FakeService
    signer: TestSigner
    client: aiohttp.ClientSession


@pytest.fixture()
async def stack(redis_url: str, redis_prefix: str, request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    """The gateway verifying against the JWKS that a stand-in auth-service serves."""
    overrides = {"jwks_refresh_interval": 0, **getattr(request, "param", {})}
    signer = TestSigner()
    async with FakeService("auth") as auth, FakeService("history") as history:
        auth.jwks = signer.jwks
        settings = gateway_settings(
            redis_url,
            redis_prefix,
            auth=auth.url,
            history=history.url,
            stats=history.url,
            jwt_issuer=TEST_ISSUER,
            jwt_audience=TEST_AUDIENCE,
            **overrides,
        )
        async with serve_asgi(create_app(settings)) as url, aiohttp.ClientSession() as client:
            yield Stack(url, auth, history, signer, client)


async def get(
    stack: Stack, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], dict[str, object]]:
    async with stack.client.get(stack.url + path, headers=headers or {}) as response:
        return response.status, dict(response.headers), await response.json(content_type=None)


async def test_valid_token_reaches_the_service(stack: Stack) -> None:
    status, _, body = await get(stack, "/history", bearer(stack.signer.issue()))
    assert status == 200
    assert body["service"] == "history"


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_token"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "missing_token"),
        ({"Authorization": "Bearer "}, "missing_token"),
        ({"Authorization": "Bearer not.a.jwt"}, "invalid_token"),
    ],
)
async def test_missing_or_malformed_token_is_a_401_problem(
    stack: Stack, headers: dict[str, str], code: str
) -> None:
    status, response_headers, body = await get(stack, "/history", headers)
    assert status == 401
    assert response_headers["WWW-Authenticate"] == "Bearer"
    assert response_headers["Content-Type"] == "application/problem+json"
    assert body["code"] == code
    assert not stack.history.requests


async def test_expired_token_is_refused_as_expired(stack: Stack) -> None:
    status, _, body = await get(stack, "/history", bearer(stack.signer.issue(ttl=-10)))
    assert status == 401
    assert body["code"] == "token_expired"


async def test_token_for_another_audience_or_issuer_is_refused(stack: Stack) -> None:
    for token in (
        stack.signer.issue(audience="another-api"),
        stack.signer.issue(issuer="https://evil.example"),
    ):
        status, _, body = await get(stack, "/stats/me", bearer(token))
        assert status == 401
        assert body["code"] == "invalid_token"
    assert not stack.history.requests


async def test_token_signed_by_an_unpublished_key_is_refused(stack: Stack) -> None:
    stranger = TestSigner()
    status, _, body = await get(stack, "/history", bearer(stranger.issue()))
    assert status == 401
    assert body["code"] == "invalid_token"


@pytest.mark.parametrize(
    "stack",
    [{}, {"rate_limit_enabled": False}],  # checked in the rate-limit script, or on its own
    indirect=True,
    ids=["with-rate-limits", "without-rate-limits"],
)
async def test_revoked_session_is_refused(stack: Stack, redis_url: str, redis_prefix: str) -> None:
    session = uuid.uuid4()
    token = stack.signer.issue(session_id=session)
    assert (await get(stack, "/history", bearer(token)))[0] == 200
    redis = aioredis.Redis.from_url(redis_url)
    try:
        await SessionDenyList(redis, redis_prefix).deny(session, 60)
    finally:
        await redis.aclose()
    status, _, body = await get(stack, "/history", bearer(token))
    assert status == 401
    assert body["code"] == "session_revoked"


async def test_rotated_key_with_unknown_kid_is_fetched_without_a_restart(stack: Stack) -> None:
    assert (await get(stack, "/history", bearer(stack.signer.issue())))[0] == 200
    fetches = stack.auth.jwks_fetches
    successor = TestSigner()
    stack.auth.jwks = {"keys": [stack.signer.public_jwk, successor.public_jwk]}
    status, _, _ = await get(stack, "/history", bearer(successor.issue()))
    assert status == 200
    assert stack.auth.jwks_fetches == fetches + 1
    # The old key still works during the rotation, without another fetch.
    assert (await get(stack, "/history", bearer(stack.signer.issue())))[0] == 200
    assert stack.auth.jwks_fetches == fetches + 1


@pytest.mark.parametrize("stack", [{"jwks_refresh_interval": 60}], indirect=True)
async def test_made_up_kids_cannot_turn_into_a_flood_of_jwks_fetches(stack: Stack) -> None:
    assert (await get(stack, "/history", bearer(stack.signer.issue())))[0] == 200
    for _ in range(5):
        token = stack.signer.issue(headers={"kid": uuid.uuid4().hex})
        assert (await get(stack, "/history", bearer(token)))[0] == 401
    assert stack.auth.jwks_fetches <= 2


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/auth/register"),
        ("POST", "/auth/login"),
        ("POST", "/auth/refresh"),
        ("POST", "/auth/logout"),
        ("GET", "/auth/oauth/google/authorize"),
        ("POST", "/auth/oauth/apple/callback"),
        ("GET", "/auth/.well-known/jwks.json"),
    ],
)
async def test_public_routes_need_no_token(stack: Stack, method: str, path: str) -> None:
    async with stack.client.request(method, stack.url + path) as response:
        assert response.status == 200


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/auth/me"), ("GET", "/auth/login"), ("POST", "/auth/logout-all")]
)
async def test_other_auth_routes_need_a_token(stack: Stack, method: str, path: str) -> None:
    async with stack.client.request(method, stack.url + path) as response:
        assert response.status == 401
        assert (await response.json(content_type=None))["code"] == "missing_token"


@pytest.mark.parametrize("method", ["TRACE", "TRACK", "PROPFIND", "FOO"])
async def test_unsupported_methods_are_a_405_problem_before_authentication(stack: Stack, method: str) -> None:
    for path in ("/history", "/auth/login", "/auth/.well-known/jwks.json"):
        async with stack.client.request(method, stack.url + path) as response:
            assert response.status == 405, path
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["Allow"] == "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
            assert "WWW-Authenticate" not in response.headers
            assert (await response.json())["code"] == "method_not_allowed"
    assert not stack.auth.requests + stack.history.requests


async def test_connect_is_a_405_problem_not_a_tunnel(stack: Stack) -> None:
    host, port = stack.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"CONNECT /history HTTP/1.1\r\nhost: gateway\r\ncontent-length: 0\r\n\r\n")
        status, headers, body = await asyncio.wait_for(read_http_answer(reader), 5)
    finally:
        writer.close()
    assert status == 405
    assert headers[b"allow"] == b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
    assert json.loads(body)["code"] == "method_not_allowed"
    assert not stack.history.requests
