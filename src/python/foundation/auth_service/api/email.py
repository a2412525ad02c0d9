"""``/auth/email/...``: verify an address, ask for the link again, change the address."""

from __future__ import annotations

from fastapi import APIRouter, status
from pydantic import BaseModel, EmailStr, Field

from foundation.auth_service.api.accounts import FreshPrincipal
from foundation.auth_service.api.deps import Client, DbSession
from foundation.auth_service.api.lifecycle_deps import Verification
from foundation.shared.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
)
from foundation.shared.openapi import SIGNED_IN, UNAVAILABLE, documented, raises

router = APIRouter(prefix="/auth/email", tags=["accounts"])

# What every mail-sending request that anyone may make answers, whatever the address.
ACCEPTED_DETAIL = "If an account needs it, a message is on its way."
TOKEN_CODES = ("invalid_token", "token_expired", "token_used")


class Accepted(BaseModel):
    detail: str = Field(description="The same for every address.")


class TokenBody(BaseModel):
    token: str = Field(min_length=1, max_length=512, description="From the link in the message.")


class EmailBody(BaseModel):
    # Not validated as an email: a malformed one is answered like an unknown one.
    email: str = Field(min_length=1, max_length=320)


class ChangeEmailBody(BaseModel):
    new_email: EmailStr = Field(max_length=320)
    password: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="The current password; accounts made by Google or Apple have none to give.",
    )


class VerifiedEmail(BaseModel):
    email: str = Field(description="The account's address, now verified.")
    email_verified: bool = True


@router.post("/verify", response_model=VerifiedEmail)
@documented(raises(BadRequest, *TOKEN_CODES), raises(Conflict, "email_taken"), UNAVAILABLE)
async def verify_email(body: TokenBody, db: DbSession, verification: Verification) -> VerifiedEmail:
    """Confirm an address with the token of the link sent to it (on registration, on request,
    or to the new address of an email change, which then becomes the account's). No sign-in
    needed: the token is the proof. A token works once, until it expires
    (`EMAIL_VERIFICATION_TTL_SECONDS`, 24 h), and only the newest one sent to a user: 400
    `invalid_token` (unknown, replaced, or a password-reset token), `token_expired`,
    `token_used`. 409 `email_taken` if another account took the new address meanwhile."""
    user = await verification.verify(db, body.token)
    return VerifiedEmail(email=user.email)


@router.post("/resend", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
@documented(raises(TooManyRequests, "too_many_requests"), UNAVAILABLE)
async def resend_verification(body: EmailBody, verification: Verification, client: Client) -> Accepted:
    """Send a new verification link to this address if it belongs to an account that has not
    verified it. 202 and the same body in every case (known, unknown, verified), so the answer
    says nothing about who has an account. At most `ACCOUNT_MAIL_MAX_PER_ADDRESS` (3) messages
    per address per `ACCOUNT_MAIL_WINDOW_SECONDS` (1 h), more are not sent; 429
    `too_many_requests` after `ACCOUNT_MAIL_MAX_PER_IP` (30) requests from one client."""
    await verification.resend(body.email, client)
    return Accepted(detail=ACCEPTED_DETAIL)


@router.post("/change", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
@documented(
    SIGNED_IN,
    raises(Unauthorized, "fresh_authentication_required"),
    raises(Forbidden, "wrong_password"),
    raises(NotFound, "user_not_found"),
    raises(Conflict, "email_taken"),
    raises(ValidationFailed, "email_unchanged"),
    raises(TooManyRequests, "too_many_attempts"),
    UNAVAILABLE,
)
async def change_email(
    body: ChangeEmailBody,
    principal: FreshPrincipal,
    db: DbSession,
    verification: Verification,
    client: Client,
) -> Accepted:
    """Move the account to a new address. Needs a fresh sign-in (as `DELETE /auth/me`: 401
    `fresh_authentication_required`) and the current password (403 `wrong_password`; repeated
    failures count as failed sign-ins: 429 `too_many_attempts`). A verification link goes to
    the new address and a notice to the current one; the address changes when the link is
    opened (`POST /auth/email/verify`). 409 `email_taken`, 422 `email_unchanged`."""
    await verification.change(db, principal.user_id, str(body.new_email), body.password, client)
    return Accepted(detail="A link to confirm the new address is on its way to it.")
