"""``/auth/register`` and ``/auth/me``; the fresh-authentication check of sensitive changes.

Deleting the account wants fresh authentication (RFC 9470): the access token's ``auth_time``
(the password or OAuth sign-in that opened its session; refreshes keep it) no older than
``FRESH_AUTH_MAX_AGE_SECONDS``. A stolen or long-lived session alone cannot delete the account.
"""

from __future__ import annotations

import time
from typing import Annotated

import jwt
from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from foundation.auth.dependencies import CurrentPrincipal, bearer_token
from foundation.auth.principal import Principal
from foundation.auth_service.api.deps import Accounts, DbSession
from foundation.auth_service.api.lifecycle_deps import Verification
from foundation.auth_service.api.oauth import OAuth
from foundation.auth_service.api.schemas import CurrentUserOut, RegisterRequest, UserOut
from foundation.auth_service.models import User
from foundation.shared.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from foundation.shared.openapi import SIGNED_IN, UNAVAILABLE, documented, raises

router = APIRouter(prefix="/auth", tags=["accounts"])


class AccountOut(CurrentUserOut):
    email_verified: bool = Field(description="Whether the address was confirmed by a link mailed to it.")


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=UserOut)
@documented(raises(Conflict, "email_taken"), raises(ValidationFailed, "weak_password"), UNAVAILABLE)
async def register(
    body: RegisterRequest, db: DbSession, accounts: Accounts, verification: Verification
) -> UserOut:
    """Create an account and mail a link to confirm its address (`POST /auth/email/verify`).
    409 `email_taken` if the email is registered (in any letter case); 422 `weak_password` if
    the password is too short, too long or too easy to guess."""

    async def send_link(db: AsyncSession, user: User) -> None:
        await verification.request(db, user.id, user.email)

    user = await accounts.register(db, str(body.email), body.password, on_created=send_link)
    verification.mail_written()
    return UserOut.model_validate(user)


@router.get("/me", response_model=AccountOut)
@documented(SIGNED_IN, raises(NotFound, "user_not_found"), UNAVAILABLE)
async def me(principal: CurrentPrincipal, db: DbSession, accounts: Accounts) -> AccountOut:
    user = await accounts.get(db, principal.user_id)
    return AccountOut(
        id=user.id,
        email=user.email,
        created_at=user.created_at,
        roles=sorted(user.roles or []),
        email_verified=user.email_verified,
    )


async def freshly_authenticated(principal: CurrentPrincipal, request: Request) -> Principal:
    """The principal, if its sign-in is at most ``fresh_auth_max_age_seconds`` old; else 401
    ``fresh_authentication_required`` with RFC 9470's challenge (sign in again, then retry)."""
    max_age: int = request.app.state.settings.fresh_auth_max_age_seconds
    # The token was verified a moment ago (CurrentPrincipal): only its auth_time is read here.
    claims = jwt.decode(bearer_token(request), options={"verify_signature": False})
    auth_time = claims.get("auth_time")
    fresh = (
        isinstance(auth_time, int) and not isinstance(auth_time, bool) and time.time() - auth_time <= max_age
    )
    if not fresh:
        raise Unauthorized(
            f"Sign in again (within {max_age} seconds) to do this.",
            code="fresh_authentication_required",
            headers={
                "WWW-Authenticate": f'Bearer error="insufficient_user_authentication", max_age={max_age}'
            },
        )
    return principal


FreshPrincipal = Annotated[Principal, Depends(freshly_authenticated)]


@router.delete("/me", status_code=status.HTTP_204_NO_CONTENT)
@documented(
    SIGNED_IN,
    raises(Unauthorized, "fresh_authentication_required"),
    raises(NotFound, "user_not_found"),
    UNAVAILABLE,
)
async def delete_me(principal: FreshPrincipal, db: DbSession, accounts: Accounts, oauth: OAuth) -> Response:
    """Delete the account: every session ends, and history and stats forget the user. Tokens
    stored for Google and Apple are revoked at the provider first (Apple requires it). Needs a
    sign-in (password, Google or Apple) at most `FRESH_AUTH_MAX_AGE_SECONDS` (300) old: else
    401 `fresh_authentication_required` with `WWW-Authenticate: Bearer
    error="insufficient_user_authentication", max_age=300` (RFC 9470); sign in again and retry."""
    await oauth.revoke_provider_tokens(db, principal.user_id)
    await accounts.delete(db, principal.user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
