"""Auth service database models: users, their OAuth links, second factors, sessions, the
tokens mailed to them, and the event and mail outboxes.

A *session* (what a user sees in ``GET /auth/sessions`` and what ``sid`` names in access
tokens) is a refresh-token family: the rows of ``sessions`` sharing a ``family_id``. Each
row is one refresh token generation; rotating a token adds a row and points the old one at
it (``replaced_by_id``). Only the token's SHA-256 is stored.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from foundation.database.base import Timestamps, UUIDPrimaryKey, new_base
from foundation.events.outbox import outbox_model
from foundation.mail.outbox import mail_outbox_model

if TYPE_CHECKING:  # new_base() makes a fresh class; type checkers see its base
    from sqlalchemy.orm import DeclarativeBase as Base
else:
    Base = new_base()


class User(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "users"
    __table_args__ = (Index("uq_users_email_lower", func.lower(text("email")), unique=True),)

    email: Mapped[str] = mapped_column(String(320))
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # The name a provider shared (Apple: on the first authorization only).
    display_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    # Proven by a link mailed to the address (or by the provider that created the account).
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    roles: Mapped[list[str]] = mapped_column(
        ARRAY(String(50)), default=list, server_default=text("'{}'::varchar[]")
    )


class OAuthProvider(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "oauth_providers"
    __table_args__ = (UniqueConstraint("provider", "provider_id", name="uq_oauth_providers_provider_id"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    provider_id: Mapped[str] = mapped_column(String(255))
    # Encrypted at rest (foundation.auth token encryption); never stored in the clear.
    access_token: Mapped[str | None] = mapped_column(Text, nullable=True)
    refresh_token: Mapped[str | None] = mapped_column(Text, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Session(UUIDPrimaryKey, Base):
    __tablename__ = "sessions"
    __table_args__ = (
        Index("ix_sessions_family_id", "family_id"),
        # Dead families are deleted by age (repository.sessions.purge_created_before).
        Index("ix_sessions_created_at", "created_at"),
        Index(
            "ix_sessions_user_live",
            "user_id",
            postgresql_where=text("replaced_by_id IS NULL AND revoked_at IS NULL"),
        ),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # SHA-256 of the refresh token.
    token: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    family_id: Mapped[uuid.UUID] = mapped_column()
    # When the user signed in (the family's start): the absolute lifetime counts from here.
    authenticated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # min(created_at + idle timeout, authenticated_at + absolute lifetime)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    replaced_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("sessions.id", ondelete="SET NULL"), nullable=True
    )
    # The successor token, sealed with a key derived from this row's token: lets the
    # immediately previous token get the same successor within the grace window.
    successor_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(512), nullable=True)
    ip: Mapped[str | None] = mapped_column(String(45), nullable=True)
    # How the user proved who they are (RFC 8176 values, e.g. {pwd, otp, mfa}): the access
    # tokens' ``amr``, the same for every generation of the family.
    amr: Mapped[list[str]] = mapped_column(
        ARRAY(String(16)), default=list, server_default=text("'{}'::varchar[]")
    )


class TotpFactor(Timestamps, Base):
    """A user's authenticator app (RFC 6238). Confirmed once a first code was right."""

    __tablename__ = "totp_factors"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    # The shared secret, sealed (foundation.auth.encryption), bound to the user.
    secret: Mapped[str] = mapped_column(Text)
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The last time step a code was accepted for: a code works once, and never an older one.
    last_used_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class RecoveryCode(UUIDPrimaryKey, Base):
    """One of a user's single-use recovery codes; only its SHA-256 is stored."""

    __tablename__ = "recovery_codes"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Passkey(UUIDPrimaryKey, Timestamps, Base):
    """A WebAuthn credential: a second factor, and a way to sign in without a password."""

    __tablename__ = "passkeys"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    credential_id: Mapped[bytes] = mapped_column(LargeBinary(1023), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    transports: Mapped[list[str]] = mapped_column(
        ARRAY(String(32)), default=list, server_default=text("'{}'::varchar[]")
    )
    name: Mapped[str] = mapped_column(String(100))
    backed_up: Mapped[bool] = mapped_column(Boolean, default=False)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AccountToken(UUIDPrimaryKey, Base):
    """A single-use token mailed to a user: verify an address, or reset the password.

    The row is written with the request; the token itself is made when its message is
    composed (services/account_mail.py), and only its SHA-256 is stored, so ``token_hash``
    is NULL until then."""

    __tablename__ = "account_tokens"
    __table_args__ = (Index("ix_account_tokens_user_id_purpose", "user_id", "purpose"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(32))  # "verify_email" | "reset_password"
    # The address it was sent to: for an email change, the new one it verifies.
    email: Mapped[str] = mapped_column(String(320))
    token_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), unique=True, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


OutboxEvent = outbox_model(Base)
MailOutbox = mail_outbox_model(Base)

__all__ = [
    "AccountToken",
    "Base",
    "MailOutbox",
    "OAuthProvider",
    "OutboxEvent",
    "Passkey",
    "RecoveryCode",
    "Session",
    "TotpFactor",
    "User",
]
