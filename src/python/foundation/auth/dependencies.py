"""FastAPI dependencies: the signed-in principal, and role checks.

A service's lifespan state includes ``AuthState`` (its token verifier and session deny-list;
see ``foundation.shared.lifespan``); routes then declare ``CurrentPrincipal`` or
``AdminPrincipal``. No service trusts an identity header: each verifies the token itself.
"""

from __future__ import annotations

from typing import Annotated, TypedDict

from fastapi import Depends, Request

from foundation.auth.denylist import SessionDenyList
from foundation.auth.principal import Principal
from foundation.auth.verifier import TokenVerifier
from foundation.shared.errors import Forbidden, Unauthorized
from foundation.shared.lifespan import lifespan_state


class AuthState(TypedDict):
    """The part of a service's lifespan state that ``get_principal`` reads."""

    token_verifier: TokenVerifier
    session_denylist: SessionDenyList


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Sign in: send `Authorization: Bearer <access token>`.", code="missing_token")
    return token.strip()


async def get_principal(request: Request) -> Principal:
    token = bearer_token(request)
    state = lifespan_state(request, AuthState)
    principal = await state["token_verifier"].verify(token)
    # Redis away or saturated: the shared handlers answer 503 `redis_unavailable` (fail closed:
    # a revoked session's token must not pass because its revocation cannot be read).
    if await state["session_denylist"].is_denied(principal.session_id):
        raise Unauthorized("This session has been signed out.", code="session_revoked")
    request.scope.setdefault("state", {})["user_id"] = str(principal.user_id)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def get_admin(principal: CurrentPrincipal) -> Principal:
    if not principal.has_role("admin"):
        raise Forbidden("This needs the admin role.")
    return principal


AdminPrincipal = Annotated[Principal, Depends(get_admin)]
