"""Google and Apple sign-in through auth-service's API, with stand-in providers over real HTTP."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from foundation.auth.encryption import TokenCipher, TokenEncryptionKey
from foundation.auth_service.api import oauth as oauth_api
from foundation.auth_service.app import create_app
from foundation.auth_service.models import OAuthProvider, User
from foundation.auth_service.services.oauth import OAuthService, reencrypt_stored_tokens
from foundation.auth_service.settings import AuthServiceSettings
from foundation.database.engine import session_factory
from foundation.events import schema
from tests.helpers.apps import serve_app
from tests.helpers.auth import bearer
from tests.helpers.idp import IdpUser, StandInIdentityProvider
from tests.helpers.users import Tokens, signed_in_user, unique_email

REDIRECT = "https://app.example.com/auth/callback"
KEY = TokenEncryptionKey.generate("2026-01")


Settings = AuthServiceSettings  # it carries the OAUTH_* settings


@pytest.fixture(scope="module")
def google_idp() -> Iterator[StandInIdentityProvider]:
    with StandInIdentityProvider.google() as idp:
        yield idp


@pytest.fixture(scope="module")
def apple_idp() -> Iterator[StandInIdentityProvider]:
    with StandInIdentityProvider.apple() as idp:
        yield idp


@pytest.fixture(autouse=True)
def _fresh_idp_user(google_idp: StandInIdentityProvider, apple_idp: StandInIdentityProvider) -> None:
    for idp in (google_idp, apple_idp):
        idp.faults.clear()
        suffix = uuid.uuid4().hex[:10]
        idp.user = IdpUser(
            sub=f"{idp.kind}-{suffix}",
            email=f"{idp.kind}-{suffix}@example.com",
            name="Grace Hopper",
            first_name="Grace",
            last_name="Hopper",
        )


def oauth_values(
    google: StandInIdentityProvider | None, apple: StandInIdentityProvider | None
) -> dict[str, Any]:
    values: dict[str, Any] = {"oauth_redirect_uris": [REDIRECT], "oauth_token_encryption_keys": KEY.spec()}
    if google:
        values |= {
            "oauth_google_client_id": google.client_id,
            "oauth_google_client_secret": google.client_secret,
            "oauth_google_native_client_ids": list(google.native_client_ids),
            "oauth_google_metadata_url": google.metadata_url,
        }
    if apple:
        values |= {
            "oauth_apple_client_id": apple.client_id,
            "oauth_apple_native_client_ids": list(apple.native_client_ids),
            "oauth_apple_team_id": apple.team_id,
            "oauth_apple_key_id": apple.key_id,
            "oauth_apple_private_key": apple.team_private_key_pem,
            "oauth_apple_metadata_url": apple.metadata_url,
        }
    return values


def oauth_app(base: AuthServiceSettings, **values: Any) -> FastAPI:
    settings = Settings(**{**base.model_dump(), **values})
    app = create_app(settings)
    app.include_router(oauth_api.router)
    return app


@pytest.fixture()
async def app_and_client(
    make_settings: Callable[..., AuthServiceSettings],
    google_idp: StandInIdentityProvider,
    apple_idp: StandInIdentityProvider,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = oauth_app(make_settings(), **oauth_values(google_idp, apple_idp))
    async with serve_app(app) as client:
        yield app, client


@pytest.fixture()
def client(app_and_client: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return app_and_client[1]


@pytest.fixture()
def service(app_and_client: tuple[FastAPI, httpx.AsyncClient]) -> OAuthService:
    return app_and_client[1].state["oauth_service"]  # type: ignore[attr-defined, no-any-return]


async def authorize(client: httpx.AsyncClient, provider: str, **headers: str) -> dict[str, Any]:
    link = "&link=true" if headers else ""
    response = await client.get(
        f"/auth/oauth/{provider}/authorize?redirect_uri={REDIRECT}{link}", headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def start(client: httpx.AsyncClient, provider: str, idp: StandInIdentityProvider, **headers: str):  # type: ignore[no-untyped-def]
    """Start a web flow as a browser does: the client keeps the binding cookie it was given."""
    return await idp.authorize((await authorize(client, provider, **headers))["authorization_url"])


async def native_body(
    client: httpx.AsyncClient, provider: str, idp: StandInIdentityProvider
) -> dict[str, str]:
    """What a native app sends: an id_token from the SDK, bound to a nonce we issued."""
    issued = await client.post(f"/auth/oauth/{provider}/nonce")
    assert issued.status_code == 200, issued.text
    nonce = issued.json()["nonce"]
    sent = hashlib.sha256(nonce.encode()).hexdigest() if provider == "apple" else nonce
    return {"id_token": idp.issue_id_token(nonce=sent, audience=idp.native_client_ids[0]), "nonce": nonce}


async def web_sign_in(
    client: httpx.AsyncClient, provider: str, idp: StandInIdentityProvider
) -> httpx.Response:
    answer = await start(client, provider, idp)
    if answer.form_post:
        return await client.post(f"/auth/oauth/{provider}/callback", data=answer.params)
    return await client.post(
        f"/auth/oauth/{provider}/callback", json={"code": answer.code, "state": answer.state}
    )


def refused(response: httpx.Response, status: int) -> str:
    """The problem's code, once the response is that status as application/problem+json."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return str(response.json()["code"])


