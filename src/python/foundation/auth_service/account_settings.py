"""Settings of the account lifecycle: mail, address verification, password reset (mixed into
``AuthServiceSettings``; every variable is listed in .env.example)."""

from __future__ import annotations

from pydantic import Field, field_validator

from foundation.mail.settings import MailSettings

TOKEN_PLACEHOLDER = "{token}"  # noqa: S105 - where a link takes its token


class AccountLifecycleSettings(MailSettings):
    # Links in the messages: the front end's pages, which POST the token back. The token goes
    # in the fragment by default: browsers send no fragment to servers, nor in a Referer.
    email_verification_url: str = Field(
        default="http://localhost:3000/verify-email#token={token}",
        description="The page that verifies an address; {token} is replaced by the token.",
    )
    password_reset_url: str = Field(
        default="http://localhost:3000/reset-password#token={token}",
        description="The page that sets a new password; {token} is replaced by the token.",
    )
    email_verification_ttl_seconds: int = Field(default=86_400, ge=300, le=7 * 86_400)
    password_reset_ttl_seconds: int = Field(default=1_800, ge=300, le=86_400)
    # Whether an account whose address is not verified yet may sign in with its password.
    unverified_sign_in: bool = Field(default=True, description="false: 403 email_not_verified.")
    # An unverified password account holds its address this long against a Google or Apple
    # sign-in with the same, provider-verified address; after that the provider's user gets the
    # address and the unverified account is deleted (docs/auth.md, "Address squatting").
    unverified_email_hold_seconds: int = Field(default=86_400, ge=0)
    # Messages a mail-sending request (forgot password, resend verification) may cause, per
    # window: per address (more are silently not sent) and per client address (429).
    account_mail_max_per_address: int = Field(default=3, ge=1)
    account_mail_max_per_ip: int = Field(default=30, ge=1)
    account_mail_window_seconds: int = Field(default=3_600, ge=60)

    @field_validator("email_verification_url", "password_reset_url")
    @classmethod
    def _has_token(cls, value: str) -> str:
        if TOKEN_PLACEHOLDER not in value or not value.startswith(("https://", "http://")):
            raise ValueError("a link setting must be an http(s) URL holding {token}")
        return value
