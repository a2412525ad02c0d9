"""Sending one message over SMTP with aiosmtplib, within a timeout.

A failure is one of two kinds: ``MailRejected`` (the server refused this message for good:
a 5xx answer to its recipients or its content; sending it again cannot help) or
``MailUnavailable`` (the server is away, slow, or answers 4xx; also a refused sign-in or
sender address, which an operator fixes: the message is kept and tried again).
"""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from foundation.mail.settings import SmtpTarget


class MailError(Exception):
    """A message was not sent."""


class MailRejected(MailError):
    """Refused for good: do not try again."""


class MailUnavailable(MailError):
    """Not sent this time: try again later."""


def _permanent(exc: aiosmtplib.SMTPException) -> bool:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return all(500 <= refused.code < 600 for refused in exc.recipients)
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError):
        return 500 <= exc.code < 600
    return False


class SmtpSender:
    def __init__(self, target: SmtpTarget, *, timeout: float) -> None:
        self.target = target
        self.timeout = timeout

    async def send(self, message: EmailMessage) -> None:
        target = self.target
        try:
            await aiosmtplib.send(
                message,
                hostname=target.host,
                port=target.port,
                username=target.username,
                password=target.password.get_secret_value() if target.password else None,
                use_tls=target.implicit_tls,
                # smtp://: STARTTLS when the server offers it (aiosmtplib's default).
                start_tls=False if target.implicit_tls else None,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPException as exc:
            kind = MailRejected if _permanent(exc) else MailUnavailable
            raise kind(f"{type(exc).__name__}: {exc}") from exc
        except (OSError, TimeoutError) as exc:
            raise MailUnavailable(f"{type(exc).__name__}: {exc}") from exc