async def me(client: httpx.AsyncClient, tokens: Tokens) -> dict[str, Any]:
    response = await client.get("/auth/me", headers=tokens.headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def link_rows(engine: AsyncEngine, user_id: uuid.UUID) -> list[OAuthProvider]:
    async with session_factory(engine)() as db:
        return list(
            (await db.execute(select(OAuthProvider).where(OAuthProvider.user_id == user_id))).scalars()
        )


# -- sign-in ---------------------------------------------------------------------------------


async def test_google_web_sign_in_creates_the_user_and_answers_a_token_pair(
    client: httpx.AsyncClient, google_idp: StandInIdentityProvider, outbox: Callable[..., Any]
) -> None:
    response = await web_sign_in(client, "google", google_idp)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert set(response.json()) == {"access_token", "token_type", "expires_in", "refresh_token"}
    tokens = Tokens.from_response(response)
    user = await me(client, tokens)
    assert user["email"] == google_idp.user.email
    events = [event for event, _ in await outbox(uuid.UUID(user["id"]))]
    assert events == [schema.USER_REGISTERED, schema.OAUTH_LINKED, schema.USER_LOGGED_IN]
    # The refresh token works like a password login's.
    assert (
        await client.post("/auth/refresh", json={"refresh_token": tokens.refresh_token})
    ).status_code == 200


async def test_signing_in_again_finds_the_same_user_by_provider_and_subject(
    client: httpx.AsyncClient, google_idp: StandInIdentityProvider, outbox: Callable[..., Any]
) -> None:
    first = await me(client, Tokens.from_response(await web_sign_in(client, "google", google_idp)))
    google_idp.user.email = unique_email("changed")  # the email at Google changed: still the same person
    second = await me(client, Tokens.from_response(await web_sign_in(client, "google", google_idp)))
    assert second["id"] == first["id"]
    events = [(event, data.get("method")) for event, data in await outbox(uuid.UUID(first["id"]))]
    assert events[-1] == (schema.USER_LOGGED_IN, "google")
    assert [e for e, _ in events].count(schema.USER_REGISTERED) == 1


async def test_apple_form_post_sign_in_works_and_stores_tokens_encrypted(
    client: httpx.AsyncClient, apple_idp: StandInIdentityProvider, engine: AsyncEngine
) -> None:
    answer = await start(client, "apple", apple_idp)
    assert answer.form_post
    assert "user" in answer.params  # the first authorization carries the name
    response = await client.post("/auth/oauth/apple/callback", data={**answer.params, "id_token": "ignored"})
    assert response.status_code == 200, response.text
    user = await me(client, Tokens.from_response(response))
    [row] = await link_rows(engine, uuid.UUID(user["id"]))
    assert (row.provider, row.provider_id) == ("apple", apple_idp.user.sub)
    async with session_factory(engine)() as db:
        saved = await db.get(User, uuid.UUID(user["id"]))
    assert saved is not None
    assert saved.display_name == "Grace Hopper"  # from Apple's `user` form field
    sealed = str(row.refresh_token)
    assert sealed.startswith(f"v1.{KEY.kid}.")
    assert "apple-refresh-" not in sealed
    context = f"apple:{apple_idp.user.sub}:refresh_token".encode()
    assert TokenCipher([KEY]).decrypt(sealed, context).startswith("apple-refresh-")


@pytest.mark.parametrize("provider", ["google", "apple"])
async def test_native_app_id_token_signs_in_once_per_issued_nonce(
    client: httpx.AsyncClient, provider: str, request: pytest.FixtureRequest
) -> None:
    idp: StandInIdentityProvider = request.getfixturevalue(f"{provider}_idp")
    issued = await client.post(f"/auth/oauth/{provider}/nonce")
    assert issued.headers["cache-control"] == "no-store"
    assert issued.json()["expires_in"] == 600
    body = await native_body(client, provider, idp)
    first = await client.post(f"/auth/oauth/{provider}/callback", json=body)
    assert first.status_code == 200, first.text
    replay = await client.post(f"/auth/oauth/{provider}/callback", json=body)
    assert refused(replay, 400) == "invalid_nonce"


async def test_apple_native_token_replayed_with_its_hashed_nonce_is_refused(
    client: httpx.AsyncClient, apple_idp: StandInIdentityProvider
) -> None:
    body = await native_body(client, "apple", apple_idp)
    assert (await client.post("/auth/oauth/apple/callback", json=body)).status_code == 200
    # The token carries SHA-256(nonce); sent as the nonce it matches the claim as-is.
    hashed = {**body, "nonce": hashlib.sha256(body["nonce"].encode()).hexdigest()}
    replay = await client.post("/auth/oauth/apple/callback", json=hashed)
    assert refused(replay, 400) == "invalid_nonce"


async def test_native_nonce_the_server_never_issued_is_refused(
    client: httpx.AsyncClient, google_idp: StandInIdentityProvider
) -> None:
    nonce = uuid.uuid4().hex * 2  # made up by the app (or an attacker)
    body = {
        "id_token": google_idp.issue_id_token(nonce=nonce, audience="ios-client.apps.example.com"),
        "nonce": nonce,
    }
    response = await client.post("/auth/oauth/google/callback", json=body)
    assert refused(response, 400) == "invalid_nonce"


async def test_a_web_flow_id_token_is_not_accepted_on_the_native_path(
    client: httpx.AsyncClient, apple_idp: StandInIdentityProvider
) -> None:
    answer = await start(client, "apple", apple_idp)  # Apple's form_post carries an id_token
    web_token = answer.params["id_token"]
    nonce = jwt.decode(web_token, options={"verify_signature": False})["nonce"]
    response = await client.post("/auth/oauth/apple/callback", json={"id_token": web_token, "nonce": nonce})
    assert refused(response, 400) == "invalid_nonce"


async def test_a_native_nonce_is_for_one_provider(
    client: httpx.AsyncClient, google_idp: StandInIdentityProvider
) -> None:
    nonce = (await client.post("/auth/oauth/apple/nonce")).json()["nonce"]
    token = google_idp.issue_id_token(nonce=nonce, audience="ios-client.apps.example.com")
    response = await client.post("/auth/oauth/google/callback", json={"id_token": token, "nonce": nonce})
    assert response.json()["code"] == "invalid_nonce"


# -- binding the web flow to the client that started it -------------------------------------


async def test_authorize_binds_the_flow_with_an_httponly_lax_cookie_and_a_binding(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(f"/auth/oauth/google/authorize?redirect_uri={REDIRECT}")
    started = response.json()
    assert set(started) == {"authorization_url", "binding", "expires_in"}
    assert started["binding"] not in started["authorization_url"]
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"oauth_binding={started['binding']};")
    assert {"HttpOnly", "Path=/auth/oauth", "SameSite=lax", "Max-Age=600"} <= {
        part.strip() for part in cookie.split(";")
    }
    assert response.headers["cache-control"] == "no-store"


async def test_the_binding_cookie_is_secure_when_the_client_used_https(client: httpx.AsyncClient) -> None:
    plain = await client.get(f"/auth/oauth/google/authorize?redirect_uri={REDIRECT}")
    assert "secure" not in plain.headers["set-cookie"].lower()
    # 127.0.0.1 is a trusted proxy: it says the client came over HTTPS.
    forwarded = await client.get(
        f"/auth/oauth/google/authorize?redirect_uri={REDIRECT}", headers={"x-forwarded-proto": "https"}
    )
    assert "secure" in forwarded.headers["set-cookie"].lower()


async def test_code_and_state_are_redeemable_only_by_the_client_that_started_the_flow(
    client: httpx.AsyncClient,
    google_idp: StandInIdentityProvider,
    make_settings: Callable[..., AuthServiceSettings],
) -> None:
    answer = await start(client, "google", google_idp)  # the victim's flow
    stolen = {"code": answer.code, "state": answer.state}
    attacker = httpx.AsyncClient(transport=client._transport, base_url=client.base_url)  # no cookie
    async with attacker:
        own = await authorize(attacker, "google")  # a binding of the attacker's own
        attacker.cookies.clear()
        missing = await attacker.post("/auth/oauth/google/callback", json=stolen)
        mismatch = await attacker.post(
            "/auth/oauth/google/callback", json={**stolen, "binding": own["binding"]}
        )
    assert (missing.status_code, missing.json()["code"]) == (400, "binding_missing")
    assert (mismatch.status_code, mismatch.json()["code"]) == (400, "binding_mismatch")
    # The refused attempt used the state up: nobody signs in with it now.
    again = await client.post("/auth/oauth/google/callback", json=stolen)
    assert again.json()["code"] == "invalid_state"


async def test_a_garbled_binding_cookie_counts_as_none(client: httpx.AsyncClient) -> None:
    client.cookies.set("oauth_binding", "x")
    response = await client.post("/auth/oauth/google/callback", json={"code": "c", "state": "s" * 43})
    assert refused(response, 400) == "binding_missing"


async def test_a_callback_without_its_binding_keeps_the_state_for_the_real_one(
    client: httpx.AsyncClient, google_idp: StandInIdentityProvider
) -> None:
    started = await authorize(client, "google")
    answer = await google_idp.authorize(started["authorization_url"])
    client.cookies.clear()  # an app that keeps the binding itself rather than the cookie
    body = {"code": answer.code, "state": answer.state}
    missing = await client.post("/auth/oauth/google/callback", json=body)
    assert missing.json()["code"] == "binding_missing"
    signed_in = await client.post("/auth/oauth/google/callback", json={**body, "binding": started["binding"]})
    assert signed_in.status_code == 200, signed_in.text
    assert 'oauth_binding=""' in signed_in.headers["set-cookie"]  # the cookie is cleared


# -- unhappy paths ---------------------------------------------------------------------------


async def test_reused_state_is_refused(
    client: httpx.AsyncClient, google_idp: StandInIdentityProvider
) -> None:
    started = await authorize(client, "google")
    answer = await google_idp.authorize(started["authorization_url"])
    body = {"code": answer.code, "state": answer.state, "binding": started["binding"]}
    assert (await client.post("/auth/oauth/google/callback", json=body)).status_code == 200
    again = await client.post("/auth/oauth/google/callback", json=body)
    assert refused(again, 400) == "invalid_state"


@pytest.mark.parametrize("state", ["made-up-state-value-0123456789", "x"])
async def test_unknown_state_is_refused(client: httpx.AsyncClient, state: str) -> None:
    response = await client.post(
        "/auth/oauth/google/callback", json={"code": "abc", "state": state, "binding": "b" * 43}
    )
    assert refused(response, 400) == "invalid_state"


async def test_state_from_another_provider_is_refused(
    client: httpx.AsyncClient, google_idp: StandInIdentityProvider
) -> None:
    answer = await start(client, "google", google_idp)
    response = await client.post(
        "/auth/oauth/apple/callback", json={"code": answer.code, "state": answer.state}
    )
    assert refused(response, 400) == "invalid_state"


@pytest.mark.parametrize(
    ("fault", "value"),
    [
        ("nonce", "another-sign-in-nonce"),
        ("audience", "someone-else"),
        ("expired", True),
        ("bad_signature", True),
    ],
)
async def test_bad_id_tokens_from_the_token_endpoint_are_refused(
    client: httpx.AsyncClient, google_idp: StandInIdentityProvider, fault: str, value: object
) -> None:
    setattr(google_idp.faults, fault, value)
    response = await web_sign_in(client, "google", google_idp)
    assert refused(response, 401) == "invalid_id_token"
    assert response.headers["content-type"] == "application/problem+json"


async def test_provider_declining_the_authorization_is_a_clear_400(
    client: httpx.AsyncClient, apple_idp: StandInIdentityProvider
) -> None:
    answer = await start(client, "apple", apple_idp)
    response = await client.post(
        "/auth/oauth/apple/callback", data={"state": answer.state, "error": "user_cancelled_authorize"}
    )
    assert refused(response, 400) == "authorization_denied"


async def test_provider_outage_is_a_502(
    client: httpx.AsyncClient, google_idp: StandInIdentityProvider
) -> None:
    google_idp.faults.token_status = 500
    response = await web_sign_in(client, "google", google_idp)
    assert refused(response, 502) == "provider_unavailable"


async def test_unknown_provider_is_404(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get(f"/auth/oauth/myspace/authorize?redirect_uri={REDIRECT}"),
        await client.post("/auth/oauth/myspace/callback", json={"code": "c", "state": "s" * 20}),
        await client.post("/auth/oauth/myspace/nonce"),
    ):
        assert refused(response, 404) == "unknown_provider"


async def test_provider_without_configuration_is_404_not_a_crash(
    make_settings: Callable[..., AuthServiceSettings], google_idp: StandInIdentityProvider
) -> None:
    app = oauth_app(make_settings(), **oauth_values(google_idp, None))
    async with serve_app(app) as client:
        response = await client.get(f"/auth/oauth/apple/authorize?redirect_uri={REDIRECT}")
        native = await client.post("/auth/oauth/apple/callback", json={"id_token": "x", "nonce": "n" * 20})
        nonce = await client.post("/auth/oauth/apple/nonce")
    for answer in (response, native, nonce):
        assert refused(answer, 404) == "provider_not_configured"
        assert "Apple" in answer.json()["detail"]


async def test_redirect_uri_must_be_on_the_allow_list(client: httpx.AsyncClient) -> None:
    for uri in ("https://evil.example.com/cb", REDIRECT + "/extra", REDIRECT.upper()):
        response = await client.get("/auth/oauth/google/authorize", params={"redirect_uri": uri})
        assert refused(response, 400) == "redirect_uri_not_allowed"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"code": "c"},
        {"state": "s" * 20},
        {"id_token": "x"},
        {"nonce": "n" * 20},
        {"id_token": "x", "nonce": "short"},
    ],
)
async def test_callback_needs_a_code_and_state_or_an_id_token_and_nonce(
    client: httpx.AsyncClient, body: dict[str, str]
) -> None:
    response = await client.post("/auth/oauth/google/callback", json=body)
    assert refused(response, 422) == "validation_error"


