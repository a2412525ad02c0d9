"""The gateway's front door for service routes: ``/auth``, ``/history``, ``/stats``.

``EdgeRouter`` sends those paths through the edge pipeline (identify, rate limit, require
authentication, proxy) and everything else (``/health``, ``/docs``, ...) to the FastAPI
routes. A method no service route takes is 405 here, before authentication. It is also the
one place where errors raised by the pipeline become problem+json, and where an unexpected
exception becomes a 500 without internals (logged with the request id).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from foundation.gateway.authentication import ROUTE_KEY
from foundation.gateway.problems import send_problem
from foundation.gateway.proxy import STATE_KEY
from foundation.gateway.route_table import classify, is_safe_path
from foundation.shared.errors import AppError, BadRequest
from foundation.shared.logging import get_logger

log = get_logger(__name__)


class InternalError(AppError):
    pass


class MethodNotAllowed(AppError):
    status, code, title = 405, "method_not_allowed", "Method not allowed"


# What a service route may be asked; anything else (TRACE, CONNECT, made-up methods) is
# answered here, before authentication, and never reaches a service.
ALLOWED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_ALLOWED = frozenset(ALLOWED_METHODS)
_ALLOW = {"Allow": ", ".join(ALLOWED_METHODS)}


class EdgeRouter:
    def __init__(self, app: ASGIApp, *, edge: ASGIApp) -> None:
        self.app = app
        self.edge = edge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            route = classify(scope["method"], scope["path"])
            if route is None:
                await self.app(scope, receive, tracking_send)
                return
            if scope["method"] not in _ALLOWED:
                raise MethodNotAllowed(f"{scope['method']} is not supported here.", headers=_ALLOW)
            if not is_safe_path(scope["path"]):
                raise BadRequest("The path contains dot segments or empty segments.", code="invalid_path")
            state = scope.setdefault("state", {})
            state[ROUTE_KEY] = route
            state[STATE_KEY] = route.service
            await self.edge(scope, receive, tracking_send)
        except AppError as exc:
            if started:
                raise
            await send_problem(scope, receive, send, exc)
        except Exception as exc:
            log.exception("unhandled error", exc_info=exc)
            if started:
                raise
            await send_problem(scope, receive, send, InternalError("An unexpected error occurred."))
