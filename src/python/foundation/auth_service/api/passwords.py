"""``/auth/password/...``: forgotten (reset by mail) and changed passwords."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, Field

from foundation.auth.dependencies import CurrentPrincipal
from foundation.auth_service.api.deps import Client, DbSession
from foundation.auth_service.api.email import ACCEPTED_DETAIL, TOKEN_CODES, Accepted, EmailBody
from foundation.auth_service.api.lifecycle_deps import Passwords
from foundation.auth_service.api.schemas import RegisterRequest
from foundation.shared.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    TooManyRequests,
    ValidationFailed,
)
from foundation.shared.openapi import SIGNED_IN, UNAVAILABLE, documented, raises

router = APIRouter(prefix="/auth/password", tags=["accounts"])

# The new password is described and bounded as at registration (the policy answers 422
# `weak_password`, saying what is wrong).
NewPassword = Annotated[str, RegisterRequest.model_fields["password"]]


class ResetBody(BaseModel):
    token: str = Field(min_length=1, max_length=512, description="From the link in the message.")
    new_password: NewPassword


class ChangeBody(BaseModel):
    current_password: str = Field(min_length=1, max_length=4096)
    new_password: NewPassword


@router.post("/forgot", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
@documented(raises(TooManyRequests, "too_many_requests"), UNAVAILABLE)
async def forgot_password(body: EmailBody, passwords: Passwords, client: Client) -> Accepted:
    """Mail a password-reset link to this address if an account has it. 202 and the same
    body, in the same time, whether or not one does (the address is looked up after the
    answer). The link works once, for `PASSWORD_RESET_TTL_SECONDS` (30 min); only the newest
    one sent works. At most
    `ACCOUNT_MAIL_MAX_PER_ADDRESS` (3) messages per address per `ACCOUNT_MAIL_WINDOW_SECONDS`
    (1 h), more are not sent; 429 `too_many_requests` after `ACCOUNT_MAIL_MAX_PER_IP` (30)
    requests from one client."""
    await passwords.forgot(body.email, client)
    return Accepted(detail=ACCEPTED_DETAIL)


@router.post("/reset", status_code=status.HTTP_204_NO_CONTENT)
@documented(raises(BadRequest, *TOKEN_CODES), raises(ValidationFailed, "weak_password"), UNAVAILABLE)
async def reset_password(body: ResetBody, db: DbSession, passwords: Passwords) -> Response:
    """Set a new password with the token of a reset link. Every session of the account ends
    (its access tokens stop working at once), the address counts as verified (the link reached
    it), and a notice is mailed. 400 `invalid_token` (unknown, replaced, or a verification
    token), `token_expired`, `token_used`; 422 `weak_password` (the token stays usable)."""
    await passwords.reset(db, body.token, body.new_password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/change", status_code=status.HTTP_204_NO_CONTENT)
@documented(
    SIGNED_IN,
    raises(Forbidden, "wrong_password", "password_not_set"),
    raises(NotFound, "user_not_found"),
    raises(ValidationFailed, "weak_password"),
    raises(TooManyRequests, "too_many_attempts"),
    UNAVAILABLE,
)
async def change_password(
    body: ChangeBody, principal: CurrentPrincipal, db: DbSession, passwords: Passwords, client: Client
) -> Response:
    """Replace the password. Needs the current one, which is the fresh authentication here
    (403 `wrong_password`; repeated failures count as failed sign-ins: 429
    `too_many_attempts`). Every other session ends; this one stays signed in. 403
    `password_not_set` for an account made by Google or Apple (set one with a reset link);
    422 `weak_password`. A notice is mailed."""
    await passwords.change(
        db, principal.user_id, principal.session_id, body.current_password, body.new_password, client
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
