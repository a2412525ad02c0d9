from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from foundation.auth_service.app import create_app
from foundation.auth_service.services.account_mail import RESET_PASSWORD as RESET_MAIL
from foundation.devstack.mail_catcher import MailCatcher
from foundation.events import schema
from foundation.mail.templates import text_of
from tests.helpers.apps import serve_app, state_of
from tests.helpers.mail import mail_fixtures, mailed, requested_mail, token_in
from tests.helpers.users import STRONG_PASSWORD, RegisteredUser, login, register, signed_in_user, unique_email

catcher, mail_app, mail_client = mail_fixtures()

RESET = "Reset your password"
NEW_PASSWORD = "amber-Ferry-71-slowly-Kite"
ACCEPTED = '{"detail":"If an account needs it, a message is on its way."}'


async def forgot(client: httpx.AsyncClient, email: str) -> httpx.Response:
    return await client.post("/auth/password/forgot", json={"email": email})


async def reset(client: httpx.AsyncClient, token: str, password: str = NEW_PASSWORD) -> httpx.Response:
    return await client.post("/auth/password/reset", json={"token": token, "new_password": password})


async def reset_token(
    client: httpx.AsyncClient, catcher: MailCatcher, user: RegisteredUser, n: int = 1
) -> str:
    assert (await forgot(client, user.email)).status_code == 202
    return token_in(await mailed(catcher, user.email, RESET, count=n))


async def test_a_reset_link_sets_the_password_and_ends_every_session(
    mail_client: httpx.AsyncClient, catcher: MailCatcher, outbox: Callable[..., Any]
) -> None:
    user, tokens = await signed_in_user(mail_client)
    other = await login(mail_client, user)
    token = await reset_token(mail_client, catcher, user)
    assert "http://localhost:3000/reset-password#token=" in text_of(
        (await mailed(catcher, user.email, RESET)).message
    )

    assert (await reset(mail_client, token)).status_code == 204
    for ended in (tokens, other):
        assert (await mail_client.get("/auth/me", headers=ended.headers)).status_code == 401
        refreshed = await mail_client.post("/auth/refresh", json={"refresh_token": ended.refresh_token})
        assert refreshed.status_code == 401
    old = await mail_client.post("/auth/login", json={"email": user.email, "password": user.password})
    assert old.status_code == 401
    fresh = await login(mail_client, RegisteredUser(user.id, user.email, NEW_PASSWORD))
    me = (await mail_client.get("/auth/me", headers=fresh.headers)).json()
    assert me["email_verified"] is True  # the link reached the address
    await mailed(catcher, user.email, "Your password was changed")
    events = [kind for kind, _ in await outbox(user.id)]
    assert schema.USER_PASSWORD_RESET_REQUESTED in events
    assert (schema.USER_PASSWORD_RESET_COMPLETED, {"sessions_ended": 2}) in await outbox(user.id)


async def test_a_reset_link_works_once_and_only_the_newest_works(
    mail_client: httpx.AsyncClient, catcher: MailCatcher
) -> None:
    user = await register(mail_client)
    first = await reset_token(mail_client, catcher, user)
    second = await reset_token(mail_client, catcher, user, n=2)
    assert (await reset(mail_client, first)).json()["code"] == "invalid_token"
    assert (await reset(mail_client, second)).status_code == 204
    again = await reset(mail_client, second, "another-Quiet-Harbor-58")
    assert (again.status_code, again.json()["code"]) == (400, "token_used")


async def test_an_expired_reset_link_is_refused(
    mail_client: httpx.AsyncClient, mail_app: FastAPI, catcher: MailCatcher
) -> None:
    user = await register(mail_client)
    token = await reset_token(mail_client, catcher, user)
    service = state_of(mail_app)["session_service"]
    real_clock = service.clock
    service.clock = lambda: real_clock() + timedelta(minutes=30, seconds=1)
    try:
        response = await reset(mail_client, token)
    finally:
        service.clock = real_clock
    assert (response.status_code, response.json()["code"]) == (400, "token_expired")
    assert (
        await mail_client.post("/auth/login", json={"email": user.email, "password": user.password})
    ).is_success


async def test_a_verification_token_does_not_reset_a_password(
    mail_client: httpx.AsyncClient, catcher: MailCatcher
) -> None:
    user = await register(mail_client)
    verification = token_in(await mailed(catcher, user.email, "Confirm your email address"))
    response = await reset(mail_client, verification)
    assert (response.status_code, response.json()["code"]) == (400, "invalid_token")


