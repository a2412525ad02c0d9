"""The gateway forwards to the right service over real HTTP: paths, headers, bodies, errors."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from yarl import URL

from foundation.gateway.app import create_app
from tests.helpers.auth import TestSigner, bearer, test_verifier
from tests.helpers.gateway_stack import FakeService, closed_url, gateway_settings, serve_asgi


@dataclass
class Stack:
    url: str
    auth: FakeService
    history: FakeService
    stats: FakeService
    signer: TestSigner
    client: aiohttp.ClientSession

    def token(self, **claims: object) -> dict[str, str]:
        return bearer(self.signer.issue(**claims))  # type: ignore[arg-type]


@pytest.fixture()
async def stack(redis_url: str, redis_prefix: str, request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    overrides = getattr(request, "param", {})
    signer = TestSigner()
    async with FakeService("auth") as auth, FakeService("history") as history, FakeService("stats") as stats:
        settings = gateway_settings(
            redis_url, redis_prefix, auth=auth.url, history=history.url, stats=stats.url, **overrides
        )
        app = create_app(settings, token_verifier=test_verifier(signer))
        async with serve_asgi(app) as url, aiohttp.ClientSession(auto_decompress=False) as client:
            yield Stack(url, auth, history, stats, signer, client)


async def test_each_prefix_reaches_its_service_with_path_and_query_unchanged(stack: Stack) -> None:
    headers = stack.token()
    cases = [
        ("/auth/me", "auth"),
        ("/history", "history"),
        ("/history/items/a%20b?limit=5&cursor=x%2Fy", "history"),
        ("/stats/me?day=2026-01-01", "stats"),
    ]
    for path, service in cases:
        async with stack.client.get(URL(stack.url + path, encoded=True), headers=headers) as response:
            assert response.status == 200, await response.text()
            body = await response.json()
        assert body["service"] == service
        assert body["raw_path"] == path
    assert stack.history.requests[1]["path"] == "/history/items/a b"


async def test_unknown_prefix_is_a_404_problem_and_reaches_no_service(stack: Stack) -> None:
    async with stack.client.get(stack.url + "/admin/secrets", headers=stack.token()) as response:
        assert response.status == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert (await response.json())["code"] == "not_found"
    assert not stack.auth.requests + stack.history.requests + stack.stats.requests


async def test_dot_segments_are_refused_before_routing(stack: Stack) -> None:
    # /auth/oauth/ is public; ../me would otherwise reach a private route without a token.
    async with stack.client.get(URL(stack.url + "/auth/oauth/%2E%2E/me", encoded=True)) as response:
        assert response.status == 400
        assert (await response.json())["code"] == "invalid_path"
    assert not stack.auth.requests


async def test_hop_by_hop_headers_are_dropped_both_ways(stack: Stack) -> None:
    headers = {
        **stack.token(),
        "Connection": "keep-alive, X-Secret-Hop",
        "X-Secret-Hop": "1",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==",
        "X-Custom": "kept",
    }
    async with stack.client.get(stack.url + "/history", headers=headers) as response:
        seen = (await response.json())["headers"]
    for dropped in ("x-secret-hop", "keep-alive", "te", "proxy-authorization"):
        assert dropped not in seen
    assert seen["x-custom"] == "kept"
    assert seen["authorization"].startswith("Bearer ")  # services verify the token again
    assert "foundation-gateway" in seen["via"]

    async with stack.client.get(stack.url + "/history/status/418", headers=stack.token()) as response:
        assert response.status == 418
        assert "X-Hop" not in response.headers
        assert "Keep-Alive" not in response.headers
        assert response.headers["X-Kept"] == "yes"
        assert "foundation-gateway" in response.headers["Via"]


async def test_client_identity_headers_are_replaced_by_the_verified_ones(stack: Stack) -> None:
    user, session = uuid.uuid4(), uuid.uuid4()
    headers = {
        **bearer(stack.signer.issue(user_id=user, session_id=session, roles=["member"])),
        "X-User-Id": str(uuid.uuid4()),
        "X-User-Roles": "admin",
        "X-Session-Id": "forged",
        "X-User-Email": "evil@example.com",
        "X-Forwarded-For": "6.6.6.6",
        "X-Forwarded-Proto": "https",
    }
    async with stack.client.get(stack.url + "/stats/me", headers=headers) as response:
        seen = (await response.json())["headers"]
    assert seen["x-user-id"] == str(user)
    assert seen["x-session-id"] == str(session)
    assert seen["x-user-roles"] == "member"
    assert "x-user-email" not in seen
    assert seen["x-forwarded-for"] == "127.0.0.1"  # the untrusted client's claim is dropped
    assert seen["x-forwarded-proto"] == "http"


async def test_public_route_carries_no_identity_even_if_the_client_sends_one(stack: Stack) -> None:
    headers = {"X-User-Id": str(uuid.uuid4()), "X-User-Roles": "admin"}
    async with stack.client.post(
        stack.url + "/auth/login", json={"email": "a@b.c"}, headers=headers
    ) as response:
        assert response.status == 200
        seen = (await response.json())["headers"]
    assert "x-user-id" not in seen and "x-user-roles" not in seen


async def test_request_id_is_forwarded_and_returned(stack: Stack) -> None:
    async with stack.client.get(
        stack.url + "/history", headers={**stack.token(), "X-Request-ID": "req-42"}
    ) as r:
        assert r.headers["X-Request-ID"] == "req-42"
        assert (await r.json())["headers"]["x-request-id"] == "req-42"
    async with stack.client.get(stack.url + "/history", headers=stack.token()) as r:
        generated = r.headers["X-Request-ID"]
        assert len(generated) == 32
        assert (await r.json())["headers"]["x-request-id"] == generated


async def test_large_response_streams_through_intact(stack: Stack) -> None:
    size = 24 * 1024 * 1024
    async with stack.client.get(stack.url + f"/history/big?bytes={size}", headers=stack.token()) as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == str(size)
        received = 0
        async for chunk in response.content.iter_any():
            received += len(chunk)
    assert received == size


async def test_chunked_response_streams_through(stack: Stack) -> None:
    url = stack.url + "/history/stream?chunks=200&size=65536"
    async with stack.client.get(url, headers=stack.token()) as response:
        assert response.status == 200
        assert "Content-Length" not in response.headers
        body = await response.read()
    assert body == b"y" * 200 * 65536


@pytest.mark.parametrize("stack", [{"max_body_bytes": 32 * 1024 * 1024}], indirect=True)
async def test_large_request_body_reaches_the_service_intact(stack: Stack) -> None:
    payload = hashlib.sha256(b"seed").digest() * (16 * 1024 * 1024 // 32)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 1 << 20):
            yield payload[start : start + (1 << 20)]

    headers = {**stack.token(), "Content-Length": str(len(payload))}
    async with stack.client.post(stack.url + "/history", data=chunks(), headers=headers) as response:
        assert response.status == 200, await response.text()
        body = await response.json()
    assert body["body_bytes"] == len(payload)
    assert body["body_sha256"] == hashlib.sha256(payload).hexdigest()


@pytest.mark.parametrize("stack", [{"max_body_bytes": 1000}], indirect=True)
async def test_oversized_body_is_a_413_and_never_reaches_the_service(stack: Stack) -> None:
    async with stack.client.post(stack.url + "/history", data=b"z" * 1001, headers=stack.token()) as response:
        assert response.status == 413
        assert (await response.json())["code"] == "payload_too_large"

    async def chunked() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"z" * 400

    async with stack.client.post(stack.url + "/history", data=chunked(), headers=stack.token()) as response:
        assert response.status == 413
    async with stack.client.post(stack.url + "/history", data=b"z" * 1000, headers=stack.token()) as response:
        assert response.status == 200
        assert (await response.json())["body_bytes"] == 1000
    assert len(stack.history.requests) == 1


async def test_chunked_body_within_the_limit_is_forwarded_with_its_length(stack: Stack) -> None:
    async def chunked() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"abc"

    async with stack.client.post(stack.url + "/history", data=chunked(), headers=stack.token()) as response:
        body = await response.json()
    assert body["body_bytes"] == 9
    assert body["headers"]["content-length"] == "9"


async def test_service_errors_pass_through_unchanged(stack: Stack) -> None:
    async with stack.client.get(stack.url + "/stats/status/503", headers=stack.token()) as response:
        assert response.status == 503
        assert await response.json() == {"status": 503}


@pytest.mark.parametrize("stack", [{"upstream_read_timeout": 0.3}], indirect=True)
async def test_slow_service_is_a_504_problem_not_a_hang(stack: Stack) -> None:
    async with stack.client.get(stack.url + "/history/slow?seconds=5", headers=stack.token()) as response:
        assert response.status == 504
        assert response.headers["content-type"] == "application/problem+json"
        assert (await response.json())["code"] == "upstream_timeout"


async def test_unreachable_service_is_a_502_problem(redis_url: str, redis_prefix: str) -> None:
    signer = TestSigner()
    async with FakeService("auth") as auth:
        settings = gateway_settings(
            redis_url, redis_prefix, auth=auth.url, history=closed_url(), stats=closed_url()
        )
        async with (
            serve_asgi(create_app(settings, token_verifier=test_verifier(signer))) as url,
            aiohttp.ClientSession() as client,
            client.get(url + "/history", headers=bearer(signer.issue())) as response,
        ):
            assert response.status == 502
            body = await response.json()
    assert body["code"] == "upstream_unreachable"
    assert "history" in body["detail"]


async def test_several_auth_urls_are_used_round_robin(redis_url: str, redis_prefix: str) -> None:
    async with FakeService("auth-1") as one, FakeService("auth-2") as two, FakeService("other") as other:
        settings = gateway_settings(
            redis_url, redis_prefix, auth=f"{one.url},{two.url}", history=other.url, stats=other.url
        )
        async with (
            serve_asgi(create_app(settings, token_verifier=test_verifier(TestSigner()))) as url,
            aiohttp.ClientSession() as client,
        ):
            for _ in range(6):
                async with client.post(url + "/auth/login", json={}) as response:
                    assert response.status == 200
    assert len(one.requests) == 3 and len(two.requests) == 3
