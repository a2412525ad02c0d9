"""Failed sign-in throttling through the real app (real PostgreSQL, real Redis): concurrent
guesses, the owner's device cookie, limits per account and address, IPv6 /64 prefixes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from fastapi import FastAPI

from foundation.auth_service.app import create_app
from foundation.auth_service.settings import AuthServiceSettings
from tests.helpers.apps import running, serve_app, state_of, with_lifespan_state
from tests.helpers.users import RegisteredUser, register, unique_email

DEVICE_COOKIE = "auth_device"
WRONG = "not-the-Password-42"


async def sign_in(
    client: httpx.AsyncClient,
    email: str,
    password: str,
    *,
    device: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """One sign-in; the device cookie goes back as a plain ``Cookie`` header (what a mobile app
    does), and nothing is kept in the client's cookie jar between calls."""
    sent = {"content-type": "application/json", **(headers or {})}
    if device is not None:
        sent["cookie"] = f"{DEVICE_COOKIE}={device}"
    body = json.dumps({"email": email, "password": password})
    response = await client.post("/auth/login", content=body, headers=sent)
    client.cookies.clear()
    return response


def device_cookie(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    value = response.cookies.get(DEVICE_COOKIE)
    assert value, f"no {DEVICE_COOKIE} cookie in {response.headers.get_list('set-cookie')}"
    return value


def assert_throttled(response: httpx.Response, policy: str | None = None) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "too_many_attempts"
    assert int(response.headers["retry-after"]) >= 1
    if policy is not None:
        assert response.headers["ratelimit-policy"].startswith(f'"{policy}";')


@asynccontextmanager
async def clients(app: FastAPI, *addresses: str) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One client per address, all talking to the same running app."""
    async with running(app) as state, AsyncExitStack() as stack:
        made = []
        for address in addresses:
            served = with_lifespan_state(app, state)  # as a server hands it on
            transport = httpx.ASGITransport(app=served, client=(address, 50000))
            client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
            made.append(await stack.enter_async_context(client))
        yield made


# -- concurrency: the attempt is counted before the password is checked ---------------------


async def test_concurrent_guesses_at_one_account_run_at_most_the_limit(
    make_settings: Callable[..., AuthServiceSettings],
) -> None:
    app = create_app(
        make_settings(login_max_failures_per_account_address=5, login_max_failures_per_account=5)
    )
    async with serve_app(app, client_ip="198.51.100.7") as attacker:
        user = await register(attacker)
        hasher = state_of(app)["session_service"].hasher
        verified: list[str | None] = []
        original = hasher.verify

        def counting_verify(stored_hash: str | None, password: str) -> bool:
            verified.append(stored_hash)
            return bool(original(stored_hash, password))

        hasher.verify = counting_verify
        answers = await asyncio.gather(*(sign_in(attacker, user.email, f"{WRONG}-{n}") for n in range(30)))
    statuses = [answer.status_code for answer in answers]
    assert (statuses.count(401), statuses.count(429)) == (5, 25), statuses
    assert len(verified) == 5  # the 25 others were refused before any argon2 work
    for answer in answers:
        if answer.status_code == 429:
            assert_throttled(answer)


async def test_concurrent_guesses_with_a_device_cookie_run_at_most_its_limit(
    make_settings: Callable[..., AuthServiceSettings],
) -> None:
    app = create_app(make_settings(login_max_failures_per_device=3))
    async with serve_app(app, client_ip="203.0.113.9") as owner:
        user = await register(owner)
        cookie = device_cookie(await sign_in(owner, user.email, user.password))
        answers = await asyncio.gather(
            *(sign_in(owner, user.email, f"{WRONG}-{n}", device=cookie) for n in range(12))
        )
        statuses = [answer.status_code for answer in answers]
        assert (statuses.count(401), statuses.count(429)) == (3, 9), statuses
        assert_throttled(next(a for a in answers if a.status_code == 429), "login-device")
        # That device's failures are its own: the owner elsewhere, without it, signs in.
        assert (await sign_in(owner, user.email, user.password)).status_code == 200


# -- the owner is not locked out by someone else's guesses ---------------------------------


async def test_the_owner_with_a_device_cookie_signs_in_while_attackers_exhaust_the_account(
    make_settings: Callable[..., AuthServiceSettings],
) -> None:
    settings = make_settings(login_max_failures_per_account_address=3, login_max_failures_per_account=6)
    async with clients(create_app(settings), "203.0.113.9", "198.51.100.1", "198.51.100.2", "192.0.2.50") as (
        owner,
        attacker_1,
        attacker_2,
        new_device,
    ):
        user = await register(owner)
        first = await sign_in(owner, user.email, user.password)
        cookie = device_cookie(first)
        set_cookie = first.headers["set-cookie"]
        assert "HttpOnly" in set_cookie and "Path=/auth" in set_cookie, set_cookie
        assert "SameSite=strict" in set_cookie or "SameSite=Strict" in set_cookie, set_cookie
        assert "Secure" not in set_cookie  # plain http, not in production
        for attacker in (attacker_1, attacker_2):
            for n in range(3):
                guess = await sign_in(attacker, user.email, f"{WRONG}-{n}")
                assert guess.status_code == 401
        # The account's ceiling is reached: a client it has never seen is refused, even with
        # the right password...
        assert_throttled(await sign_in(new_device, user.email, user.password))
        # ...but the owner's device is judged by its own count: it signs in, from home or
        # from one of the attackers' addresses, and gets a fresh cookie each time.
        again = await sign_in(owner, user.email, user.password, device=cookie)
        renewed = device_cookie(again)
        assert renewed != cookie
        elsewhere = await sign_in(attacker_1, user.email, user.password, device=renewed)
        assert elsewhere.status_code == 200, elsewhere.text


async def test_one_attacker_address_does_not_lock_the_owner_out_from_another(
    make_settings: Callable[..., AuthServiceSettings],
) -> None:
    app = create_app(make_settings(login_max_failures_per_account_address=5))
    async with clients(app, "198.51.100.7", "203.0.113.9") as (attacker, owner):
        user = await register(owner)
        for n in range(5):
            guess = await sign_in(attacker, user.email, f"{WRONG}-{n}")
            assert guess.status_code == 401
        # That address is done for this account (even with the right password)...
        assert_throttled(
            await sign_in(attacker, user.email, user.password),
            "login-account-address",
        )
        # ...while the owner, from another address and with no device cookie yet, signs in.
        signed_in = await sign_in(owner, user.email, user.password)
        assert signed_in.status_code == 200, signed_in.text


async def test_a_device_cookie_counts_only_for_its_own_account_and_only_unaltered(
    make_settings: Callable[..., AuthServiceSettings],
) -> None:
    settings = make_settings(login_max_failures_per_account_address=2, login_max_failures_per_account=2)
    async with clients(create_app(settings), "203.0.113.9", "198.51.100.1") as (owner, attacker):
        user = await register(owner)
        other = await register(owner)
        cookie = device_cookie(await sign_in(owner, user.email, user.password))
        for target in (user, other):
            for n in range(2):
                assert (await sign_in(attacker, target.email, f"{WRONG}-{n}")).status_code == 401
        # Both accounts have reached their ceiling. The cookie vouches for its own account only:
        assert_throttled(await sign_in(owner, other.email, other.password, device=cookie))
        tampered = cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")
        assert_throttled(await sign_in(owner, user.email, user.password, device=tampered))
        assert_throttled(await sign_in(owner, user.email, user.password, device="v1.garbage"))
        assert (await sign_in(owner, user.email.upper(), user.password, device=cookie)).status_code == 200


async def test_the_device_cookie_is_secure_when_the_client_used_https(
    make_settings: Callable[..., AuthServiceSettings],
) -> None:
    async with serve_app(create_app(make_settings())) as gateway:  # 127.0.0.1: a trusted proxy
        user = await register(gateway)
        response = await sign_in(gateway, user.email, user.password, headers={"x-forwarded-proto": "https"})
        device_cookie(response)
        assert "Secure" in response.headers["set-cookie"]
        assert "Max-Age=" in response.headers["set-cookie"]


async def test_a_web_client_sends_the_device_cookie_back_by_itself(
    make_settings: Callable[..., AuthServiceSettings],
) -> None:
    settings = make_settings(login_max_failures_per_account_address=1, login_max_failures_per_account=1)
    async with clients(create_app(settings), "203.0.113.9", "198.51.100.1") as (browser, attacker):
        user = await register(browser)
        first = await browser.post("/auth/login", json={"email": user.email, "password": user.password})
        assert first.status_code == 200
        assert browser.cookies.get(DEVICE_COOKIE)  # kept by the client's cookie jar
        assert (await sign_in(attacker, user.email, WRONG)).status_code == 401
        again = await browser.post("/auth/login", json={"email": user.email, "password": user.password})
        assert again.status_code == 200, again.text


# -- IPv6: a client owns a whole /64 ------------------------------------------------------


async def test_ipv6_addresses_in_one_64_share_the_account_and_address_counter(
    make_settings: Callable[..., AuthServiceSettings],
) -> None:
    app = create_app(make_settings(login_max_failures_per_account_address=3))
    rotating = [
        "2001:db8:1:2::1",
        "2001:db8:1:2::2",
        "2001:db8:1:2:ffff:ffff:ffff:fffe",
        "2001:db8:1:2:abcd::9",
    ]
    async with clients(app, *rotating, "2001:db8:1:3::1") as (*attacker, neighbour):
        user = await register(neighbour)
        for client in attacker[:3]:
            assert (await sign_in(client, user.email, WRONG)).status_code == 401
        assert_throttled(await sign_in(attacker[3], user.email, WRONG), "login-account-address")
        # The next /64 is someone else.
        assert (await sign_in(neighbour, user.email, user.password)).status_code == 200


async def test_ipv6_addresses_in_one_64_share_the_address_counter(
    make_settings: Callable[..., AuthServiceSettings],
) -> None:
    app = create_app(make_settings(login_max_failures_per_ip=3))
    rotating = ["2001:db8:7:7::a", "2001:db8:7:7::b", "2001:db8:7:7::c", "2001:db8:7:7:1::d"]
    async with clients(app, *rotating, "2001:db8:7:8::a") as (*sprayer, neighbour):
        accounts: list[RegisteredUser] = [await register(neighbour) for _ in range(2)]
        for client in sprayer[:3]:
            assert (await sign_in(client, unique_email(), WRONG)).status_code == 401
        assert_throttled(await sign_in(sprayer[3], accounts[0].email, accounts[0].password), "login-ip")
        assert (await sign_in(neighbour, accounts[1].email, accounts[1].password)).status_code == 200
