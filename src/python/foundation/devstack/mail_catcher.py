"""An SMTP server that keeps every message it receives instead of delivering it: the dev
stack's mail server (and the tests'), on aiosmtpd.

It runs in a thread of its own (aiosmtpd's ``Controller``) on loopback, accepts any sender
and recipient, and keeps each message in memory and, given a folder, as one ``.eml`` file
there (``<UTC time>-<random>.eml``), which the dev inbox (``devstack/inbox.py``) lists.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from foundation.devstack.embedded import free_port

HOST = "127.0.0.1"

# aiosmtpd logs every SMTP command at INFO: a line per command of every message.
logging.getLogger("mail.log").setLevel(logging.WARNING)


@dataclass(frozen=True)
class CaughtMail:
    sender: str
    recipients: tuple[str, ...]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


class _Keeper:
    def __init__(self, catcher: MailCatcher) -> None:
        self.catcher = catcher

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if isinstance(envelope.content, bytes) and not raw:
            raw = envelope.content
        self.catcher.keep(str(envelope.mail_from or ""), [str(r) for r in envelope.rcpt_tos], raw)
        return "250 Message accepted"


class MailCatcher:
    """``start()`` listens (on ``port``, or a free one), ``stop()`` stops; the same catcher
    may start again (on the same port: an outage in a test)."""

    def __init__(self, folder: Path | None = None, *, port: int = 0) -> None:
        self.folder = folder
        self.port = port or free_port()
        self._controller: Controller | None = None
        self._caught: list[CaughtMail] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"smtp://{HOST}:{self.port}"

    def start(self) -> MailCatcher:
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        controller = Controller(_Keeper(self), hostname=HOST, port=self.port, server_hostname="localhost")
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    @property
    def running(self) -> bool:
        return self._controller is not None

    def keep(self, sender: str, recipients: list[str], raw: bytes) -> None:
        caught = CaughtMail(sender, tuple(recipients), parse(raw))
        if self.folder is not None:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
            path = self.folder / f"{stamp}-{secrets.token_hex(4)}.eml"
            path.write_bytes(raw)
        with self._lock:
            self._caught.append(caught)

    def messages(self, to: str | None = None) -> list[CaughtMail]:
        """What arrived (to ``to`` only, when given: compared without letter case)."""
        with self._lock:
            caught = list(self._caught)
        if to is None:
            return caught
        return [m for m in caught if to.lower() in (r.lower() for r in m.recipients)]

    async def wait_for(
        self, count: int = 1, *, to: str | None = None, timeout: float = 10.0
    ) -> list[CaughtMail]:
        """Wait (without blocking the event loop: the sender may run in it) until ``count``
        messages (to ``to``) have arrived; ``TimeoutError`` if they do not in time."""
        deadline = time.monotonic() + timeout
        while len(found := self.messages(to)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} message(s) to {to or 'anyone'} did not arrive in {timeout} s")
            await asyncio.sleep(0.02)
        return found

    def __enter__(self) -> MailCatcher:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()
