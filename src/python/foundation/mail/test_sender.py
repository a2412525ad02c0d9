from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from foundation.devstack.embedded import free_port
from foundation.devstack.mail_catcher import MailCatcher
from foundation.mail.sender import MailRejected, MailUnavailable, SmtpSender
from foundation.mail.settings import SmtpTarget
from foundation.mail.templates import MailTemplate, text_of

TEMPLATE = MailTemplate(subject="Hi", text="Hello $name", html="<p>Hello $name</p>")


def message(to: str = "ada@example.com") -> Any:
    return TEMPLATE.render(sender="no-reply@shop.test", to=to, values={"name": "Ada"})


def sender_for(port: int, timeout: float = 5.0) -> SmtpSender:
    return SmtpSender(SmtpTarget(host="127.0.0.1", port=port, implicit_tls=False), timeout=timeout)


class Refusing:
    """An SMTP server that answers every recipient with ``reply``."""

    def __init__(self, reply: str) -> None:
        self.reply = reply

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        return self.reply


@pytest.fixture()
def refusing(request: pytest.FixtureRequest) -> Iterator[int]:
    port = free_port()
    controller = Controller(Refusing(request.param), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


async def test_a_message_reaches_the_server(catcher: MailCatcher) -> None:
    await sender_for(catcher.port).send(message())
    (caught,) = await catcher.wait_for(to="ada@example.com")
    assert caught.sender == "no-reply@shop.test"
    assert text_of(caught.message).strip() == "Hello Ada"


async def test_no_server_is_unavailable_not_rejected() -> None:
    with pytest.raises(MailUnavailable):
        await sender_for(free_port()).send(message())


@pytest.mark.parametrize("refusing", ["550 5.1.1 No such user"], indirect=True)
async def test_a_recipient_refused_for_good_is_rejected(refusing: int) -> None:
    with pytest.raises(MailRejected, match="No such user"):
        await sender_for(refusing).send(message())


@pytest.mark.parametrize("refusing", ["451 4.3.0 Try again later"], indirect=True)
async def test_a_temporary_refusal_is_unavailable(refusing: int) -> None:
    with pytest.raises(MailUnavailable, match="Try again later"):
        await sender_for(refusing).send(message())


async def test_a_server_that_never_answers_times_out() -> None:
    import asyncio

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(MailUnavailable):
            await sender_for(port, timeout=0.3).send(message())
    finally:
        server.close()
