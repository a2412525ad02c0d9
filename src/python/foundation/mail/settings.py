"""Mail settings (environment variables), mixed into the settings of a service that sends mail."""

from __future__ import annotations

from email.headerregistry import Address
from email.utils import parseaddr
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator

SCHEMES = {"smtp": 25, "smtps": 465}


class MailSettings(BaseModel):
    smtp_url: SecretStr | None = Field(
        default=None,
        description="smtp://[user:password@]host[:port] (STARTTLS when the server offers it) or "
        "smtps://... (TLS from the start). Unset: no mail is sent; it waits in the outbox.",
    )
    mail_from: str = Field(
        default="Foundation <no-reply@localhost>", description="The From of every message."
    )
    smtp_timeout: float = Field(default=10.0, gt=0, le=120, description="Seconds per SMTP step.")
    mail_poll_interval: float = Field(
        default=5.0, gt=0, description="Seconds between outbox reads when nothing wakes the relay."
    )
    mail_retry_max_delay: float = Field(
        default=300.0, gt=0, description="Longest wait (seconds) before a failed message is tried again."
    )

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value():
            SmtpTarget.parse(value.get_secret_value())
        return value

    @field_validator("mail_from")
    @classmethod
    def _mail_from(cls, value: str) -> str:
        name, address = parseaddr(value)
        if "@" not in address or any(c in value for c in "\r\n"):
            raise ValueError("MAIL_FROM must hold an address, e.g. 'Shop <no-reply@shop.example>'")
        Address(display_name=name, addr_spec=address)  # raises on what a header cannot carry
        return value

    def smtp_target(self) -> SmtpTarget | None:
        raw = self.smtp_url.get_secret_value() if self.smtp_url else ""
        return SmtpTarget.parse(raw) if raw else None


class SmtpTarget(BaseModel):
    """Where and how to deliver: the parts of ``SMTP_URL``."""

    host: str
    port: int
    implicit_tls: bool
    username: str | None = None
    password: SecretStr | None = None

    @classmethod
    def parse(cls, url: str) -> SmtpTarget:
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES:
            raise ValueError("SMTP_URL must start with smtp:// or smtps://")
        if not parts.hostname:
            raise ValueError("SMTP_URL names no host")
        return cls(
            host=parts.hostname,
            port=parts.port or SCHEMES[parts.scheme],
            implicit_tls=parts.scheme == "smtps",
            username=unquote(parts.username) if parts.username else None,
            password=SecretStr(unquote(parts.password)) if parts.password else None,
        )
