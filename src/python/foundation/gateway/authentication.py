"""Who is calling: verify the bearer token at the edge, then insist on it where needed.

``IdentifyMiddleware`` verifies the token locally (``foundation.auth.TokenVerifier`` against
auth-service's JWKS) and checks the session deny-list. It never answers by itself: it records
either the principal or the reason, so the rate limiter counts a failed attempt against the
client's address before ``RequireAuthentication`` answers 401. Public routes skip both.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from foundation.auth.denylist import SessionDenyList
from foundation.auth.verifier import TokenVerifier
from foundation.gateway.redis_status import REDIS_ERRORS, RedisStatus
from foundation.gateway.route_table import RouteInfo
from foundation.shared.errors import Unauthorized

ROUTE_KEY = "route"
PRINCIPAL_KEY = "principal"
AUTH_ERROR_KEY = "auth_error"
DENY_KEY = "session_deny_key"  # set when the rate limiter checks the deny-list in its script


def session_revoked() -> Unauthorized:
    return Unauthorized("This session has been signed out.", code="session_revoked")


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


class IdentifyMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: Callable[[], TokenVerifier],
        denylist: Callable[[], SessionDenyList],
        status: RedisStatus,
        on_redis_error: Callable[[Scope, BaseException | None], None],
        denylist_checked_by_rate_limiter: bool = False,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.denylist = denylist
        self.status = status
        self.on_redis_error = on_redis_error  # decides fail-open / fail-closed; may raise
        # One Redis round trip per request: the rate limiter's script checks the deny-list.
        self.deferred = denylist_checked_by_rate_limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope["state"]
        route: RouteInfo = state[ROUTE_KEY]
        if not route.public:
            state[AUTH_ERROR_KEY] = await self._identify(scope, state)
        await self.app(scope, receive, send)

    async def _identify(self, scope: Scope, state: dict[str, object]) -> Unauthorized | None:
        token = bearer_token(scope)
        if token is None:
            return Unauthorized("Sign in: send `Authorization: Bearer <access token>`.", code="missing_token")
        try:
            principal = await self.verifier().verify(token)
        except Unauthorized as exc:
            return exc
        if self.deferred:
            state[DENY_KEY] = self.denylist().key(principal.session_id)
            state[PRINCIPAL_KEY] = principal
            state["user_id"] = str(principal.user_id)
            return None
        denied = False
        if not self.status.available:
            self.on_redis_error(scope, None)  # raises when failing closed
        else:
            try:  # over the gateway's pipe, bounded by its ``call_timeout`` (REDIS_TIMEOUT)
                denied = await self.denylist().is_denied(principal.session_id)
            except REDIS_ERRORS as exc:
                self.on_redis_error(scope, exc)
        if denied:
            return session_revoked()
        state[PRINCIPAL_KEY] = principal
        state["user_id"] = str(principal.user_id)  # for the access log
        return None


class RequireAuthentication:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = scope["state"].get(AUTH_ERROR_KEY)
        if error is not None:
            raise error
        await self.app(scope, receive, send)
