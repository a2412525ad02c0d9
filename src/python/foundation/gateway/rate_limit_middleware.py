"""Rate limits at the edge: per user when signed in, per client address otherwise, stricter
on sign-in routes. Every answer carries the RateLimit headers; a refusal is 429 with
``Retry-After``. When Redis cannot be reached, the configured failure mode decides.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from foundation.gateway.authentication import (
    AUTH_ERROR_KEY,
    DENY_KEY,
    PRINCIPAL_KEY,
    ROUTE_KEY,
    session_revoked,
)
from foundation.gateway.rate_limit import Decision, Quota, RedisRateLimiter
from foundation.gateway.redis_status import REDIS_ERRORS, RedisStatus
from foundation.gateway.route_table import RouteInfo
from foundation.gateway.settings import FailureMode, GatewaySettings, parse_rate
from foundation.shared.client_address import client_ip
from foundation.shared.errors import AppError, ServiceUnavailable, TooManyRequests
from foundation.shared.redis import Keys

# Lower-case, as the proxy passes an answer's header names on.
SERVICE_LIMIT_FIELDS = frozenset({b"ratelimit", b"ratelimit-policy"})


class RateLimitPolicy:
    """Which quota and key a request counts against, and what to do without Redis."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.keys = Keys(settings.redis_key_prefix)
        self.user = Quota("user", *parse_rate(settings.rate_limit_user))
        self.anonymous = Quota("anonymous", *parse_rate(settings.rate_limit_anonymous))
        self.strict_limit = parse_rate(settings.rate_limit_strict)
        self.fail_mode = settings.rate_limit_fail_mode
        self.strict_fail_mode = settings.rate_limit_strict_fail_mode
        self._strict: dict[str, Quota] = {}

    def strict(self, group: str) -> Quota:
        quota = self._strict.get(group)
        if quota is None:
            quota = self._strict[group] = Quota(group, *self.strict_limit)
        return quota

    def quota_and_key(self, scope: Scope) -> tuple[Quota, str]:
        state = scope["state"]
        route: RouteInfo = state[ROUTE_KEY]
        if route.strict_group:
            return self.strict(route.strict_group), self.keys(
                "gateway", "rl", route.strict_group, client_ip(scope)
            )
        principal = state.get(PRINCIPAL_KEY)
        if principal is not None:
            return self.user, self.keys("gateway", "rl", "user", str(principal.user_id))
        return self.anonymous, self.keys("gateway", "rl", "ip", client_ip(scope))

    def mode_for(self, scope: Scope) -> FailureMode:
        route: RouteInfo = scope["state"][ROUTE_KEY]
        return self.strict_fail_mode if route.strict_group else self.fail_mode

    def describe(self) -> dict[str, object]:
        return {
            "user": f"{self.user.limit}/{self.user.window}s",
            "anonymous": f"{self.anonymous.limit}/{self.anonymous.window}s",
            "sign_in": f"{self.strict_limit[0]}/{self.strict_limit[1]}s",
            "on_redis_failure": {"general": self.fail_mode.value, "sign_in": self.strict_fail_mode.value},
        }


def unavailable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "Rate limits cannot be checked right now; try again shortly.",
        code="rate_limiter_unavailable",
        headers={"Retry-After": "1"},
    )


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        policy: RateLimitPolicy,
        limiter: Callable[[], RedisRateLimiter],
        status: RedisStatus,
    ) -> None:
        self.app = app
        self.policy = policy
        self.limiter = limiter
        self.status = status

    def redis_failed(self, scope: Scope, exc: BaseException | None) -> None:
        """Fail open (return) or closed (raise 503) for this request."""
        if exc is not None:
            self.status.failed(exc)
        if self.policy.mode_for(scope) is FailureMode.closed:
            raise unavailable()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        quota, key = self.policy.quota_and_key(scope)
        decision: Decision | None = None
        if not self.status.available:
            self.redis_failed(scope, None)
        else:
            try:
                decision = await self.limiter().hit(key, quota, scope["state"].get(DENY_KEY))
                if decision.session_denied:
                    # A revoked session: not this user's request; it counts against the address.
                    state = scope["state"]
                    del state[PRINCIPAL_KEY]
                    state.pop("user_id", None)
                    state[AUTH_ERROR_KEY] = session_revoked()
                    quota, key = self.policy.quota_and_key(scope)
                    decision = await self.limiter().hit(key, quota)
            except REDIS_ERRORS as exc:
                self.redis_failed(scope, exc)
            else:
                self.status.succeeded()
        if decision is None:
            await self.app(scope, receive, send)
            return
        extra = decision.headers()
        if not decision.admitted:
            raise TooManyRequests(  # sets Retry-After itself: one value, not two
                f"Too many requests; try again in {decision.reset} s.",
                retry_after=decision.reset,
                headers={name.decode(): value.decode() for name, value in extra if name != b"retry-after"},
            )

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                # A service that reports a limit of its own (auth-service's login throttle on
                # its 429) is the one that decided this answer: its set alone reaches the client.
                if not any(name in SERVICE_LIMIT_FIELDS for name, _ in headers):
                    message = {**message, "headers": [*headers, *extra]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except AppError as exc:  # answered further out (401, 502, ...): still with the headers
            present = {name.lower() for name in exc.headers}
            for name, value in extra:
                if name.decode() not in present:
                    exc.headers[name.decode()] = value.decode()
            raise
