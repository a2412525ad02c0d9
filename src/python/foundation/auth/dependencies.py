"""FastAPI dependencies: the signed-in principal, and role checks.

A service's lifespan sets ``app.state.token_verifier`` (a TokenVerifier) and
``app.state.session_denylist`` (a SessionDenyList); routes then declare ``CurrentPrincipal``
or ``AdminPrincipal``. No service trusts an identity header: each verifies the token itself.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request
from redis.exceptions import RedisError

from foundation.auth.principal import Principal
from foundation.shared.errors import Forbidden, ServiceUnavailable, Unauthorized
from foundation.shared.logging import get_logger

log = get_logger(__name__)
_last_redis_warning = float("-inf")


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Sign in: send `Authorization: Bearer <access token>`.", code="missing_token")
    return token.strip()


async def get_principal(request: Request) -> Principal:
    token = bearer_token(request)
    principal: Principal = await request.app.state.token_verifier.verify(token)
    try:
        denied = await request.app.state.session_denylist.is_denied(principal.session_id)
    except (RedisError, OSError) as exc:
        # Fail closed: a revoked session's token must not pass because Redis is away. Logged
        # at most once a second: during an outage every request would log it.
        global _last_redis_warning
        if time.monotonic() - _last_redis_warning >= 1.0:
            _last_redis_warning = time.monotonic()
            log.warning("session deny-list check failed", error=type(exc).__name__, detail=str(exc))
        raise ServiceUnavailable(
            "Cannot check the session right now; try again shortly.",
            code="session_check_unavailable",
            headers={"Retry-After": "1"},
        ) from None
    if denied:
        raise Unauthorized("This session has been signed out.", code="session_revoked")
    request.scope.setdefault("state", {})["user_id"] = str(principal.user_id)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def get_admin(principal: CurrentPrincipal) -> Principal:
    if not principal.has_role("admin"):
        raise Forbidden("This needs the admin role.")
    return principal


AdminPrincipal = Annotated[Principal, Depends(get_admin)]
