"""The messages auth-service mails, and how each is composed from its mail outbox row.

A request writes the row (``request``) in the transaction of its change; the mail relay
(``foundation.mail.relay``) calls ``AccountMail.compose`` when it sends it. A message with a
link makes its token there: the token exists only in the message and, hashed, in its
``account_tokens`` row (``repository.account_tokens.arm``), so no plaintext token is ever
stored or logged (docs/mail.md, "Tokens in links"). The hash is committed before the message
leaves, so the link works the moment it arrives; if the send then fails, the stored hash is of
a token nobody has, and the next attempt makes a new one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from foundation.auth_service.models import MailOutbox
from foundation.auth_service.repository import account_tokens
from foundation.auth_service.services.refresh_tokens import new_token, token_hash
from foundation.events.outbox import record
from foundation.mail.outbox import MailOutboxRow
from foundation.mail.templates import MailTemplate

VERIFY_EMAIL = "mail.verify_email"
RESET_PASSWORD = "mail.reset_password"  # noqa: S105 - a message type, not a secret
EMAIL_CHANGE_NOTICE = "mail.email_change_notice"
PASSWORD_CHANGED_NOTICE = "mail.password_changed_notice"  # noqa: S105

_FOOTER_TEXT = "\n\nIf you did not ask for this, you can ignore this message."
_FOOTER_HTML = "<p>If you did not ask for this, you can ignore this message.</p>"

TEMPLATES: dict[str, MailTemplate] = {
    VERIFY_EMAIL: MailTemplate(
        subject="Confirm your email address",
        text="Confirm that $email is your address by opening this link before $valid_until:\n\n$link"
        + _FOOTER_TEXT,
        html="<p>Confirm that <b>$email</b> is your address by opening this link before $valid_until:</p>"
        '<p><a href="$link">Confirm my address</a></p>' + _FOOTER_HTML,
    ),
    RESET_PASSWORD: MailTemplate(
        subject="Reset your password",
        text="Someone asked to reset the password of the account of $email. To choose a new one, "
        "open this link before $valid_until:\n\n$link\n\nEvery session of the account ends when the "
        "password is reset." + _FOOTER_TEXT,
        html="<p>Someone asked to reset the password of the account of <b>$email</b>. To choose a "
        'new one, open this link before $valid_until:</p><p><a href="$link">Choose a new password</a>'
        "</p><p>Every session of the account ends when the password is reset.</p>" + _FOOTER_HTML,
    ),
    EMAIL_CHANGE_NOTICE: MailTemplate(
        subject="Your email address is being changed",
        text="Someone signed in to your account asked to change its address from $email to "
        "$new_email. The change is made once the new address is confirmed.\n\nIf this was not "
        "you, reset your password now: your account may be in someone else's hands.",
        html="<p>Someone signed in to your account asked to change its address from <b>$email</b> "
        "to <b>$new_email</b>. The change is made once the new address is confirmed.</p><p>If this "
        "was not you, reset your password now: your account may be in someone else's hands.</p>",
    ),
    PASSWORD_CHANGED_NOTICE: MailTemplate(
        subject="Your password was changed",
        text="The password of the account of $email was changed ($how).\n\nIf this was not you, "
        "reset your password now.",
        html="<p>The password of the account of <b>$email</b> was changed ($how).</p><p>If this "
        "was not you, reset your password now.</p>",
    ),
}


def mask(email: str) -> str:
    """``ada@example.com`` -> ``a**@example.com``: enough for its owner to recognise."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}{'*' * max(2, len(local) - 1)}@{domain}"


def request(db: AsyncSession, kind: str, user_id: uuid.UUID, to: str, **data: str) -> None:
    """Add a message to the transaction of ``db`` (sent only if it commits)."""
    record(db, MailOutbox, kind, user_id, {"to": to, **data})


class AccountMail:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        sender: str,
        verification_url: str,
        reset_url: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sessions = sessions
        self.sender = sender
        self.links = {VERIFY_EMAIL: verification_url, RESET_PASSWORD: reset_url}
        self.clock = clock

    async def compose(self, db: AsyncSession, row: MailOutboxRow) -> EmailMessage | None:
        """The message for ``row``; None when it is moot (its link was replaced, used or has
        expired). A link's token is made here; its hash is stored and committed at once."""
        template = TEMPLATES.get(row.type)
        if template is None:
            return None
        data: dict[str, Any] = dict(row.data)
        to = str(data.pop("to"))
        values = {"email": to, **{key: str(value) for key, value in data.items()}}
        if row.type in self.links:
            token = new_token()
            async with self.sessions() as own:
                armed = await account_tokens.arm(
                    own, uuid.UUID(str(data["token_id"])), token_hash(token), self.clock()
                )
                await own.commit()
            if armed is None:
                return None
            values["link"] = self.links[row.type].replace("{token}", token)
            values["valid_until"] = armed.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        return template.render(sender=self.sender, to=to, values=values)
