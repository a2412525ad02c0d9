from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from foundation.auth.signing import SigningKeyStore
from foundation.auth_service.app import create_app
from foundation.auth_service.main import cli
from foundation.auth_service.settings import AuthServiceSettings
from tests.helpers.apps import serve_app, state_of
from tests.helpers.auth import TEST_AUDIENCE, TEST_ISSUER, bearer
from tests.helpers.users import login, refresh, register, signed_in_user


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_for(tokens_claims: dict[str, Any], **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    return {**tokens_claims, "iat": now, "exp": now + 600, **changes}


async def test_jwks_publishes_the_public_signing_key_only(client: httpx.AsyncClient, app: FastAPI) -> None:
    response = await client.get("/auth/.well-known/jwks.json")
    assert response.status_code == 200
    assert "max-age" in response.headers["cache-control"]
    (key,) = response.json()["keys"]
    assert key["kty"] == "OKP"
    assert key["crv"] == "Ed25519"
    assert key["alg"] == "EdDSA"
    assert key["use"] == "sig"
    assert "d" not in key
    store: SigningKeyStore = state_of(app)["signing_keys"]
    assert key["kid"] == store.signing_key().kid


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"aud": "someone-else"}, "invalid_token"),
        ({"iss": "https://evil.example"}, "invalid_token"),
        ({"exp": 1_000_000, "iat": 999_000}, "token_expired"),
        ({"nbf": 4_000_000_000}, "invalid_token"),
    ],
)
async def test_tokens_signed_by_our_key_with_wrong_claims_are_refused(
    client: httpx.AsyncClient, app: FastAPI, change: dict[str, Any], code: str
) -> None:
    _, tokens = await signed_in_user(client)
    key = state_of(app)["signing_keys"].signing_key()
    forged = jwt.encode(
        claims_for(tokens.claims, **change),
        key.private_key,
        algorithm="EdDSA",
        headers={"kid": key.kid, "typ": "at+jwt"},
    )
    response = await client.get("/auth/me", headers=bearer(forged))
    assert response.status_code == 401
    assert response.json()["code"] == code


async def test_alg_none_and_hmac_with_the_public_key_are_refused(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    _, tokens = await signed_in_user(client)
    jwk = state_of(app)["signing_keys"].jwks()["keys"][0]
    payload = b64(json.dumps(claims_for(tokens.claims)).encode())

    none_header = b64(json.dumps({"alg": "none", "kid": jwk["kid"], "typ": "at+jwt"}).encode())
    unsigned = f"{none_header}.{payload}."
    hmac_header = b64(json.dumps({"alg": "HS256", "kid": jwk["kid"], "typ": "at+jwt"}).encode())
    for secret in (json.dumps(jwk).encode(), jwk["x"].encode(), base64.urlsafe_b64decode(jwk["x"] + "=")):
        signature = hmac.new(secret, f"{hmac_header}.{payload}".encode(), hashlib.sha256).digest()
        hmac_token = f"{hmac_header}.{payload}.{b64(signature)}"
        response = await client.get("/auth/me", headers=bearer(hmac_token))
        assert response.status_code == 401
        assert response.json()["code"] == "invalid_token"
    response = await client.get("/auth/me", headers=bearer(unsigned))
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


async def test_rotation_signs_with_the_new_key_and_keeps_old_tokens_valid_until_expiry(
    make_settings: Callable[..., AuthServiceSettings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys_dir = tmp_path / "rotating"
    app = create_app(make_settings(jwt_keys_dir=keys_dir))
    async with serve_app(app) as client:
        store: SigningKeyStore = state_of(app)["signing_keys"]
        store.reload_interval = 0  # see the folder change at once (2 s in production)
        user, old = await signed_in_user(client)
        old_kid = jwt.get_unverified_header(old.access_token)["kid"]

        monkeypatch.setenv("JWT_KEYS_DIR", str(keys_dir))
        assert await asyncio.to_thread(cli.main, ["rotate-keys", "--activate-in", "0"]) == 0

        new = await login(client, user)
        new_kid = jwt.get_unverified_header(new.access_token)["kid"]
        assert new_kid != old_kid
        published = {k["kid"] for k in (await client.get("/auth/.well-known/jwks.json")).json()["keys"]}
        assert published == {old_kid, new_kid}
        for tokens in (old, new):
            assert (await client.get("/auth/me", headers=tokens.headers)).status_code == 200
        # A refresh of the old session is signed by the new key too.
        assert jwt.get_unverified_header((await refresh(client, old)).access_token)["kid"] == new_kid

        # Published until the last token the old key signed has expired, then dropped.
        real_clock = store.clock
        store.clock = lambda: real_clock() + 899
        assert old_kid in {k["kid"] for k in (await client.get("/auth/.well-known/jwks.json")).json()["keys"]}
        store.clock = lambda: real_clock() + 900 + 61
        after = {k["kid"] for k in (await client.get("/auth/.well-known/jwks.json")).json()["keys"]}
        assert after == {new_kid}


def test_rotate_keys_explains_itself_when_keys_come_from_configuration(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JWT_SIGNING_KEYS", "/some/key.pem")
    assert cli.main(["rotate-keys"]) == 2
    assert "put the new key first" in capsys.readouterr().out


def test_production_refuses_to_start_without_a_signing_key(
    make_settings: Callable[..., AuthServiceSettings], tmp_path: Path
) -> None:
    from foundation.auth_service.lifespan import load_signing_keys

    settings = make_settings(
        environment="production", jwt_keys_dir=tmp_path / "none", jwt_issuer="https://api.acme.io/auth"
    )
    with pytest.raises(RuntimeError, match="No signing key"):
        load_signing_keys(settings)


async def test_grant_admin_adds_the_role_seen_after_the_next_refresh(
    client: httpx.AsyncClient, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await register(client)
    tokens = await login(client, user)
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert await asyncio.to_thread(cli.main, ["grant-admin", user.email.upper()]) == 0
    assert await asyncio.to_thread(cli.main, ["grant-admin", user.email]) == 0  # idempotent
    assert (await client.get("/auth/me", headers=tokens.headers)).json()["roles"] == ["admin"]
    assert tokens.claims["roles"] == []
    assert (await refresh(client, tokens)).claims["roles"] == ["admin"]
    assert await asyncio.to_thread(cli.main, ["grant-admin", "nobody@example.com"]) == 1


def test_token_claims_use_the_configured_issuer_and_audience(settings: AuthServiceSettings) -> None:
    assert (settings.jwt_issuer, settings.jwt_audience) == (TEST_ISSUER, TEST_AUDIENCE)