async def test_provider_email_of_an_existing_account_is_409_account_exists_not_a_silent_link(
    client: httpx.AsyncClient, google_idp: StandInIdentityProvider, engine: AsyncEngine
) -> None:
    user, _ = await signed_in_user(client)
    google_idp.user.email = user.email.upper()
    response = await web_sign_in(client, "google", google_idp)
    assert refused(response, 409) == "account_exists"
    assert await link_rows(engine, user.id) == []


async def test_an_unverified_password_account_past_its_hold_gives_the_address_to_the_provider_user(
    make_settings: Callable[..., AuthServiceSettings],
    google_idp: StandInIdentityProvider,
    engine: AsyncEngine,
) -> None:
    app = oauth_app(make_settings(unverified_email_hold_seconds=0), **oauth_values(google_idp, None))
    async with serve_app(app) as client:
        squatter, _ = await signed_in_user(client)  # registered, never verified the address
        google_idp.user.email = squatter.email
        signed_in = await web_sign_in(client, "google", google_idp)
        owner = await me(client, Tokens.from_response(signed_in))
    assert owner["email"] == squatter.email and owner["id"] != str(squatter.id)
    async with session_factory(engine)() as db:
        assert await db.get(User, squatter.id) is None  # released, not linked


async def test_within_its_hold_an_unverified_account_keeps_the_address(
    client: httpx.AsyncClient, google_idp: StandInIdentityProvider, engine: AsyncEngine
) -> None:
    squatter, _ = await signed_in_user(client)
    google_idp.user.email = squatter.email
    assert refused(await web_sign_in(client, "google", google_idp), 409) == "account_exists"
    assert await link_rows(engine, squatter.id) == []


