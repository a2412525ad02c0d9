"""Message templates: a subject, a plain-text part and an HTML part, made into one
``EmailMessage`` (multipart/alternative).

Placeholders are ``string.Template``'s (``$name`` or ``${name}``). In the HTML part every
value is escaped (``html.escape``), so an address or a name a user typed cannot add markup;
the text part and the subject take the values as they are (the subject is a header: the
``email`` package refuses a value with a line break, so no header can be injected). A
placeholder without a value is an error, not an empty string.
"""

from __future__ import annotations

import html
import string
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid, parseaddr


@dataclass(frozen=True)
class MailTemplate:
    subject: str
    text: str
    html: str

    def render(self, *, sender: str, to: str, values: Mapping[str, str]) -> EmailMessage:
        """The message to ``to`` from ``sender``; ``KeyError`` names a missing value."""
        message = EmailMessage(policy=SMTP)
        message["From"] = sender
        message["To"] = to
        message["Subject"] = string.Template(self.subject).substitute(values)
        message["Date"] = formatdate(localtime=False, usegmt=True)
        domain = parseaddr(sender)[1].rpartition("@")[2] or None
        message["Message-ID"] = make_msgid(domain=domain)
        message.set_content(string.Template(self.text).substitute(values))
        escaped = {key: html.escape(str(value), quote=True) for key, value in values.items()}
        message.add_alternative(string.Template(self.html).substitute(escaped), subtype="html")
        return message


def text_of(message: EmailMessage) -> str:
    """The plain-text part of a message (what tests and the dev inbox read)."""
    part = message.get_body(preferencelist=("plain",))
    return part.get_content() if isinstance(part, EmailMessage) else ""


def html_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    return part.get_content() if isinstance(part, EmailMessage) else ""
