"""Google and Apple sign-in end to end: browser-side steps against the stand-in providers,
everything else through the gateway to a running auth-service (real HTTP all the way, real
PostgreSQL and Redis), including the unhappy paths the OAuth issue lists."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from foundation.auth.encryption import TokenEncryptionKey
from foundation.auth_service import migrations as auth_migrations
from foundation.auth_service.api import oauth as oauth_api
from foundation.auth_service.app import create_app as create_auth_app
from foundation.auth_service.settings import AuthServiceSettings
from foundation.database.provisioning import drop_database, server_dsn
from foundation.gateway.app import create_app as create_gateway_app
from tests.helpers.auth import TEST_AUDIENCE, TEST_ISSUER
from tests.helpers.databases import create_migrated_database
from tests.helpers.gateway_stack import gateway_settings, serve_asgi
from tests.helpers.idp import AuthorizationResponse, IdpUser, StandInIdentityProvider
from tests.helpers.users import auth_settings, register, unique_email

REDIRECT = "https://app.example.com/auth/callback"
KEY = TokenEncryptionKey.generate("flow-2026")


Settings = AuthServiceSettings  # it carries the OAUTH_* settings


@dataclass
class Stack:
    gateway: httpx.AsyncClient
    google: StandInIdentityProvider
    apple: StandInIdentityProvider
    database_url: str
    auth_base: AuthServiceSettings


@pytest.fixture(scope="module")
def database_url(postgres_url: str) -> Iterator[str]:
    url = create_migrated_database(postgres_url, auth_migrations)
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture(scope="module")
def providers() -> Iterator[tuple[StandInIdentityProvider, StandInIdentityProvider]]:
    with StandInIdentityProvider.google() as google, StandInIdentityProvider.apple() as apple:
        yield google, apple


def provider_settings(
    google: StandInIdentityProvider | None, apple: StandInIdentityProvider | None
) -> dict[str, Any]:
    values: dict[str, Any] = {"oauth_redirect_uris": REDIRECT, "oauth_token_encryption_keys": KEY.spec()}
    if google:
        values |= {
            "oauth_google_client_id": google.client_id,
            "oauth_google_client_secret": google.client_secret,
            "oauth_google_native_client_ids": ",".join(google.native_client_ids),
            "oauth_google_metadata_url": google.metadata_url,
        }
    if apple:
        values |= {
            "oauth_apple_client_id": apple.client_id,
            "oauth_apple_native_client_ids": ",".join(apple.native_client_ids),
            "oauth_apple_team_id": apple.team_id,
            "oauth_apple_key_id": apple.key_id,
            "oauth_apple_private_key": apple.team_private_key_pem,
            "oauth_apple_metadata_url": apple.metadata_url,
        }
    return values


@asynccontextmanager
async def running_auth_service(base: AuthServiceSettings, **oauth: Any) -> AsyncIterator[str]:
    app = create_auth_app(Settings(**{**base.model_dump(), **oauth}))
    app.include_router(oauth_api.router)
    async with serve_asgi(app) as url:
        yield url


@pytest.fixture()
async def stack(
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
    providers: tuple[StandInIdentityProvider, StandInIdentityProvider],
) -> AsyncIterator[Stack]:
    google, apple = providers
    for idp in providers:
        idp.faults.clear()
        suffix = uuid.uuid4().hex[:10]
        idp.user = IdpUser(
            sub=f"{idp.kind}-{suffix}",
            email=f"{idp.kind}-{suffix}@example.com",
            first_name="Ada",
            last_name="L",
        )
    base = auth_settings(database_url, redis_url, redis_prefix, tmp_path / "keys")
    async with running_auth_service(base, **provider_settings(google, apple)) as auth_url:
        gateway = create_gateway_app(
            gateway_settings(
                redis_url,
                redis_prefix,
                auth=auth_url,
                history=auth_url,
                stats=auth_url,
                jwt_issuer=TEST_ISSUER,
                jwt_audience=TEST_AUDIENCE,
            )
        )
        async with (
            serve_asgi(gateway) as gateway_url,
            httpx.AsyncClient(base_url=gateway_url, timeout=10) as client,
        ):
            yield Stack(client, google, apple, database_url, base)


async def authorize(
    stack: Stack, provider: str, idp: StandInIdentityProvider, **query: str
) -> AuthorizationResponse:
    headers = {"Authorization": query.pop("bearer")} if "bearer" in query else {}
    response = await stack.gateway.get(
        f"/auth/oauth/{provider}/authorize", params={"redirect_uri": REDIRECT, **query}, headers=headers
    )
    assert response.status_code == 200, response.text
    started = response.json()
    answer = await idp.authorize(started["authorization_url"])
    assert answer.redirect_uri == REDIRECT
    if answer.form_post:  # the browser posts Apple's form, and sends the binding cookie with it
        return answer
    # A web app's page posts the code and state with the binding it kept from `authorize`.
    return dataclasses.replace(answer, params={**answer.params, "binding": started["binding"]})


async def callback(stack: Stack, provider: str, answer: AuthorizationResponse) -> httpx.Response:
    if answer.form_post:  # Apple POSTs a form to the redirect URI
        return await stack.gateway.post(f"/auth/oauth/{provider}/callback", data=answer.params)
    return await stack.gateway.post(f"/auth/oauth/{provider}/callback", json=answer.params)


async def sign_in(stack: Stack, provider: str) -> dict[str, Any]:
    idp = stack.google if provider == "google" else stack.apple
    response = await callback(stack, provider, await authorize(stack, provider, idp))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def problem(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return str(response.json()["code"])


# -- whole flows ----------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["google", "apple"])
async def test_web_sign_in_through_the_gateway_gives_a_working_token_pair(
    stack: Stack, provider: str
) -> None:
    tokens = await sign_in(stack, provider)
    assert tokens["token_type"] == "Bearer"
    me = await stack.gateway.get("/auth/me", headers=bearer(tokens))
    assert me.status_code == 200, me.text
    idp = stack.google if provider == "google" else stack.apple
    assert me.json()["email"] == idp.user.email
    refreshed = await stack.gateway.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    again = await sign_in(stack, provider)  # same (provider, sub): same user
    assert (await stack.gateway.get("/auth/me", headers=bearer(again))).json()["id"] == me.json()["id"]


@pytest.mark.parametrize("provider", ["google", "apple"])
async def test_native_app_sign_in_through_the_gateway(stack: Stack, provider: str) -> None:
    idp = stack.google if provider == "google" else stack.apple
    issued = await stack.gateway.post(f"/auth/oauth/{provider}/nonce")
    assert issued.status_code == 200, issued.text
    nonce = issued.json()["nonce"]
    in_token = hashlib.sha256(nonce.encode()).hexdigest() if provider == "apple" else nonce
    body = {"id_token": idp.issue_id_token(nonce=in_token, audience=idp.native_client_ids[0]), "nonce": nonce}
    response = await stack.gateway.post(f"/auth/oauth/{provider}/callback", json=body)
    assert response.status_code == 200, response.text
    me = await stack.gateway.get("/auth/me", headers=bearer(response.json()))
    assert me.json()["email"] == idp.user.email
    replayed = await stack.gateway.post(f"/auth/oauth/{provider}/callback", json=body)
    assert problem(replayed, 400) == "invalid_nonce"


async def test_linking_and_unlinking_apple_revokes_the_token_at_apple(stack: Stack) -> None:
    client = stack.gateway
    user = await register(client)
    login = await client.post("/auth/login", json={"email": user.email, "password": user.password})
    tokens = login.json()
    answer = await authorize(stack, "apple", stack.apple, link="true", bearer=bearer(tokens)["Authorization"])
    linked = await client.post("/auth/oauth/apple/link", data=answer.params, headers=bearer(tokens))
    assert linked.status_code == 200, linked.text
    via_apple = await sign_in(stack, "apple")
    assert (await client.get("/auth/me", headers=bearer(via_apple))).json()["id"] == str(user.id)
    unlinked = await client.delete("/auth/oauth/apple", headers=bearer(tokens))
    assert unlinked.status_code == 204
    assert stack.apple.revoked[-1]["token"] in stack.apple.issued_tokens
    assert stack.apple.revoked[-1]["token"].startswith("apple-refresh-")


async def test_database_holds_no_plaintext_provider_token(stack: Stack) -> None:
    await sign_in(stack, "google")
    await sign_in(stack, "apple")
    dsn = server_dsn(stack.database_url, stack.database_url.rsplit("/", 1)[1])
    with psycopg.connect(dsn) as conn:
        rows = [r[0] for r in conn.execute("SELECT row_to_json(o)::text FROM oauth_providers o").fetchall()]
    assert rows
    dump = "\n".join(rows)
    issued = stack.google.issued_tokens + stack.apple.issued_tokens
    assert issued
    leaked = [token for token in issued if token in dump]
    assert leaked == []
    assert "google-access-" not in dump
    assert "apple-refresh-" not in dump
    assert f"v1.{KEY.kid}." in dump  # what is stored: sealed values naming their key


# -- unhappy paths ---------------------------------------------------------------------------


async def test_wrong_state_is_refused(stack: Stack) -> None:
    answer = await authorize(stack, "google", stack.google)
    response = await stack.gateway.post(
        "/auth/oauth/google/callback", json={**answer.params, "state": answer.state[::-1]}
    )
    assert problem(response, 400) == "invalid_state"


async def test_stolen_code_and_state_without_the_binding_are_refused(stack: Stack) -> None:
    answer = await authorize(stack, "google", stack.google)
    stolen = {"code": answer.code, "state": answer.state}
    async with httpx.AsyncClient(base_url=str(stack.gateway.base_url), timeout=10) as attacker:
        missing = await attacker.post("/auth/oauth/google/callback", json=stolen)
        forged = await attacker.post(
            "/auth/oauth/google/callback", json={**stolen, "binding": "attacker-guess-" + "x" * 30}
        )
    assert problem(missing, 400) == "binding_missing"
    assert problem(forged, 400) == "binding_mismatch"


async def test_reused_state_is_refused(stack: Stack) -> None:
    answer = await authorize(stack, "google", stack.google)
    assert (await callback(stack, "google", answer)).status_code == 200
    assert problem(await callback(stack, "google", answer), 400) == "invalid_state"


@pytest.mark.parametrize(
    ("fault", "value"),
    [
        ("nonce", "nonce-of-another-sign-in"),
        ("audience", "client-of-another-app"),
        ("expired", True),
        ("bad_signature", True),
    ],
)
@pytest.mark.parametrize("provider", ["google", "apple"])
async def test_bad_id_tokens_are_refused(stack: Stack, provider: str, fault: str, value: object) -> None:
    idp = stack.google if provider == "google" else stack.apple
    setattr(idp.faults, fault, value)
    response = await callback(stack, provider, await authorize(stack, provider, idp))
    assert problem(response, 401) == "invalid_id_token"


async def test_native_id_token_with_the_wrong_nonce_is_refused(stack: Stack) -> None:
    token = stack.google.issue_id_token(
        nonce="the-nonce-the-app-used", audience="ios-client.apps.example.com"
    )
    response = await stack.gateway.post(
        "/auth/oauth/google/callback", json={"id_token": token, "nonce": "another-nonce-entirely"}
    )
    assert problem(response, 401) == "invalid_id_token"


async def test_unknown_provider_is_404(stack: Stack) -> None:
    response = await stack.gateway.get("/auth/oauth/facebook/authorize", params={"redirect_uri": REDIRECT})
    assert problem(response, 404) == "unknown_provider"


async def test_provider_not_configured_is_404(stack: Stack) -> None:
    only_google = provider_settings(stack.google, None)
    async with (
        running_auth_service(stack.auth_base, **only_google) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        response = await client.get("/auth/oauth/apple/authorize", params={"redirect_uri": REDIRECT})
    assert problem(response, 404) == "provider_not_configured"


async def test_redirect_uri_not_on_the_list_is_refused(stack: Stack) -> None:
    response = await stack.gateway.get(
        "/auth/oauth/google/authorize", params={"redirect_uri": "https://attacker.example.net/callback"}
    )
    assert problem(response, 400) == "redirect_uri_not_allowed"


async def test_provider_email_of_a_password_account_is_409_account_exists(stack: Stack) -> None:
    user = await register(stack.gateway, unique_email("owner"))
    stack.apple.user.email = user.email
    response = await callback(stack, "apple", await authorize(stack, "apple", stack.apple))
    assert problem(response, 409) == "account_exists"


async def test_unlinking_the_last_sign_in_method_is_refused(stack: Stack) -> None:
    tokens = await sign_in(stack, "google")
    response = await stack.gateway.delete("/auth/oauth/google", headers=bearer(tokens))
    assert problem(response, 409) == "last_sign_in_method"
    assert (await stack.gateway.get("/auth/me", headers=bearer(tokens))).status_code == 200