async def test_unverified_provider_email_creates_no_account(
    client: httpx.AsyncClient, google_idp: StandInIdentityProvider, engine: AsyncEngine
) -> None:
    google_idp.user.email_verified = False
    response = await web_sign_in(client, "google", google_idp)
    assert refused(response, 403) == "email_not_verified"
    async with session_factory(engine)() as db:
        assert await db.scalar(select(User).where(User.email == google_idp.user.email)) is None


# -- linking ---------------------------------------------------------------------------------


async def test_password_user_links_google_then_signs_in_with_it_and_unlinks(
    client: httpx.AsyncClient, google_idp: StandInIdentityProvider, outbox: Callable[..., Any]
) -> None:
    user, tokens = await signed_in_user(client)
    answer = await start(client, "google", google_idp, **tokens.headers)
    linked = await client.post(
        "/auth/oauth/google/link", json={"code": answer.code, "state": answer.state}, headers=tokens.headers
    )
    assert linked.status_code == 200, linked.text
    assert linked.json()["provider"] == "google"
    via_google = Tokens.from_response(await web_sign_in(client, "google", google_idp))
    assert (await me(client, via_google))["id"] == str(user.id)
    unlinked = await client.delete("/auth/oauth/google", headers=tokens.headers)
    assert unlinked.status_code == 204
    events = [event for event, _ in await outbox(user.id)]
    assert schema.OAUTH_LINKED in events
    assert events[-1] == schema.OAUTH_UNLINKED
    # Unlinked: the same Google account no longer signs in to this user.
    stranger = Tokens.from_response(await web_sign_in(client, "google", google_idp))
    assert (await me(client, stranger))["id"] != str(user.id)


