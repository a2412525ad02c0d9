"""Edge hygiene over real HTTP: TLS, redirects, security headers, CORS, merged docs, errors, logs."""

from __future__ import annotations

import asyncio
import contextlib
import io
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from foundation.auth.principal import Principal
from foundation.gateway.app import create_app
from foundation.gateway.dev_cert import make_dev_cert
from foundation.gateway.https_redirect import redirect_app
from foundation.gateway.main import cli
from tests.helpers.auth import TestSigner, bearer, test_verifier
from tests.helpers.gateway_stack import FakeService, closed_url, gateway_settings, serve_asgi

SIGNER = TestSigner()
SPAN_SINK = io.StringIO()


@pytest.fixture()
async def service() -> AsyncIterator[FakeService]:
    async with FakeService("svc") as fake:
        yield fake


def settings_for(redis_url: str, prefix: str, service: FakeService, **overrides: Any) -> Any:
    return gateway_settings(
        redis_url, prefix, auth=service.url, history=service.url, stats=service.url, **overrides
    )


@pytest.fixture()
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    assert cli.main(["make-dev-cert", "--out-dir", str(tmp_path), "--name", "gateway.test"]) == 0
    return tmp_path / "cert.pem", tmp_path / "key.pem"


async def test_dev_cert_is_a_usable_pair_with_a_private_key_file(tmp_path: Path) -> None:
    cert, key = make_dev_cert(tmp_path / "certs", ["api.local"])
    assert key.stat().st_mode & 0o077 == 0
    context = ssl.create_default_context(cafile=str(cert))
    context.load_cert_chain(cert, key)  # raises if they do not match
    assert b"BEGIN CERTIFICATE" in cert.read_bytes()


