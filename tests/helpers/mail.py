"""Mail in auth-service tests: a real SMTP server (the dev stack's catcher) that the app's
mail relay sends to, and the links its messages carry."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, NamedTuple

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from foundation.auth_service.app import create_app
from foundation.auth_service.models import MailOutbox
from foundation.devstack.mail_catcher import CaughtMail, MailCatcher
from foundation.mail.templates import html_of, text_of
from tests.helpers.apps import serve_app, state_of

TOKEN_IN_LINK = re.compile(r"#token=([A-Za-z0-9_-]+)")


class MailFixtures(NamedTuple):
    catcher: Any
    mail_app: Any
    mail_client: Any


def mail_fixtures(**settings: Any) -> MailFixtures:
    """``catcher, mail_app, mail_client = mail_fixtures()`` in a test module: ``mail_app`` is
    the app (``make_settings`` with ``settings``) whose mail relay sends to ``catcher``, and
    ``mail_client`` serves it."""

    @pytest.fixture()
    def catcher() -> Iterator[MailCatcher]:
        with MailCatcher() as running:
            yield running

    @pytest.fixture()
    def mail_app(make_settings: Callable[..., Any], catcher: MailCatcher) -> FastAPI:
        values = {
            "smtp_url": catcher.url,
            "mail_retry_max_delay": 0.2,
            "mail_poll_interval": 0.5,
            # One client address makes every request of a module: its limit is not under test.
            "account_mail_max_per_ip": 10_000,
            **settings,
        }
        return create_app(make_settings(**values))

    @pytest.fixture()
    async def mail_client(mail_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
        async with serve_app(mail_app) as client:
            yield client

    return MailFixtures(catcher, mail_app, mail_client)


def token_in(mail: CaughtMail) -> str:
    """The token of the message's link (the same in its text and HTML parts)."""
    found = TOKEN_IN_LINK.search(text_of(mail.message))
    assert found is not None, text_of(mail.message)
    assert found.group(1) in html_of(mail.message)
    return found.group(1)


async def mailed(
    catcher: MailCatcher, to: str, subject: str, *, count: int = 1, timeout: float = 10.0
) -> CaughtMail:
    """The ``count``-th message to ``to`` whose subject has ``subject``, once it has arrived."""
    deadline = time.monotonic() + timeout
    while True:
        matching = [m for m in catcher.messages(to) if subject in m.subject]
        if len(matching) >= count:
            return matching[count - 1]
        if time.monotonic() > deadline:
            got = [(m.recipients, m.subject) for m in catcher.messages()]
            raise AssertionError(f"no message {count} {subject!r} to {to} in {timeout} s; got {got}")
        await asyncio.sleep(0.02)


async def requested_mail(app: FastAPI, engine: AsyncEngine, user_id: Any, kind: str) -> int:
    """How many messages of ``kind`` were asked for for the user (sent or not), once the work
    that requests started after their answers is done."""
    await state_of(app)["deferred_work"].drain()
    async with engine.connect() as conn:
        count = await conn.scalar(
            select(func.count())
            .select_from(MailOutbox)
            .where(MailOutbox.user_id == user_id, MailOutbox.type == kind)
        )
    return int(count or 0)


async def delivered(app: FastAPI, timeout: float = 10.0) -> None:
    """Wait until every message asked for so far has been sent (or dropped)."""
    await state_of(app)["deferred_work"].drain()
    deadline = time.monotonic() + timeout
    while await state_of(app)["mail_relay"].backlog():
        if time.monotonic() > deadline:
            raise AssertionError(f"mail still waiting after {timeout} s")
        await asyncio.sleep(0.02)