async def test_web_link_needs_a_state_started_by_the_same_user(
    client: httpx.AsyncClient, google_idp: StandInIdentityProvider
) -> None:
    _, tokens = await signed_in_user(client)
    plain = await start(client, "google", google_idp)  # a sign-in state, not a link state
    response = await client.post(
        "/auth/oauth/google/link", json={"code": plain.code, "state": plain.state}, headers=tokens.headers
    )
    assert refused(response, 400) == "invalid_state"
    _, other = await signed_in_user(client)
    theirs = await start(client, "google", google_idp, **other.headers)
    response = await client.post(
        "/auth/oauth/google/link", json={"code": theirs.code, "state": theirs.state}, headers=tokens.headers
    )
    assert response.json()["code"] == "invalid_state"
    link_state = await start(client, "google", google_idp, **tokens.headers)
    response = await client.post(
        "/auth/oauth/google/callback", json={"code": link_state.code, "state": link_state.state}
    )
    assert response.json()["code"] == "invalid_state"  # a link state cannot sign anyone in


async def test_link_and_unlink_need_a_signed_in_user(client: httpx.AsyncClient) -> None:
    link = await client.post("/auth/oauth/google/link", json={"id_token": "x", "nonce": "n" * 20})
    unlink = await client.delete("/auth/oauth/google")
    authorize = await client.get(f"/auth/oauth/google/authorize?redirect_uri={REDIRECT}&link=true")
    for response in (link, unlink, authorize):
        assert refused(response, 401) == "missing_token"


