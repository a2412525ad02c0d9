from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from foundation.auth_service.app import create_app
from foundation.auth_service.services.account_mail import VERIFY_EMAIL as VERIFY
from foundation.devstack.mail_catcher import MailCatcher
from foundation.events import schema
from foundation.mail.templates import text_of
from tests.helpers.apps import serve_app, state_of
from tests.helpers.mail import delivered, mail_fixtures, mailed, requested_mail, token_in
from tests.helpers.users import STRONG_PASSWORD, login, register, unique_email

catcher, mail_app, mail_client = mail_fixtures()

CONFIRM = "Confirm your email address"
ACCEPTED = '{"detail":"If an account needs it, a message is on its way."}'


async def me(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.get("/auth/me", headers=headers)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def verify(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/auth/email/verify", json={"token": token})


async def test_registration_mails_a_link_that_verifies_the_address(
    mail_client: httpx.AsyncClient, catcher: MailCatcher, outbox: Callable[..., Any]
) -> None:
    user = await register(mail_client)
    tokens = await login(mail_client, user)  # unverified accounts may sign in by default
    assert (await me(mail_client, tokens.headers))["email_verified"] is False

    mail = await mailed(catcher, user.email, CONFIRM)
    assert mail.message["From"] == "Foundation <no-reply@localhost>"
    assert "http://localhost:3000/verify-email#token=" in text_of(mail.message)
    response = await verify(mail_client, token_in(mail))
    assert response.status_code == 200
    assert response.json() == {"email": user.email, "email_verified": True}
    assert (await me(mail_client, tokens.headers))["email_verified"] is True
    assert (schema.USER_EMAIL_VERIFIED, {"email_change": False}) in await outbox(user.id)


async def test_with_unverified_sign_in_off_a_right_password_waits_for_the_link(
    make_settings: Callable[..., Any], catcher: MailCatcher
) -> None:
    app = create_app(make_settings(smtp_url=catcher.url, unverified_sign_in=False, mail_retry_max_delay=0.2))
    async with serve_app(app) as client:
        user = await register(client)
        body = {"email": user.email, "password": user.password}
        refused = await client.post("/auth/login", json=body)
        assert (refused.status_code, refused.json()["code"]) == (403, "email_not_verified")
        wrong = await client.post("/auth/login", json={**body, "password": "not-the-" + user.password})
        assert wrong.json()["code"] == "invalid_credentials"  # no hint without the password
        assert (await verify(client, token_in(await mailed(catcher, user.email, CONFIRM)))).status_code == 200
        assert (await client.post("/auth/login", json=body)).status_code == 200


async def test_a_link_works_once(mail_client: httpx.AsyncClient, catcher: MailCatcher) -> None:
    user = await register(mail_client)
    token = token_in(await mailed(catcher, user.email, CONFIRM))
    assert (await verify(mail_client, token)).status_code == 200
    again = await verify(mail_client, token)
    assert (again.status_code, again.json()["code"]) == (400, "token_used")
    assert again.headers["content-type"] == "application/problem+json"


async def test_an_expired_link_is_refused(
    mail_client: httpx.AsyncClient, mail_app: FastAPI, catcher: MailCatcher
) -> None:
    user = await register(mail_client)
    token = token_in(await mailed(catcher, user.email, CONFIRM))
    service = state_of(mail_app)["session_service"]
    real_clock = service.clock
    service.clock = lambda: real_clock() + timedelta(days=1, seconds=1)
    try:
        response = await verify(mail_client, token)
    finally:
        service.clock = real_clock
    assert (response.status_code, response.json()["code"]) == (400, "token_expired")


@pytest.mark.parametrize("token", ["x" * 43, "not a token", "A" * 512])
async def test_an_unknown_token_is_refused(mail_client: httpx.AsyncClient, token: str) -> None:
    response = await verify(mail_client, token)
    assert (response.status_code, response.json()["code"]) == (400, "invalid_token")


@pytest.mark.parametrize("body", [{}, {"token": ""}, {"token": 5}, {"token": "x" * 513}])
async def test_a_bad_body_is_422_naming_the_field(mail_client: httpx.AsyncClient, body: Any) -> None:
    response = await mail_client.post("/auth/email/verify", json=body)
    assert (response.status_code, response.json()["code"]) == (422, "validation_error")
    assert [e["field"] for e in response.json()["errors"]] == ["token"]


async def test_a_reset_token_does_not_verify_an_address(
    mail_client: httpx.AsyncClient, catcher: MailCatcher
) -> None:
    user = await register(mail_client)
    await mail_client.post("/auth/password/forgot", json={"email": user.email})
    reset = token_in(await mailed(catcher, user.email, "Reset your password"))
    response = await verify(mail_client, reset)
    assert (response.status_code, response.json()["code"]) == (400, "invalid_token")


async def test_resend_replaces_the_link_and_answers_alike_for_any_address(
    mail_client: httpx.AsyncClient, catcher: MailCatcher
) -> None:
    user = await register(mail_client)
    first = token_in(await mailed(catcher, user.email, CONFIRM))
    answers = [
        await mail_client.post("/auth/email/resend", json={"email": email})
        for email in (user.email.upper(), unique_email("nobody"), "not even an email")
    ]
    assert {(a.status_code, a.text) for a in answers} == {(202, ACCEPTED)}
    second = token_in(await mailed(catcher, user.email, CONFIRM, count=2))
    assert (await verify(mail_client, first)).json()["code"] == "invalid_token"  # only the newest works
    assert (await verify(mail_client, second)).status_code == 200

    # Verified: a resend sends nothing more.
    await mail_client.post("/auth/email/resend", json={"email": user.email})
    await mail_client.post("/auth/password/forgot", json={"email": user.email})
    await mailed(catcher, user.email, "Reset your password")
    assert len([m for m in catcher.messages(user.email) if m.subject == CONFIRM]) == 2


async def test_resend_is_throttled_per_address_silently_and_per_client_with_429(
    make_settings: Callable[..., Any], catcher: MailCatcher, engine: Any
) -> None:
    settings = make_settings(smtp_url=catcher.url, account_mail_max_per_address=2, account_mail_max_per_ip=5)
    app = create_app(settings)
    async with serve_app(app, client_ip="192.0.2.44") as client:  # a client address of its own
        user = await register(client)
        answers = [await client.post("/auth/email/resend", json={"email": user.email}) for _ in range(4)]
        assert [(a.status_code, a.text) for a in answers] == [(202, ACCEPTED)] * 4
        # Registration's link, then two resends; the other two are answered alike but not sent.
        assert await requested_mail(app, engine, user.id, VERIFY) == 3
        others = [await client.post("/auth/email/resend", json={"email": unique_email()}) for _ in range(3)]
        assert [a.status_code for a in others] == [202, 202, 202]
        refused = await client.post("/auth/email/resend", json={"email": unique_email()})
        assert (refused.status_code, refused.json()["code"]) == (429, "too_many_requests")
        assert int(refused.headers["retry-after"]) > 0
        assert refused.headers["content-type"] == "application/problem+json"
        # The newest link is the one that works.
        await delivered(app)
        newest = token_in(catcher.messages(user.email)[-1])
        assert (await verify(client, newest)).status_code == 200


async def test_registration_succeeds_while_the_mail_server_is_away_and_the_link_arrives_later(
    mail_client: httpx.AsyncClient, catcher: MailCatcher
) -> None:
    catcher.stop()
    email = unique_email()
    response = await mail_client.post("/auth/register", json={"email": email, "password": STRONG_PASSWORD})
    assert response.status_code == 201
    import asyncio

    await asyncio.sleep(0.5)  # the relay tries and fails meanwhile
    assert catcher.messages(email) == []
    catcher.start()
    token = token_in(await mailed(catcher, email, CONFIRM))
    assert (await verify(mail_client, token)).status_code == 200


async def test_no_token_is_stored_or_kept_in_the_outbox(
    mail_client: httpx.AsyncClient, catcher: MailCatcher, engine: Any
) -> None:
    from sqlalchemy import text

    user = await register(mail_client)
    token = token_in(await mailed(catcher, user.email, CONFIRM))
    async with engine.connect() as conn:
        dump = (await conn.execute(text("SELECT data::text FROM mail_outbox"))).scalars().all()
        hashes = (await conn.execute(text("SELECT token_hash FROM account_tokens"))).scalars().all()
    assert not any(token in row for row in dump)
    assert all(h is None or len(h) == 32 for h in hashes)
    assert uuid.UUID(str(user.id))
