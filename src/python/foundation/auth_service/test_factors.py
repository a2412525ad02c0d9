"""Second factors through auth-service's API: TOTP with recovery codes, passkeys over the real
WebAuthn ceremonies (a software authenticator), the sign-in step, throttling and ``amr``."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pyotp
import pytest
from fastapi import FastAPI

from foundation.auth.encryption import TokenEncryptionKey
from foundation.auth_service.app import create_app
from foundation.auth_service.settings import AuthServiceSettings
from foundation.events import schema
from tests.helpers.apps import serve_app
from tests.helpers.authenticator import SoftwareAuthenticator
from tests.helpers.users import RegisteredUser, Tokens, signed_in_user

ORIGIN = "http://localhost:8000"
KEY = TokenEncryptionKey.generate("2026-12")


def refused(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return str(response.json()["code"])


@pytest.fixture()
def make_app(make_settings: Callable[..., AuthServiceSettings]) -> Callable[..., FastAPI]:
    def make(**overrides: Any) -> FastAPI:
        return create_app(make_settings(oauth_token_encryption_keys=KEY.spec(), **overrides))

    return make


@pytest.fixture()
async def client(make_app: Callable[..., FastAPI]) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_app(make_app()) as client:
        yield client


async def login(client: httpx.AsyncClient, user: RegisteredUser) -> httpx.Response:
    return await client.post("/auth/login", json={"email": user.email, "password": user.password})


async def mfa_token(client: httpx.AsyncClient, user: RegisteredUser) -> dict[str, Any]:
    response = await login(client, user)
    assert refused(response, 403) == "mfa_required"
    return response.json()  # type: ignore[no-any-return]


def code_at(secret: str, offset_steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * offset_steps)


async def with_totp(client: httpx.AsyncClient) -> tuple[RegisteredUser, Tokens, str, list[str]]:
    """A signed-in user who set up an authenticator app: (user, tokens, secret, recovery codes)."""
    user, tokens = await signed_in_user(client)
    started = await client.post("/auth/mfa/totp", headers=tokens.headers)
    assert started.status_code == 201, started.text
    secret = started.json()["secret"]
    confirmed = await client.post(
        "/auth/mfa/totp/confirm", json={"code": code_at(secret)}, headers=tokens.headers
    )
    assert confirmed.status_code == 200, confirmed.text
    return user, tokens, secret, confirmed.json()["recovery_codes"]


async def with_passkey(
    client: httpx.AsyncClient, authenticator: SoftwareAuthenticator
) -> tuple[RegisteredUser, Tokens, dict[str, Any]]:
    user, tokens = await signed_in_user(client)
    options = await client.post("/auth/passkeys/registration-options", headers=tokens.headers)
    assert options.status_code == 200, options.text
    credential = authenticator.create(options.json(), ORIGIN)
    registered = await client.post(
        "/auth/passkeys", json={"credential": credential, "name": "Laptop"}, headers=tokens.headers
    )
    assert registered.status_code == 201, registered.text
    return user, tokens, registered.json()


# -- TOTP ------------------------------------------------------------------------------------


async def test_an_authenticator_app_makes_sign_in_ask_for_its_code_and_amr_says_so(
    client: httpx.AsyncClient, outbox: Callable[..., Any]
) -> None:
    user, tokens, secret, recovery = await with_totp(client)
    assert len(recovery) == 10 and len(set(recovery)) == 10
    step = await mfa_token(client, user)
    assert step["methods"] == ["totp", "recovery_code"]
    assert step["expires_in"] == 300
    assert "access_token" not in step
    signed_in = await client.post(
        "/auth/mfa/verify", json={"mfa_token": step["mfa_token"], "code": code_at(secret, 1)}
    )
    second = Tokens.from_response(signed_in)
    assert second.claims["amr"] == ["pwd", "otp", "mfa"]
    assert signed_in.headers["cache-control"] == "no-store"
    refreshed = await client.post("/auth/refresh", json={"refresh_token": second.refresh_token})
    assert Tokens.from_response(refreshed).claims["amr"] == ["pwd", "otp", "mfa"]  # the session's, kept
    assert tokens.claims["amr"] == ["pwd"]  # signed in before the factor existed
    kinds = [kind for kind, _ in await outbox(user.id)]
    assert schema.MFA_FACTOR_ADDED in kinds


async def test_the_otpauth_uri_names_the_issuer_and_the_account(client: httpx.AsyncClient) -> None:
    user, tokens = await signed_in_user(client)
    started = (await client.post("/auth/mfa/totp", headers=tokens.headers)).json()
    parsed = pyotp.parse_uri(started["uri"])
    assert parsed.secret == started["secret"] and len(started["secret"]) == 32
    assert parsed.issuer == "Foundation" and parsed.name == user.email


async def test_a_code_works_once_and_an_older_one_never(client: httpx.AsyncClient) -> None:
    user, _, secret, _ = await with_totp(client)
    code = code_at(secret, 1)
    first = await client.post(
        "/auth/mfa/verify", json={"mfa_token": (await mfa_token(client, user))["mfa_token"], "code": code}
    )
    assert first.status_code == 200
    token = (await mfa_token(client, user))["mfa_token"]
    again = await client.post("/auth/mfa/verify", json={"mfa_token": token, "code": code})
    assert refused(again, 401) == "invalid_second_factor"
    older = await client.post("/auth/mfa/verify", json={"mfa_token": token, "code": code_at(secret, 0)})
    assert refused(older, 401) == "invalid_second_factor"


async def test_an_mfa_token_allows_a_few_attempts_then_is_gone(client: httpx.AsyncClient) -> None:
    user, _, secret, _ = await with_totp(client)
    token = (await mfa_token(client, user))["mfa_token"]
    for _ in range(5):
        wrong = await client.post("/auth/mfa/verify", json={"mfa_token": token, "code": "000000"})
        assert refused(wrong, 401) == "invalid_second_factor"
    right = await client.post("/auth/mfa/verify", json={"mfa_token": token, "code": code_at(secret, 1)})
    assert refused(right, 401) == "invalid_mfa_token"
    made_up = await client.post("/auth/mfa/verify", json={"mfa_token": "x" * 43, "code": "123456"})
    assert refused(made_up, 401) == "invalid_mfa_token"


async def test_guessing_the_code_is_throttled_per_account_over_every_token(
    make_app: Callable[..., FastAPI], outbox: Callable[..., Any]
) -> None:
    async with serve_app(make_app(mfa_max_failures_per_account=4)) as client:
        user, _, secret, _ = await with_totp(client)
        tokens = [(await mfa_token(client, user))["mfa_token"] for _ in range(3)]
        # Twelve guesses at once over three tokens: the account's limit holds.
        guesses = await asyncio.gather(
            *(client.post("/auth/mfa/verify", json={"mfa_token": t, "code": "000000"}) for t in tokens * 4)
        )
        codes = [r.json()["code"] for r in guesses]
        assert codes.count("invalid_second_factor") == 4  # counted before they are checked
        assert codes.count("too_many_attempts") == 8
        assert all(int(r.headers["retry-after"]) > 0 for r in guesses if r.status_code == 429)
        fresh = (await mfa_token(client, user))["mfa_token"]
        right = await client.post("/auth/mfa/verify", json={"mfa_token": fresh, "code": code_at(secret, 1)})
        assert refused(right, 429) == "too_many_attempts"  # even the right code waits
    failed = [data for kind, data in await outbox(user.id) if kind == schema.MFA_FAILED]
    assert len(failed) == 4 and {d["method"] for d in failed} == {"totp"}


async def test_a_recovery_code_signs_in_once(client: httpx.AsyncClient, outbox: Callable[..., Any]) -> None:
    user, tokens, _, recovery = await with_totp(client)
    code = recovery[3].upper().replace("-", " ")  # typed as the user reads it
    token = (await mfa_token(client, user))["mfa_token"]
    used = await client.post("/auth/mfa/verify", json={"mfa_token": token, "recovery_code": code})
    assert Tokens.from_response(used).claims["amr"] == ["pwd", "otp", "mfa"]
    token = (await mfa_token(client, user))["mfa_token"]
    again = await client.post("/auth/mfa/verify", json={"mfa_token": token, "recovery_code": recovery[3]})
    assert refused(again, 401) == "invalid_second_factor"
    listed = (await client.get("/auth/mfa", headers=tokens.headers)).json()
    assert listed["recovery_codes_left"] == 9 and listed["totp"] is True
    assert (schema.MFA_RECOVERY_CODE_USED, {"remaining": 9}) in await outbox(user.id)


async def test_new_recovery_codes_replace_the_old_ones(client: httpx.AsyncClient) -> None:
    user, tokens, _, old = await with_totp(client)
    new = (await client.post("/auth/mfa/recovery-codes", headers=tokens.headers)).json()["recovery_codes"]
    assert len(new) == 10 and not set(new) & set(old)
    token = (await mfa_token(client, user))["mfa_token"]
    stale = await client.post("/auth/mfa/verify", json={"mfa_token": token, "recovery_code": old[0]})
    assert refused(stale, 401) == "invalid_second_factor"
    fresh = await client.post("/auth/mfa/verify", json={"mfa_token": token, "recovery_code": new[0]})
    assert fresh.status_code == 200


async def test_removing_the_app_makes_sign_in_one_step_again(client: httpx.AsyncClient) -> None:
    user, tokens, _, _ = await with_totp(client)
    assert (await client.delete("/auth/mfa/totp", headers=tokens.headers)).status_code == 204
    assert (await login(client, user)).status_code == 200
    listed = (await client.get("/auth/mfa", headers=tokens.headers)).json()
    assert listed == {"totp": False, "passkeys": [], "recovery_codes_left": 0}
    assert refused(await client.delete("/auth/mfa/totp", headers=tokens.headers), 404) == "totp_not_enabled"
    refused_codes = await client.post("/auth/mfa/recovery-codes", headers=tokens.headers)
    assert refused(refused_codes, 409) == "no_second_factor"


async def test_enrolment_refusals(client: httpx.AsyncClient) -> None:
    _, tokens = await signed_in_user(client)
    nothing = await client.post("/auth/mfa/totp/confirm", json={"code": "123456"}, headers=tokens.headers)
    assert refused(nothing, 409) == "totp_not_pending"
    secret = (await client.post("/auth/mfa/totp", headers=tokens.headers)).json()["secret"]
    wrong = await client.post("/auth/mfa/totp/confirm", json={"code": "000000"}, headers=tokens.headers)
    assert refused(wrong, 401) == "invalid_second_factor"
    ok = await client.post("/auth/mfa/totp/confirm", json={"code": code_at(secret)}, headers=tokens.headers)
    assert ok.status_code == 200
    twice = await client.post("/auth/mfa/totp", headers=tokens.headers)
    assert refused(twice, 409) == "totp_already_enabled"
    for body in ({"code": "12345"}, {"code": "abcdef"}, {}):
        malformed = await client.post("/auth/mfa/totp/confirm", json=body, headers=tokens.headers)
        assert refused(malformed, 422) == "validation_error"


async def test_setting_up_and_removing_factors_needs_a_fresh_sign_in(
    make_app: Callable[..., FastAPI],
) -> None:
    async with serve_app(make_app(fresh_auth_max_age_seconds=0)) as client:
        _, tokens = await signed_in_user(client)
        await asyncio.sleep(1.01)  # auth_time is in whole seconds
        for method, path in (
            ("POST", "/auth/mfa/totp"),
            ("DELETE", "/auth/mfa/totp"),
            ("POST", "/auth/mfa/recovery-codes"),
            ("POST", "/auth/passkeys/registration-options"),
            ("DELETE", f"/auth/passkeys/{uuid.uuid4()}"),
        ):
            response = await client.request(method, path, headers=tokens.headers)
            assert refused(response, 401) == "fresh_authentication_required", path
        for method, path in (("GET", "/auth/mfa"), ("POST", "/auth/mfa/totp")):
            assert refused(await client.request(method, path), 401) == "missing_token"


async def test_the_verify_body_takes_exactly_one_factor(client: httpx.AsyncClient) -> None:
    for body in (
        {"mfa_token": "x" * 43},
        {"mfa_token": "x" * 43, "code": "123456", "recovery_code": "abcd-efgh-jkmn"},
        {"mfa_token": "x" * 43, "code": "12345"},
        {"code": "123456"},
    ):
        assert refused(await client.post("/auth/mfa/verify", json=body), 422) == "validation_error"


# -- passkeys --------------------------------------------------------------------------------


async def test_a_passkey_is_a_second_factor_after_the_password(client: httpx.AsyncClient) -> None:
    authenticator = SoftwareAuthenticator()
    user, tokens, registered = await with_passkey(client, authenticator)
    assert registered["passkey"]["name"] == "Laptop"
    assert len(registered["recovery_codes"]) == 10
    step = await mfa_token(client, user)
    assert step["methods"] == ["passkey", "recovery_code"]
    options = await client.post("/auth/mfa/passkey-options", json={"mfa_token": step["mfa_token"]})
    assert options.status_code == 200, options.text
    assert [c["id"] for c in options.json()["allowCredentials"]]  # this user's passkeys only
    assertion = authenticator.get(options.json(), ORIGIN)
    signed_in = await client.post(
        "/auth/mfa/verify", json={"mfa_token": step["mfa_token"], "credential": assertion}
    )
    assert Tokens.from_response(signed_in).claims["amr"] == ["pwd", "hwk", "mfa"]
    listed = (await client.get("/auth/mfa", headers=tokens.headers)).json()
    assert listed["passkeys"][0]["last_used_at"] is not None


async def test_signing_in_with_a_passkey_alone(client: httpx.AsyncClient) -> None:
    authenticator = SoftwareAuthenticator()
    user, _, _ = await with_passkey(client, authenticator)
    started = (await client.post("/auth/passkeys/sign-in-options")).json()
    assert started["options"]["userVerification"] == "required"
    assertion = authenticator.get(started["options"], ORIGIN)
    response = await client.post(
        "/auth/passkeys/sign-in", json={"handle": started["handle"], "credential": assertion}
    )
    tokens = Tokens.from_response(response)
    assert tokens.claims["amr"] == ["hwk", "mfa"]
    assert tokens.claims["sub"] == str(user.id)
    replayed = await client.post(
        "/auth/passkeys/sign-in", json={"handle": started["handle"], "credential": assertion}
    )
    assert refused(replayed, 400) == "invalid_passkey"  # the ceremony's challenge is spent


async def test_passkey_sign_in_refuses_what_the_ceremony_does_not_prove(client: httpx.AsyncClient) -> None:
    authenticator = SoftwareAuthenticator()
    await with_passkey(client, authenticator)

    async def attempt(credential_of: Callable[[dict[str, Any]], dict[str, Any]]) -> str:
        started = (await client.post("/auth/passkeys/sign-in-options")).json()
        credential = credential_of(started["options"])
        response = await client.post(
            "/auth/passkeys/sign-in", json={"handle": started["handle"], "credential": credential}
        )
        return refused(response, 400)

    # Another site's page asked for it.
    assert (
        await attempt(lambda options: authenticator.get(options, "https://evil.example.com"))
        == "invalid_passkey"
    )
    # A security key that only tests presence: no user verification, no passwordless sign-in.
    authenticator.user_verifying = False
    assert await attempt(lambda options: authenticator.get(options, ORIGIN)) == "invalid_passkey"
    authenticator.user_verifying = True
    # A cloned authenticator: its counter is behind the one the server saw last.
    started = (await client.post("/auth/passkeys/sign-in-options")).json()
    good = authenticator.get(started["options"], ORIGIN)
    signed_in = await client.post(
        "/auth/passkeys/sign-in", json={"handle": started["handle"], "credential": good}
    )
    assert signed_in.status_code == 200
    authenticator.credentials[0].sign_count -= 1
    assert await attempt(lambda options: authenticator.get(options, ORIGIN)) == "invalid_passkey"
    # A credential the server never registered.
    stranger = SoftwareAuthenticator()
    stranger.create(
        {
            "rp": {"id": "localhost"},
            "user": {"id": "AAAA"},
            "challenge": "AAAA",
            "pubKeyCredParams": [{"alg": -7}],
        },
        ORIGIN,
    )
    assert await attempt(lambda options: stranger.get(options, ORIGIN)) == "invalid_passkey"
    unknown_handle = await client.post(
        "/auth/passkeys/sign-in",
        json={
            "handle": "h" * 43,
            "credential": authenticator.get({"rpId": "localhost", "challenge": "AAAA"}, ORIGIN),
        },
    )
    assert refused(unknown_handle, 400) == "invalid_passkey"


async def test_another_users_passkey_is_no_second_factor(client: httpx.AsyncClient) -> None:
    mine, theirs = SoftwareAuthenticator(), SoftwareAuthenticator()
    user, _, _ = await with_passkey(client, mine)
    await with_passkey(client, theirs)
    step = await mfa_token(client, user)
    options = (await client.post("/auth/mfa/passkey-options", json={"mfa_token": step["mfa_token"]})).json()
    foreign = theirs.get({**options, "allowCredentials": []}, ORIGIN)
    response = await client.post(
        "/auth/mfa/verify", json={"mfa_token": step["mfa_token"], "credential": foreign}
    )
    assert refused(response, 400) == "invalid_passkey"


async def test_passkey_registration_refusals(client: httpx.AsyncClient) -> None:
    authenticator = SoftwareAuthenticator()
    _, tokens = await signed_in_user(client)
    unasked = authenticator.create(
        {
            "rp": {"id": "localhost"},
            "user": {"id": "AAAA"},
            "challenge": "AAAA",
            "pubKeyCredParams": [{"alg": -7}],
        },
        ORIGIN,
    )
    response = await client.post("/auth/passkeys", json={"credential": unasked}, headers=tokens.headers)
    assert refused(response, 400) == "invalid_passkey"  # no options were asked for
    options = (await client.post("/auth/passkeys/registration-options", headers=tokens.headers)).json()
    elsewhere = authenticator.create(options, "https://evil.example.com")
    response = await client.post("/auth/passkeys", json={"credential": elsewhere}, headers=tokens.headers)
    assert refused(response, 400) == "invalid_passkey"
    garbage = await client.post("/auth/passkeys", json={"credential": {"id": "x"}}, headers=tokens.headers)
    assert refused(garbage, 400) == "invalid_passkey"


async def test_removing_a_passkey(client: httpx.AsyncClient, outbox: Callable[..., Any]) -> None:
    user, tokens, registered = await with_passkey(client, SoftwareAuthenticator())
    passkey_id = registered["passkey"]["id"]
    assert (await client.delete(f"/auth/passkeys/{passkey_id}", headers=tokens.headers)).status_code == 204
    assert (
        refused(await client.delete(f"/auth/passkeys/{passkey_id}", headers=tokens.headers), 404)
        == "passkey_not_found"
    )
    assert (await login(client, user)).status_code == 200
    kinds = [kind for kind, _ in await outbox(user.id)]
    assert kinds.count(schema.MFA_FACTOR_ADDED) == 1 and kinds.count(schema.MFA_FACTOR_REMOVED) == 1