async def test_a_provider_account_links_to_one_user_only(
    client: httpx.AsyncClient, apple_idp: StandInIdentityProvider
) -> None:
    _, first = await signed_in_user(client)
    _, second = await signed_in_user(client)

    async def native() -> dict[str, str]:
        return await native_body(client, "apple", apple_idp)

    assert (
        await client.post("/auth/oauth/apple/link", json=await native(), headers=first.headers)
    ).status_code == 200
    again = await client.post("/auth/oauth/apple/link", json=await native(), headers=first.headers)
    assert again.status_code == 200  # linking the same account twice changes nothing
    taken = await client.post("/auth/oauth/apple/link", json=await native(), headers=second.headers)
    assert refused(taken, 409) == "provider_account_in_use"
    apple_idp.user = IdpUser(sub="another-apple-id", email=unique_email())
    other = await client.post("/auth/oauth/apple/link", json=await native(), headers=first.headers)
    assert refused(other, 409) == "provider_already_linked"


async def test_unlinking_the_last_sign_in_method_is_refused(
    client: httpx.AsyncClient, google_idp: StandInIdentityProvider, apple_idp: StandInIdentityProvider
) -> None:
    tokens = Tokens.from_response(await web_sign_in(client, "google", google_idp))  # no password
    only = await client.delete("/auth/oauth/google", headers=tokens.headers)
    assert refused(only, 409) == "last_sign_in_method"
    answer = await start(client, "apple", apple_idp, **tokens.headers)
    linked = await client.post("/auth/oauth/apple/link", data=answer.params, headers=tokens.headers)
    assert linked.status_code == 200, linked.text
    assert (await client.delete("/auth/oauth/google", headers=tokens.headers)).status_code == 204
    last = await client.delete("/auth/oauth/apple", headers=tokens.headers)
    assert last.json()["code"] == "last_sign_in_method"