async def test_a_weak_new_password_is_refused_and_the_link_still_works(
    mail_client: httpx.AsyncClient, catcher: MailCatcher
) -> None:
    user = await register(mail_client)
    token = await reset_token(mail_client, catcher, user)
    for weak in ("password123", user.email.split("@")[0]):
        response = await reset(mail_client, token, weak)
        assert (response.status_code, response.json()["code"]) == (422, "weak_password")
        assert response.json()["errors"][0]["field"] == "password"
    assert (await reset(mail_client, token)).status_code == 204


@pytest.mark.parametrize(
    "body",
    [{}, {"token": "x"}, {"new_password": NEW_PASSWORD}, {"token": "", "new_password": NEW_PASSWORD}],
)
async def test_a_bad_reset_body_is_422(mail_client: httpx.AsyncClient, body: dict[str, str]) -> None:
    response = await mail_client.post("/auth/password/reset", json=body)
    assert (response.status_code, response.json()["code"]) == (422, "validation_error")


async def test_forgot_answers_alike_for_known_and_unknown_addresses(
    mail_client: httpx.AsyncClient, catcher: MailCatcher
) -> None:
    user = await register(mail_client)
    known = await forgot(mail_client, user.email)
    unknown = await forgot(mail_client, unique_email("nobody"))
    malformed = await forgot(mail_client, "not an email")
    assert {(r.status_code, r.text, r.headers["content-type"]) for r in (known, unknown, malformed)} == {
        (202, ACCEPTED, "application/json")
    }
    await mailed(catcher, user.email, RESET)
    assert [m.recipients for m in catcher.messages() if m.subject == RESET] == [(user.email,)]


async def test_forgot_takes_as_long_for_an_unknown_address(mail_client: httpx.AsyncClient) -> None:
    users = [await register(mail_client) for _ in range(3)]
    known: list[float] = []
    unknown: list[float] = []
    for round_ in range(30):  # interleaved, so drift hits both alike
        for email, into in ((users[round_ % 3].email, known), (unique_email("ghost"), unknown)):
            started = time.perf_counter()
            response = await forgot(mail_client, email)
            into.append(time.perf_counter() - started)
            assert response.status_code == 202
            # What runs after an answer (the lookup, the mail) must not land in the next one's time.
            await asyncio.sleep(0.03)
    fast, slow = sorted([statistics.median(known), statistics.median(unknown)])
    assert slow - fast < max(0.001, 0.2 * fast), (known, unknown)


async def test_a_reset_asked_for_while_the_mail_server_is_away_arrives_once_it_is_back(
    mail_client: httpx.AsyncClient, catcher: MailCatcher
) -> None:
    user = await register(mail_client)
    catcher.stop()
    assert (await forgot(mail_client, user.email)).status_code == 202
    await asyncio.sleep(0.5)
    catcher.start()
    token = token_in(await mailed(catcher, user.email, RESET))
    assert (await reset(mail_client, token)).status_code == 204


async def test_forgot_is_throttled_per_address_silently_and_per_client_with_429(
    make_settings: Callable[..., Any], catcher: MailCatcher, engine: Any
) -> None:
    settings = make_settings(smtp_url=catcher.url, account_mail_max_per_address=1, account_mail_max_per_ip=2)
    app = create_app(settings)
    async with serve_app(app, client_ip="192.0.2.45") as client:  # a client address of its own
        user = await register(client)
        first, second = [await forgot(client, user.email) for _ in range(2)]
        assert [(r.status_code, r.text) for r in (first, second)] == [(202, ACCEPTED)] * 2
        assert await requested_mail(app, engine, user.id, RESET_MAIL) == 1
        assert (await forgot(client, unique_email())).status_code == 202
        refused = await forgot(client, unique_email())
        assert (refused.status_code, refused.json()["code"]) == (429, "too_many_requests")
        assert refused.headers["retry-after"].isdigit()


async def test_the_register_answer_is_unchanged(mail_client: httpx.AsyncClient) -> None:
    response = await mail_client.post(
        "/auth/register", json={"email": unique_email(), "password": STRONG_PASSWORD}
    )
    assert set(response.json()) == {"id", "email", "created_at"}
