"""``/auth/register`` and ``/auth/me``."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from foundation.auth.dependencies import CurrentPrincipal
from foundation.auth_service.api.deps import Accounts, DbSession
from foundation.auth_service.api.oauth import OAuth
from foundation.auth_service.api.schemas import CurrentUserOut, RegisterRequest, UserOut
from foundation.shared.errors import Conflict, NotFound, ValidationFailed
from foundation.shared.openapi import SIGNED_IN, UNAVAILABLE, documented, raises

router = APIRouter(prefix="/auth", tags=["accounts"])


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=UserOut)
@documented(raises(Conflict, "email_taken"), raises(ValidationFailed, "weak_password"), UNAVAILABLE)
async def register(body: RegisterRequest, db: DbSession, accounts: Accounts) -> UserOut:
    """Create an account. 409 `email_taken` if the email is registered (in any letter case);
    422 `weak_password` if the password is too short, too long or too easy to guess."""
    user = await accounts.register(db, str(body.email), body.password)
    return UserOut.model_validate(user)


@router.get("/me", response_model=CurrentUserOut)
@documented(SIGNED_IN, raises(NotFound, "user_not_found"), UNAVAILABLE)
async def me(principal: CurrentPrincipal, db: DbSession, accounts: Accounts) -> CurrentUserOut:
    user = await accounts.get(db, principal.user_id)
    return CurrentUserOut(
        id=user.id, email=user.email, created_at=user.created_at, roles=sorted(user.roles or [])
    )


@router.delete("/me", status_code=status.HTTP_204_NO_CONTENT)
@documented(SIGNED_IN, raises(NotFound, "user_not_found"), UNAVAILABLE)
async def delete_me(principal: CurrentPrincipal, db: DbSession, accounts: Accounts, oauth: OAuth) -> Response:
    """Delete the account: every session ends, and history and stats forget the user. Tokens
    stored for Google and Apple are revoked at the provider first (Apple requires it)."""
    await oauth.revoke_provider_tokens(db, principal.user_id)
    await accounts.delete(db, principal.user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