async def test_unlinking_what_is_not_linked_is_404(client: httpx.AsyncClient) -> None:
    _, tokens = await signed_in_user(client)
    response = await client.delete("/auth/oauth/apple", headers=tokens.headers)
    assert refused(response, 404) == "provider_not_linked"
    unknown = await client.delete("/auth/oauth/myspace", headers=tokens.headers)
    assert unknown.json()["code"] == "unknown_provider"


async def test_unlinking_apple_revokes_its_token_at_apple(
    client: httpx.AsyncClient, apple_idp: StandInIdentityProvider, engine: AsyncEngine
) -> None:
    _, tokens = await signed_in_user(client)
    answer = await start(client, "apple", apple_idp, **tokens.headers)
    assert (
        await client.post("/auth/oauth/apple/link", data=answer.params, headers=tokens.headers)
    ).status_code == 200
    [row] = await link_rows(engine, uuid.UUID(tokens.claims["sub"]))
    assert row.provider == "apple"
    response = await client.delete("/auth/oauth/apple", headers=tokens.headers)
    assert response.status_code == 204
    assert apple_idp.revoked[-1]["hint"] == "refresh_token"
    assert apple_idp.revoked[-1]["token"].startswith("apple-refresh-")
    assert await link_rows(engine, uuid.UUID(tokens.claims["sub"])) == []


async def test_account_deletion_revokes_stored_tokens_and_rotation_reencrypts(
    client: httpx.AsyncClient, service: OAuthService, apple_idp: StandInIdentityProvider, engine: AsyncEngine
) -> None:
    tokens = Tokens.from_response(await web_sign_in(client, "apple", apple_idp))
    user_id = uuid.UUID(tokens.claims["sub"])
    newer = TokenEncryptionKey.generate("2026-07")
    service.cipher = TokenCipher([newer, KEY])
    async with session_factory(engine)() as db:
        assert await reencrypt_stored_tokens(db, service.cipher, batch=1) >= 2
    async with session_factory(engine)() as db:
        assert await reencrypt_stored_tokens(db, service.cipher) == 0  # nothing left to move
    [row] = await link_rows(engine, user_id)
    assert str(row.refresh_token).startswith("v1.2026-07.")
    async with session_factory(engine)() as db:
        assert await service.revoke_provider_tokens(db, user_id) == 1
    assert apple_idp.revoked[-1]["token"].startswith("apple-refresh-")
    assert (await client.delete("/auth/me", headers=bearer(tokens.access_token))).status_code == 204
