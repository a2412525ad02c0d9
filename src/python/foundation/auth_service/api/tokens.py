"""``/auth/login``, ``/auth/refresh``, ``/auth/logout``: the token endpoints.

Sign-in and refresh are the service's hot paths, so a well-formed request to either is
answered by ``TokenEndpoints``, a plain ASGI middleware in front of FastAPI's router (inside
the request-id, logging, tracing and error middleware every request passes). FastAPI's
per-request machinery (routing, dependency solving, body parsing, response wrapping) cost
0.45 ms of the 1 ms of CPU a refresh took in the service (docs/performance.md). Anything
else (malformed JSON, missing fields, another content type, a body that is too long) goes on
to the FastAPI routes below, which answer it as before and document both in the OpenAPI.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ValidationError
from starlette.requests import Request, cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from foundation.auth_service.api.deps import Client, DbSession, Sessions, client_from_scope
from foundation.auth_service.api.schemas import LoginRequest, RefreshRequest, TokenResponse
from foundation.auth_service.services.sessions import ClientInfo, SessionService, TokenPair
from foundation.shared.errors import TooManyRequests, Unauthorized
from foundation.shared.openapi import UNAVAILABLE, documented, raises

router = APIRouter(prefix="/auth", tags=["tokens"])

# RFC 6749 5.1: token responses must not be cached.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

# Well over any valid sign-in or refresh body (a 4,096-character password, a 320-character
# email); a longer one is left to FastAPI.
FAST_BODY_LIMIT = 16 * 1024


# The device cookie (services/device_cookies.py): sent on every successful sign-in, sent back
# by browsers on their own and by mobile apps as a ``Cookie`` header, to ``/auth`` only.
DEVICE_COOKIE = "auth_device"


def _token_response(pair: TokenPair, headers: dict[str, str] = NO_STORE) -> Response:
    # Serialised here, once: FastAPI would validate and encode the model again
    # (``response_model`` still documents it in the OpenAPI schema).
    body = TokenResponse(
        access_token=pair.access_token, expires_in=pair.expires_in, refresh_token=pair.refresh_token
    )
    return Response(body.model_dump_json(), media_type="application/json", headers=headers)


def _device_cookie(scope: Scope) -> str | None:
    """The device cookie the client sent back, if any."""
    for name, value in scope["headers"]:
        if name == b"cookie" and DEVICE_COOKIE.encode() in value:
            found = cookie_parser(value.decode("latin-1")).get(DEVICE_COOKIE)
            if found:
                return found
    return None


def _over_https(scope: Scope) -> bool:
    """Whether the client used HTTPS: this connection, or the trusted proxy in front says so."""
    if scope.get("scheme") == "https":
        return True
    peer = scope.get("client")
    networks = scope["app"].state.trusted_proxies
    try:
        trusted = peer is not None and any(ipaddress.ip_address(peer[0]) in n for n in networks)
    except ValueError:
        return False
    if trusted:
        for name, value in scope["headers"]:
            if name == b"x-forwarded-proto":
                return bool(value.strip().lower() == b"https")
    return False


async def _sign_in(service: SessionService, body: LoginRequest, client: ClientInfo, scope: Scope) -> Response:
    """Both paths' sign-in: the device cookie read, the token response with a new one."""
    pair = await service.login(body.email, body.password, client, _device_cookie(scope))
    devices = service.throttle.devices
    cookie = (
        f"{DEVICE_COOKIE}={devices.issue(body.email)}; Max-Age={devices.max_age}; Path=/auth; "
        "HttpOnly; SameSite=Strict"
    )
    if scope["app"].state.settings.is_production or _over_https(scope):
        cookie += "; Secure"
    return _token_response(pair, {**NO_STORE, "Set-Cookie": cookie})


