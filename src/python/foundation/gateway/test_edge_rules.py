"""Unit tests of the gateway's pure rules: routes, headers, settings, the redis status."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from foundation.gateway.headers import (
    connection_tokens,
    request_headers_for_upstream,
    response_headers_for_client,
)
from foundation.gateway.redis_status import RedisStatus
from foundation.gateway.route_table import classify, is_safe_path, service_for
from foundation.gateway.settings import GatewaySettings, parse_rate
from foundation.shared.client_address import TrustedProxies


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/auth/login", "auth"),
        ("/history", "history"),
        ("/history/x", "history"),
        ("/stats/me", "stats"),
        ("/historyx", None),
        ("/", None),
        ("/statistics", None),
    ],
)
def test_service_is_chosen_by_whole_path_segment(path: str, service: str | None) -> None:
    assert service_for(path) == service


def test_public_and_sign_in_routes_depend_on_method_and_path() -> None:
    login = classify("POST", "/auth/login")
    assert login is not None and login.public and login.strict_group == "login"
    get_login = classify("GET", "/auth/login")
    assert get_login is not None and not get_login.public
    oauth = classify("GET", "/auth/oauth/google/authorize")
    assert oauth is not None and oauth.public and oauth.strict_group == "oauth"
    logout = classify("POST", "/auth/logout")
    assert logout is not None and logout.public and logout.strict_group is None
    history = classify("GET", "/history")
    assert history is not None and not history.public
    assert classify("GET", "/elsewhere") is None


@pytest.mark.parametrize(
    ("method", "path", "group"),
    [
        ("POST", "/auth/mfa/verify", "mfa"),
        ("POST", "/auth/mfa/passkey-options", "mfa"),
        ("POST", "/auth/passkeys/sign-in-options", "passkey"),
        ("POST", "/auth/passkeys/sign-in", "passkey"),
    ],
)
def test_the_steps_of_a_sign_in_are_public_and_strictly_limited(method: str, path: str, group: str) -> None:
    route = classify(method, path)
    assert route is not None and route.public and route.strict_group == group


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/auth/mfa"), ("POST", "/auth/mfa/totp"), ("POST", "/auth/passkeys")]
)
def test_managing_second_factors_needs_a_signed_in_user(method: str, path: str) -> None:
    route = classify(method, path)
    assert route is not None and not route.public


@pytest.mark.parametrize("path", ["/auth/oauth/../me", "/auth/./me", "/history//x", "/auth/a\\b", "/a/.."])
def test_paths_that_normalise_to_another_route_are_unsafe(path: str) -> None:
    assert not is_safe_path(path)


def test_request_headers_lose_hop_by_hop_identity_and_forwarding_fields() -> None:
    headers = [
        (b"connection", b"close, x-drop"),
        (b"x-drop", b"1"),
        (b"transfer-encoding", b"chunked"),
        (b"x-user-id", b"forged"),
        (b"x-auth-admin", b"yes"),
        (b"x-forwarded-for", b"1.2.3.4"),
        (b"host", b"api.example.com"),
        (b"accept", b"application/json"),
    ]
    out = request_headers_for_upstream(headers, [(b"x-user-id", b"real")])
    assert out == [(b"accept", b"application/json"), (b"x-user-id", b"real")]


def test_connection_cannot_drop_framing_routing_or_identity_fields() -> None:
    headers = [
        (b"connection", b"Content-Length, transfer-encoding, host, authorization, x-request-id"),
        (b"connection", b"x-user-id, x-auth-level, x-forwarded-for, via, x-drop"),
        (b"content-length", b"12"),
        (b"expect", b"100-continue"),
        (b"authorization", b"Bearer t"),
        (b"x-drop", b"1"),
    ]
    assert connection_tokens(headers) == {b"x-drop"}
    # The client's framing never goes through as it is; the upstream client writes its own.
    assert request_headers_for_upstream(headers, []) == [(b"authorization", b"Bearer t")]
    answer = response_headers_for_client([(b"Connection", b"content-length"), (b"Content-Length", b"2")])
    assert (b"content-length", b"2") in answer


def test_response_headers_lose_hop_by_hop_fields_and_gain_via() -> None:
    out = response_headers_for_client(
        [
            (b"Connection", b"X-Internal"),
            (b"X-Internal", b"1"),
            (b"Keep-Alive", b"5"),
            (b"Content-Type", b"a/b"),
        ]
    )
    assert out == [(b"content-type", b"a/b"), (b"via", b"1.1 foundation-gateway")]


def test_rates_parse_or_are_refused() -> None:
    assert parse_rate("10/60") == (10, 60)
    for bad in ("10", "x/60", "0/60", "10/0", "10/-1"):
        with pytest.raises(ValueError, match="rate"):
            parse_rate(bad)


def test_settings_split_lists_and_check_them() -> None:
    settings = GatewaySettings(auth_url="http://a:1/, http://b:2", trusted_proxies="10.0.0.0/8,::1")
    assert settings.auth_url == ["http://a:1", "http://b:2"]
    assert settings.effective_jwks_url == "http://a:1/auth/.well-known/jwks.json"
    assert "10.1.2.3" in TrustedProxies(settings.trusted_networks())
    assert "11.0.0.1" not in TrustedProxies(settings.trusted_networks())
    assert "not-an-ip" not in TrustedProxies(settings.trusted_networks())
    for bad in (
        {"auth_url": "ftp://x"},
        {"trusted_proxies": "nonsense"},
        {"rate_limit_user": "lots"},
        {"tls_cert_file": "cert.pem"},
        {"history_url": ""},
    ):
        with pytest.raises(ValidationError):
            GatewaySettings(**bad)  # type: ignore[arg-type]
    assert GatewaySettings(tls_cert_file="c.pem", tls_key_file="k.pem").tls_enabled


def test_redis_status_skips_redis_for_a_moment_after_a_failure() -> None:
    status = RedisStatus(retry_after=60)
    assert status.available
    status.failed(ConnectionError("refused"))
    assert not status.available
    assert status.last_error == "ConnectionError"
    status.succeeded()
    assert status.down_since is None
