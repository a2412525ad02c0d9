from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from foundation.devstack.mail_catcher import MailCatcher
from foundation.events import schema
from foundation.mail.templates import text_of
from tests.helpers.apps import state_of
from tests.helpers.mail import mail_fixtures, mailed, token_in
from tests.helpers.users import RegisteredUser, Tokens, login, register, signed_in_user, unique_email

catcher, mail_app, mail_client = mail_fixtures()

NEW_PASSWORD = "amber-Ferry-71-slowly-Kite"
CONFIRM = "Confirm your email address"


async def change_password(
    client: httpx.AsyncClient, tokens: Tokens, current: str, new: str = NEW_PASSWORD
) -> httpx.Response:
    return await client.post(
        "/auth/password/change",
        json={"current_password": current, "new_password": new},
        headers=tokens.headers,
    )


async def change_email(
    client: httpx.AsyncClient, tokens: Tokens, new_email: str, password: str | None
) -> httpx.Response:
    body = {"new_email": new_email} if password is None else {"new_email": new_email, "password": password}
    return await client.post("/auth/email/change", json=body, headers=tokens.headers)


def stale(app: FastAPI) -> Callable[[], None]:
    """Make the next sign-ins look 301 s old (past FRESH_AUTH_MAX_AGE_SECONDS); call to undo."""
    service = state_of(app)["session_service"]
    real_clock = service.clock
    service.clock = lambda: real_clock() - timedelta(seconds=301)

    def undo() -> None:
        service.clock = real_clock

    return undo


# -- password change -------------------------------------------------------------------------


async def test_changing_the_password_ends_the_other_sessions_and_keeps_this_one(
    mail_client: httpx.AsyncClient, catcher: MailCatcher, outbox: Callable[..., Any]
) -> None:
    user, tokens = await signed_in_user(mail_client)
    other = await login(mail_client, user)
    response = await change_password(mail_client, tokens, user.password)
    assert response.status_code == 204
    assert (await mail_client.get("/auth/me", headers=tokens.headers)).status_code == 200
    assert (await mail_client.post("/auth/refresh", json={"refresh_token": tokens.refresh_token})).is_success
    assert (await mail_client.get("/auth/me", headers=other.headers)).status_code == 401
    assert (
        await mail_client.post("/auth/refresh", json={"refresh_token": other.refresh_token})
    ).status_code == 401
    assert (
        await mail_client.post("/auth/login", json={"email": user.email, "password": user.password})
    ).status_code == 401
    await login(mail_client, RegisteredUser(user.id, user.email, NEW_PASSWORD))
    notice = await mailed(catcher, user.email, "Your password was changed")
    assert "by someone signed in to it" in text_of(notice.message)
    assert (schema.USER_PASSWORD_CHANGED, {"sessions_ended": 1}) in await outbox(user.id)


async def test_a_wrong_current_password_is_403_and_counts_as_a_failed_sign_in(
    mail_client: httpx.AsyncClient,
) -> None:
    user, tokens = await signed_in_user(mail_client)
    codes = [
        (await change_password(mail_client, tokens, "not-the-Password-1")).json()["code"] for _ in range(6)
    ]
    # LOGIN_MAX_FAILURES_PER_ACCOUNT_ADDRESS (5) wrong guesses, then the sign-in throttle refuses.
    assert codes == ["wrong_password"] * 5 + ["too_many_attempts"]
    assert (await change_password(mail_client, tokens, user.password)).status_code == 429


async def test_a_weak_new_password_is_422(mail_client: httpx.AsyncClient) -> None:
    user, tokens = await signed_in_user(mail_client)
    response = await change_password(mail_client, tokens, user.password, "password123")
    assert (response.status_code, response.json()["code"]) == (422, "weak_password")
    await login(mail_client, user)  # unchanged


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"current_password": "x"},
        {"new_password": NEW_PASSWORD},
        {"current_password": "", "new_password": "y"},
    ],
)
async def test_a_bad_password_change_body_is_422(
    mail_client: httpx.AsyncClient, body: dict[str, str]
) -> None:
    _, tokens = await signed_in_user(mail_client)
    response = await mail_client.post("/auth/password/change", json=body, headers=tokens.headers)
    assert (response.status_code, response.json()["code"]) == (422, "validation_error")


async def test_changing_the_password_needs_a_signed_in_user(mail_client: httpx.AsyncClient) -> None:
    response = await mail_client.post(
        "/auth/password/change", json={"current_password": "x" * 10, "new_password": NEW_PASSWORD}
    )
    assert (response.status_code, response.json()["code"]) == (401, "missing_token")


# -- email change ----------------------------------------------------------------------------