async def test_https_with_a_generated_certificate(
    redis_url: str, redis_prefix: str, service: FakeService, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    app = create_app(settings_for(redis_url, redis_prefix, service), token_verifier=test_verifier(SIGNER))
    context = ssl.create_default_context(cafile=str(cert))
    async with serve_asgi(app, ssl_cert=cert, ssl_key=key) as url:
        assert url.startswith("https://")
        async with (
            aiohttp.ClientSession() as client,
            client.get(url + "/history", headers=bearer(SIGNER.issue()), ssl=context) as response,
        ):
            assert response.status == 200
            seen = (await response.json())["headers"]
            assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")
        assert seen["x-forwarded-proto"] == "https"
        # HTTP/2 is offered through ALPN.
        host, port = url.removeprefix("https://").split(":")
        context.set_alpn_protocols(["h2", "http/1.1"])
        _, writer = await asyncio.open_connection(host, int(port), ssl=context, server_hostname="localhost")
        assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
        writer.close()


async def test_plain_http_is_redirected_when_asked_except_health(
    redis_url: str, redis_prefix: str, service: FakeService
) -> None:
    settings = settings_for(
        redis_url, redis_prefix, service, https_redirect=True, https_port=8443, trusted_proxies="127.0.0.1"
    )
    app = create_app(settings, token_verifier=test_verifier(SIGNER))
    async with serve_asgi(app) as url, aiohttp.ClientSession() as client:
        async with client.post(
            URL(url + "/auth/login?next=%2Fme", encoded=True), allow_redirects=False
        ) as response:
            assert response.status == 308
            port = url.rsplit(":", 1)[1]
            assert response.headers["Location"] == "https://127.0.0.1:8443/auth/login?next=%2Fme"
            assert port not in response.headers["Location"]
        async with client.get(url + "/ready", allow_redirects=False) as response:
            assert response.status == 200
        # Behind a trusted TLS-terminating proxy the request is already HTTPS.
        async with client.get(
            url + "/history",
            headers={**bearer(SIGNER.issue()), "X-Forwarded-Proto": "https"},
            allow_redirects=False,
        ) as response:
            assert response.status == 200
            assert "Strict-Transport-Security" in response.headers


async def test_redirect_listener_sends_everything_but_health_to_https() -> None:
    async with serve_asgi(redirect_app(443)) as url, aiohttp.ClientSession() as client:
        async with client.get(
            url + "/history?a=1", allow_redirects=False, headers={"Host": "api.example.com:80"}
        ) as r:
            assert r.status == 308
            assert r.headers["Location"] == "https://api.example.com/history?a=1"
        async with client.get(url + "/health") as r:
            assert r.status == 200


async def test_security_headers_on_every_answer(
    redis_url: str, redis_prefix: str, service: FakeService
) -> None:
    app = create_app(settings_for(redis_url, redis_prefix, service), token_verifier=test_verifier(SIGNER))
    async with serve_asgi(app) as url, aiohttp.ClientSession() as client:
        answers = {
            "proxied": await client.get(url + "/history", headers=bearer(SIGNER.issue())),
            "problem": await client.get(url + "/history"),
            "local": await client.get(url + "/ready"),
            "auth": await client.post(url + "/auth/login", json={}),
            "jwks": await client.get(url + "/auth/.well-known/jwks.json"),
        }
    for name, response in answers.items():
        assert response.headers["X-Content-Type-Options"] == "nosniff", name
        assert response.headers["Referrer-Policy"] == "no-referrer", name
        assert "Strict-Transport-Security" not in response.headers, name  # plain HTTP
    assert answers["auth"].headers["Cache-Control"] == "no-store"
    assert answers["jwks"].headers.get("Cache-Control") != "no-store"
    assert "Cache-Control" not in answers["proxied"].headers


async def test_cors_is_answered_only_for_listed_origins(
    redis_url: str, redis_prefix: str, service: FakeService
) -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    app = create_app(
        settings_for(redis_url, redis_prefix, service, cors_origins="https://app.example.com"),
        token_verifier=test_verifier(SIGNER),
    )
    async with serve_asgi(app) as url, aiohttp.ClientSession() as client:
        async with client.options(
            url + "/history", headers={"Origin": "https://app.example.com", **preflight}
        ) as r:
            assert r.status == 200
            assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
            assert r.headers["Access-Control-Allow-Credentials"] == "true"
        async with client.options(
            url + "/history", headers={"Origin": "https://evil.example.com", **preflight}
        ) as r:
            assert "Access-Control-Allow-Origin" not in r.headers
        async with client.get(
            url + "/history", headers={"Origin": "https://app.example.com", **bearer(SIGNER.issue())}
        ) as r:
            assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
            assert "RateLimit" in r.headers["Access-Control-Expose-Headers"]
    assert not service.requests[:-1]  # the preflights never reached the service


async def test_no_cors_headers_by_default(redis_url: str, redis_prefix: str, service: FakeService) -> None:
    app = create_app(settings_for(redis_url, redis_prefix, service), token_verifier=test_verifier(SIGNER))
    async with (
        serve_asgi(app) as url,
        aiohttp.ClientSession() as client,
        client.get(
            url + "/history", headers={"Origin": "https://app.example.com", **bearer(SIGNER.issue())}
        ) as r,
    ):
        assert "Access-Control-Allow-Origin" not in r.headers


def service_openapi(path: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "x", "version": "1"},
        "paths": {
            path: {
                "get": {
                    "responses": {
                        "200": {
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}}
                        }
                    }
                }
            },
            "/health": {"get": {"responses": {"200": {"description": "ok"}}}},
        },
        "components": {"schemas": {"Item": schema}},
    }


async def test_openapi_merges_every_service_and_docs_render(redis_url: str, redis_prefix: str) -> None:
    async with FakeService("auth") as auth, FakeService("history") as history:
        auth.openapi = service_openapi("/auth/me", {"type": "object", "title": "User"})
        history.openapi = service_openapi("/history", {"type": "object", "title": "Event"})
        settings = gateway_settings(
            redis_url, redis_prefix, auth=auth.url, history=history.url, stats=closed_url()
        )
        async with (
            serve_asgi(create_app(settings, token_verifier=test_verifier(SIGNER))) as url,
            aiohttp.ClientSession() as client,
        ):
            async with client.get(url + "/openapi.json") as response:
                assert response.status == 200
                document = await response.json()
            async with client.get(url + "/docs") as response:
                assert response.status == 200
                assert "swagger" in (await response.text()).lower()
    assert set(document["paths"]) == {"/auth/me", "/history", "/health"}
    schemas = document["components"]["schemas"]
    assert schemas["Item"]["title"] == "User"
    assert schemas["HistoryItem"]["title"] == "Event"
    history_ref = document["paths"]["/history"]["get"]["responses"]["200"]["content"]["application/json"]
    assert history_ref["schema"]["$ref"] == "#/components/schemas/HistoryItem"
    assert document["x-unavailable-services"] == ["stats"]


