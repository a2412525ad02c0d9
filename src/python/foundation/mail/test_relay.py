from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from foundation.devstack.embedded import free_port
from foundation.devstack.mail_catcher import MailCatcher
from foundation.events.outbox import record
from foundation.mail.conftest import Db, writes
from foundation.mail.outbox import MailOutboxRow
from foundation.mail.relay import MailRelay
from foundation.mail.sender import SmtpSender
from foundation.mail.settings import SmtpTarget
from foundation.mail.templates import MailTemplate, text_of

TEMPLATE = MailTemplate(subject="For $to", text="Hello $to", html="<p>Hello $to</p>")


async def compose(db: AsyncSession, row: MailOutboxRow) -> EmailMessage | None:
    if row.data.get("moot"):
        return None
    # Stands for what a service writes while composing (a token's hash): kept only if sent.
    await db.execute(insert(writes).values(note=row.data["to"]))
    return TEMPLATE.render(sender="no-reply@shop.test", to=row.data["to"], values={"to": row.data["to"]})


def relay_for(db: Db, port: int, **options: Any) -> MailRelay:
    sender = SmtpSender(SmtpTarget(host="127.0.0.1", port=port, implicit_tls=False), timeout=2)
    return MailRelay(db.sessions, db.outbox, sender, compose, **options)


async def request_mail(db: Db, to: str, **data: Any) -> None:
    async with db.sessions() as session:
        record(session, db.outbox, "mail.test", None, {"to": to, **data})
        await session.commit()


async def rows(db: Db) -> list[MailOutboxRow]:
    async with db.sessions() as session:
        return list((await session.scalars(select(db.outbox).order_by(db.outbox.seq))).all())


async def written(db: Db) -> int:
    async with db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(writes)) or 0)


async def test_a_requested_message_is_sent_once_and_marked(db: Db, catcher: MailCatcher) -> None:
    relay = relay_for(db, catcher.port)
    await request_mail(db, "ada@example.com")
    assert await relay.run_once() == 1
    assert await relay.run_once() == 0
    (caught,) = catcher.messages()
    assert text_of(caught.message).strip() == "Hello ada@example.com"
    (row,) = await rows(db)
    assert row.published_at is not None and row.attempts == 1 and row.last_error is None
    assert await written(db) == 1


async def test_a_rolled_back_change_sends_nothing(db: Db, catcher: MailCatcher) -> None:
    async with db.sessions() as session:
        record(session, db.outbox, "mail.test", None, {"to": "ada@example.com"})
        await session.flush()
        await session.rollback()
    assert await relay_for(db, catcher.port).run_once() == 0
    assert catcher.messages() == []


async def test_while_the_server_is_away_the_message_waits_and_what_compose_wrote_is_undone(
    db: Db, catcher: MailCatcher
) -> None:
    relay = relay_for(db, catcher.port, max_delay=0.05)
    catcher.stop()
    await request_mail(db, "ada@example.com")
    assert await relay.run_once() == 0
    (row,) = await rows(db)
    assert row.published_at is None and row.attempts == 1
    assert row.next_attempt_at is not None and row.last_error
    assert await written(db) == 0

    catcher.start()
    await asyncio.sleep(0.06)
    assert await relay.run_once() == 1
    assert [m.recipients for m in catcher.messages()] == [("ada@example.com",)]
    (row,) = await rows(db)
    assert row.published_at is not None and row.attempts == 2 and row.last_error is None
    assert await written(db) == 1


async def test_a_failed_message_waits_for_its_backoff(db: Db, catcher: MailCatcher) -> None:
    relay = relay_for(db, catcher.port, max_delay=60)
    catcher.stop()
    await request_mail(db, "ada@example.com")
    await relay.run_once()
    catcher.start()
    (row,) = await rows(db)
    assert row.next_attempt_at is not None
    due = row.next_attempt_at
    relay.clock = lambda: due - timedelta(milliseconds=1)
    assert await relay.run_once() == 0
    relay.clock = lambda: due
    assert await relay.run_once() == 1


class Refusing:
    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        return "550 5.1.1 No such user"


@pytest.fixture()
def refusing_port() -> Iterator[int]:
    port = free_port()
    controller = Controller(Refusing(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


async def test_a_message_refused_for_good_is_not_tried_again(db: Db, refusing_port: int) -> None:
    relay = relay_for(db, refusing_port)
    await request_mail(db, "nobody@example.com")
    assert await relay.run_once() == 0
    assert await relay.run_once() == 0
    (row,) = await rows(db)
    assert row.published_at is not None and row.attempts == 1
    assert "No such user" in (row.last_error or "")
    assert await written(db) == 0


async def test_a_message_no_longer_needed_is_done_without_sending(db: Db, catcher: MailCatcher) -> None:
    relay = relay_for(db, catcher.port)
    await request_mail(db, "ada@example.com", moot=True)
    await request_mail(db, "bob@example.com")
    assert await relay.run_once() == 1
    assert [m.recipients for m in catcher.messages()] == [("bob@example.com",)]
    assert all(row.published_at is not None for row in await rows(db))


async def test_the_running_relay_sends_at_once_and_after_an_outage(db: Db, catcher: MailCatcher) -> None:
    relay = relay_for(db, catcher.port, poll_interval=30, max_delay=0.1)
    relay.start()
    try:
        await request_mail(db, "first@example.com")
        relay.notify()
        await catcher.wait_for(to="first@example.com", timeout=5)

        catcher.stop()
        await request_mail(db, "second@example.com")
        relay.notify()
        await asyncio.sleep(0.3)  # a few failed attempts
        catcher.start()
        await catcher.wait_for(to="second@example.com", timeout=5)
    finally:
        await relay.aclose()
    assert await relay.backlog() == 0


async def test_sent_rows_go_after_the_retention(db: Db, catcher: MailCatcher) -> None:
    relay = relay_for(db, catcher.port, retention=timedelta(hours=1))
    await request_mail(db, "ada@example.com")
    await relay.run_once()
    assert await relay.purge_sent() == 0
    sent_at = (await rows(db))[0].published_at
    assert sent_at is not None
    relay.clock = lambda: sent_at + timedelta(hours=1, seconds=1)
    assert await relay.purge_sent() == 1
    assert await rows(db) == []