async def test_an_email_change_takes_effect_when_the_new_address_is_confirmed(
    mail_client: httpx.AsyncClient, catcher: MailCatcher, outbox: Callable[..., Any]
) -> None:
    user, tokens = await signed_in_user(mail_client)
    new_email = unique_email("moved")
    response = await change_email(mail_client, tokens, new_email, user.password)
    assert response.status_code == 202

    notice = await mailed(catcher, user.email, "Your email address is being changed")
    assert new_email not in text_of(notice.message)  # masked: the old address may no longer be theirs
    assert new_email.split("@")[1] in text_of(notice.message)
    link = await mailed(catcher, new_email, CONFIRM)
    # Until then the account is still the old address's.
    assert (await mail_client.get("/auth/me", headers=tokens.headers)).json()["email"] == user.email
    await login(mail_client, user)

    verified = await mail_client.post("/auth/email/verify", json={"token": token_in(link)})
    assert verified.json() == {"email": new_email, "email_verified": True}
    me = (await mail_client.get("/auth/me", headers=tokens.headers)).json()
    assert (me["email"], me["email_verified"]) == (new_email, True)
    await login(mail_client, RegisteredUser(user.id, new_email, user.password))
    old = await mail_client.post("/auth/login", json={"email": user.email, "password": user.password})
    assert old.status_code == 401
    events = await outbox(user.id)
    assert (schema.USER_EMAIL_CHANGED, {}) in events
    assert (schema.USER_EMAIL_VERIFIED, {"email_change": True}) in events
    assert schema.USER_EMAIL_CHANGE_REQUESTED in [kind for kind, _ in events]


async def test_an_email_change_needs_a_fresh_sign_in(
    mail_client: httpx.AsyncClient, mail_app: FastAPI
) -> None:
    user = await register(mail_client)
    undo = stale(mail_app)
    tokens = await login(mail_client, user)
    undo()
    response = await change_email(mail_client, tokens, unique_email(), user.password)
    assert (response.status_code, response.json()["code"]) == (401, "fresh_authentication_required")
    assert "insufficient_user_authentication" in response.headers["www-authenticate"]


@pytest.mark.parametrize("password", [None, "not-the-Password-1"])
async def test_an_email_change_needs_the_password(
    mail_client: httpx.AsyncClient, password: str | None
) -> None:
    _, tokens = await signed_in_user(mail_client)
    response = await change_email(mail_client, tokens, unique_email(), password)
    assert (response.status_code, response.json()["code"]) == (403, "wrong_password")


async def test_an_email_change_to_a_taken_or_the_same_address_is_refused(
    mail_client: httpx.AsyncClient,
) -> None:
    user, tokens = await signed_in_user(mail_client)
    other = await register(mail_client)
    taken = await change_email(mail_client, tokens, other.email.upper(), user.password)
    assert (taken.status_code, taken.json()["code"]) == (409, "email_taken")
    same = await change_email(mail_client, tokens, user.email.upper(), user.password)
    assert (same.status_code, same.json()["code"]) == (422, "email_unchanged")


async def test_an_address_taken_while_its_link_waited_is_409_at_verification(
    mail_client: httpx.AsyncClient, catcher: MailCatcher
) -> None:
    user, tokens = await signed_in_user(mail_client)
    wanted = unique_email("wanted")
    assert (await change_email(mail_client, tokens, wanted, user.password)).status_code == 202
    link = await mailed(catcher, wanted, CONFIRM)
    await register(mail_client, wanted)
    response = await mail_client.post("/auth/email/verify", json={"token": token_in(link)})
    assert (response.status_code, response.json()["code"]) == (409, "email_taken")
    assert (await mail_client.get("/auth/me", headers=tokens.headers)).json()["email"] == user.email


async def test_another_users_change_link_changes_only_that_users_address(
    mail_client: httpx.AsyncClient, catcher: MailCatcher
) -> None:
    alice, alice_tokens = await signed_in_user(mail_client)
    bob, bob_tokens = await signed_in_user(mail_client)
    target = unique_email("alice-new")
    await change_email(mail_client, alice_tokens, target, alice.password)
    link = token_in(await mailed(catcher, target, CONFIRM))
    # Bob opening Alice's link while signed in changes nothing of his.
    response = await mail_client.post("/auth/email/verify", json={"token": link}, headers=bob_tokens.headers)
    assert response.json()["email"] == target
    assert (await mail_client.get("/auth/me", headers=bob_tokens.headers)).json()["email"] == bob.email
    assert (await mail_client.get("/auth/me", headers=alice_tokens.headers)).json()["email"] == target


@pytest.mark.parametrize(
    "body", [{}, {"new_email": "not-an-email", "password": "x"}, {"password": "x"}, {"new_email": 3}]
)
async def test_a_bad_email_change_body_is_422(mail_client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    _, tokens = await signed_in_user(mail_client)
    response = await mail_client.post("/auth/email/change", json=body, headers=tokens.headers)
    assert (response.status_code, response.json()["code"]) == (422, "validation_error")
