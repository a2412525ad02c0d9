"""The release of an address held by an unverified password account (docs/auth.md,
"Address squatting"): what a Google or Apple sign-in with that provider-verified address
calls before it creates its account."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from foundation.auth_service.repository import oauth_providers, users
from foundation.events import schema
from tests.helpers.apps import state_of
from tests.helpers.users import register, signed_in_user


async def release(app: FastAPI, email: str, *, hold: timedelta | None = None) -> bool:
    service = state_of(app)["email_verification"]
    if hold is not None:
        service.hold = hold
    async with state_of(app)["sessions"]() as db:
        released: bool = await service.release_squatted(db, email)
        await db.commit()
    return released


async def exists(app: FastAPI, email: str) -> bool:
    async with state_of(app)["sessions"]() as db:
        return await users.by_email(db, email) is not None


async def test_an_unverified_account_keeps_its_address_during_the_hold(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await register(client)
    assert await release(app, user.email.upper()) is False  # UNVERIFIED_EMAIL_HOLD_SECONDS: a day
    assert await exists(app, user.email)


async def test_after_the_hold_the_unverified_account_is_released_and_signed_out(
    client: httpx.AsyncClient, app: FastAPI, outbox: Callable[..., Any]
) -> None:
    squatter, tokens = await signed_in_user(client)
    assert await release(app, squatter.email.upper(), hold=timedelta(0)) is True
    assert not await exists(app, squatter.email)
    assert (await client.get("/auth/me", headers=tokens.headers)).status_code == 401
    assert (
        await client.post("/auth/refresh", json={"refresh_token": tokens.refresh_token})
    ).status_code == 401
    assert (schema.USER_DELETED, {"reason": "unverified_email_claimed"}) in await outbox(squatter.id)
    # The address is free for the provider's user now.
    async with state_of(app)["sessions"]() as db:
        await users.add(db, squatter.email, None)
        await db.commit()


async def test_a_verified_account_is_never_released(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await register(client)
    async with state_of(app)["sessions"]() as db:
        await users.mark_email_verified(db, user.id)
        await db.commit()
    assert await release(app, user.email, hold=timedelta(0)) is False
    assert await exists(app, user.email)


async def test_an_account_linked_to_a_provider_or_without_a_password_is_never_released(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    linked = await register(client)
    async with state_of(app)["sessions"]() as db:
        await oauth_providers.add(
            db,
            user_id=linked.id,
            provider="google",
            subject=f"sub-{linked.id}",
            access_token=None,
            refresh_token=None,
            expires_at=None,
        )
        passwordless = await users.add(db, f"oauth-{linked.email}", None, email_verified=False)
        await db.commit()
    assert await release(app, linked.email, hold=timedelta(0)) is False
    assert await release(app, passwordless.email, hold=timedelta(0)) is False
    assert await exists(app, linked.email) and await exists(app, passwordless.email)


async def test_an_unknown_address_releases_nothing(app: FastAPI, client: httpx.AsyncClient) -> None:
    assert await release(app, "nobody-at-all@example.com", hold=timedelta(0)) is False