@router.post("/login", response_model=TokenResponse)
@documented(
    raises(Unauthorized, "invalid_credentials"), raises(TooManyRequests, "too_many_attempts"), UNAVAILABLE
)
async def login(body: LoginRequest, sessions: Sessions, client: Client, request: Request) -> Response:
    """Sign in. 401 `invalid_credentials` for an unknown email or a wrong password alike;
    429 `too_many_attempts` with `Retry-After` after repeated failures. A success sets the
    `auth_device` cookie (HttpOnly, Path=/auth); sent back with later sign-ins (a mobile app
    sends it as a `Cookie` header), it spares this device lockouts caused by other clients."""
    return await _sign_in(sessions, body, client, request.scope)


@router.post("/refresh", response_model=TokenResponse)
@documented(
    raises(
        Unauthorized,
        "invalid_refresh_token",
        "refresh_token_revoked",
        "refresh_token_expired",
        "refresh_token_reused",
    ),
    UNAVAILABLE,
)
async def refresh(body: RefreshRequest, sessions: Sessions, client: Client) -> Response:
    """Rotate the refresh token. 401 when it is unknown, expired, revoked or reused (reuse
    outside the grace window signs the whole session out)."""
    pair = await sessions.refresh(body.refresh_token, client)
    return _token_response(pair)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
@documented(UNAVAILABLE)
async def logout(body: RefreshRequest, db: DbSession, sessions: Sessions) -> Response:
    """End the session of this refresh token (204 even if it had ended already). 503
    `redis_unavailable` if its access tokens cannot be put on the deny-list: the refresh token
    is revoked all the same; retry, and the retry denies them."""
    await sessions.logout(db, body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- the fast path -------------------------------------------------------------------------

Handler = Callable[[SessionService, Any, ClientInfo, Scope], Awaitable[Response]]


async def _refresh(
    service: SessionService, body: RefreshRequest, client: ClientInfo, scope: Scope
) -> Response:
    return _token_response(await service.refresh(body.refresh_token, client))


FAST_ROUTES: dict[str, tuple[type[BaseModel], Handler]] = {
    "/auth/login": (LoginRequest, _sign_in),
    "/auth/refresh": (RefreshRequest, _refresh),
}


def _is_json(scope: Scope) -> bool:
    """Whether the media type is exactly ``application/json`` (parameters aside), read the
    way the OAuth callback reads it."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            media_type: bytes = value.split(b";", 1)[0].strip().lower()
            return media_type == b"application/json"
    return False


async def _read_body(receive: Receive) -> tuple[list[Message], bytes | None]:
    """The request's messages as received, and its body if it is complete and short enough."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        size += len(message.get("body", b""))
        if size > FAST_BODY_LIMIT:
            return messages, None
        if not message.get("more_body", False):
            return messages, b"".join(m.get("body", b"") for m in messages)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that gives back what was read already, then reads on."""
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


def _handler_for(app: Any, exc: Exception) -> Any:
    """The exception handler ``app`` has registered for ``exc``'s class or nearest base,
    short of the catch-all ``Exception`` one."""
    handlers = app.exception_handlers
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]
    return None


class TokenEndpoints:
    """Answers a well-formed ``POST /auth/login`` or ``/auth/refresh`` directly; passes
    everything else, and any request it cannot parse, on to ``app`` (FastAPI's router)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = FAST_ROUTES.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        model, handler = route
        messages, raw = await _read_body(receive)
        try:
            if raw is None:
                raise ValueError("not a complete, short body")
            body = model.model_validate_json(raw)
        except (ValueError, ValidationError):
            # FastAPI answers it (422 with the fields at fault, 413, ...), exactly as before.
            await self.app(scope, _replay(messages, receive), send)
            return
        state = scope["app"].state
        client = client_from_scope(scope, state.trusted_proxies)
        try:
            response = await handler(state.session_service, body, client, scope)
        except Exception as exc:
            # The app's own handlers answer, as they would behind FastAPI's router (AppError
            # as problem+json, the database or Redis away as 503); anything else is re-raised
            # to the last-resort 500 handler.
            answer = _handler_for(scope["app"], exc)
            if answer is None:
                raise
            await (await answer(Request(scope, receive), exc))(scope, receive, send)
            return
        await response(scope, receive, send)