async def test_docs_can_be_switched_off(redis_url: str, redis_prefix: str, service: FakeService) -> None:
    app = create_app(
        settings_for(redis_url, redis_prefix, service, docs_enabled=False),
        token_verifier=test_verifier(SIGNER),
    )
    async with serve_asgi(app) as url, aiohttp.ClientSession() as client:
        assert (await client.get(url + "/openapi.json")).status == 404
        assert (await client.get(url + "/docs")).status == 404


def log_events(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """structlog hands the standard library its event dicts; the handler renders them."""
    return [record.msg for record in caplog.records if isinstance(record.msg, dict)]


class BrokenVerifier:
    async def verify(self, token: str) -> Principal:
        raise RuntimeError("secret internals: key=hunter2")


async def test_unexpected_error_is_a_500_problem_logged_with_the_request_id(
    redis_url: str, redis_prefix: str, service: FakeService, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings_for(redis_url, redis_prefix, service), token_verifier=BrokenVerifier())  # type: ignore[arg-type]
    async with (
        serve_asgi(app) as url,
        aiohttp.ClientSession() as client,
        client.get(url + "/history", headers={**bearer("x.y.z"), "X-Request-ID": "boom-1"}) as response,
    ):
        assert response.status == 500
        assert response.headers["X-Request-ID"] == "boom-1"
        text = await response.text()
    assert "hunter2" not in text
    assert '"code":"internal_error"' in text.replace(" ", "")
    error = next(line for line in log_events(caplog) if line.get("event") == "unhandled error")
    assert error["request_id"] == "boom-1"
    assert "hunter2" in repr(error["exc_info"])  # the details go to the log only


async def test_access_log_names_user_upstream_and_client(
    redis_url: str, redis_prefix: str, service: FakeService, caplog: pytest.LogCaptureFixture
) -> None:
    token = SIGNER.issue()
    app = create_app(settings_for(redis_url, redis_prefix, service), token_verifier=test_verifier(SIGNER))
    async with (
        serve_asgi(app) as url,
        aiohttp.ClientSession() as client,
        client.get(url + "/stats/me", headers={**bearer(token), "X-Request-ID": "log-1"}) as response,
    ):
        assert response.status == 200
    line = next(
        line
        for line in log_events(caplog)
        if line.get("request_id") == "log-1" and line.get("event") == "request"
    )
    principal = await test_verifier(SIGNER).verify(token)
    assert line["user_id"] == str(principal.user_id)
    assert line["upstream"] == "stats"
    assert line["client"] == "127.0.0.1"
    assert line["status"] == 200 and line["method"] == "GET" and line["path"] == "/stats/me"
    assert isinstance(line["duration_ms"], float)


async def test_trace_context_is_propagated_to_the_service(
    redis_url: str, redis_prefix: str, service: FakeService
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    # The console exporter keeps the stream it was built with, for the rest of the process:
    # give it one that stays open (pytest closes its capture streams after each test).
    with contextlib.redirect_stdout(SPAN_SINK):
        app = create_app(
            settings_for(redis_url, redis_prefix, service, otel_console=True),
            token_verifier=test_verifier(SIGNER),
        )
    async with (
        serve_asgi(app) as url,
        aiohttp.ClientSession() as client,
        client.get(
            url + "/history",
            headers={**bearer(SIGNER.issue()), "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
        ) as response,
    ):
        seen = (await response.json())["headers"]
    version, forwarded_trace, parent_span, _ = seen["traceparent"].split("-")
    assert forwarded_trace == trace_id
    assert parent_span != "00f067aa0ba902b7"  # the gateway's own client span
