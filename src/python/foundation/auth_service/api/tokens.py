"""``/auth/login``, ``/auth/refresh``, ``/auth/logout``: the token endpoints.

Sign-in and refresh are the service's hot paths: their routes find the session service and
the client through the ``Request`` (``deps.session_service``, ``deps.client_of``), so FastAPI
has no dependency to solve for them, and serialise the token response once. Refresh, whose
HTTP handling is most of its cost, also validates its body itself, in one pass over the
bytes (``deps.json_body``: the same 422 problem, with the fields at fault, as a declared
body); its model is documented with ``openapi_extra``. Sign-in's cost is the password hash:
FastAPI parses its body as usual.
"""

from __future__ import annotations

import ipaddress

from fastapi import APIRouter, Response, status
from pydantic import TypeAdapter
from starlette.requests import Request, cookie_parser

from foundation.auth_service.api.deps import DbSession, Sessions, client_of, json_body, session_service
from foundation.auth_service.api.schemas import LoginRequest, RefreshRequest, TokenResponse
from foundation.auth_service.lifespan import State
from foundation.auth_service.services.factors import MfaRequired
from foundation.auth_service.services.sessions import TokenPair
from foundation.shared.errors import Forbidden, TooManyRequests, Unauthorized
from foundation.shared.lifespan import lifespan_state
from foundation.shared.openapi import UNAVAILABLE, VALIDATION, documented, raises
from foundation.shared.routing import RequestRoute

router = APIRouter(prefix="/auth", tags=["tokens"])

REFRESH = TypeAdapter(RefreshRequest)
# The body FastAPI would document for a declared ``RefreshRequest``; the schema is in the
# document's components because ``logout`` declares one (test_tokens.py checks it resolves).
REFRESH_BODY = {
    "requestBody": {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RefreshRequest"}}},
        "required": True,
    }
}


# RFC 6749 5.1: token responses must not be cached.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

# The device cookie (services/device_cookies.py): sent on every successful sign-in, sent back
# by browsers on their own and by mobile apps as a ``Cookie`` header, to ``/auth`` only.
DEVICE_COOKIE = "auth_device"


def _token_response(pair: TokenPair, headers: dict[str, str] = NO_STORE) -> Response:
    # Serialised here, once: returned as a model, FastAPI would validate and encode it again
    # (``response_model`` documents it in the OpenAPI schema).
    body = TokenResponse(
        access_token=pair.access_token, expires_in=pair.expires_in, refresh_token=pair.refresh_token
    )
    return Response(body.model_dump_json(), media_type="application/json", headers=headers)


def _device_cookie(request: Request) -> str | None:
    """The device cookie the client sent back, if any."""
    for name, value in request.scope["headers"]:
        if name == b"cookie" and DEVICE_COOKIE.encode() in value:
            found = cookie_parser(value.decode("latin-1")).get(DEVICE_COOKIE)
            if found:
                return found
    return None


def over_https(request: Request) -> bool:
    """Whether the client used HTTPS: this connection, or the trusted proxy in front says so."""
    scope = request.scope
    if scope.get("scheme") == "https":
        return True
    peer = scope.get("client")
    networks = lifespan_state(request, State)["trusted_proxies"]
    try:
        trusted = peer is not None and any(ipaddress.ip_address(peer[0]) in n for n in networks)
    except ValueError:
        return False
    if trusted:
        for name, value in scope["headers"]:
            if name == b"x-forwarded-proto":
                return bool(value.strip().lower() == b"https")
    return False


@router.post("/login", response_model=TokenResponse)
@documented(
    raises(Unauthorized, "invalid_credentials"),
    raises(MfaRequired),
    raises(Forbidden, "email_not_verified"),
    raises(TooManyRequests, "too_many_attempts"),
    UNAVAILABLE,
)
async def login(body: LoginRequest, request: Request) -> Response:
    """Sign in. 401 `invalid_credentials` for an unknown email or a wrong password alike;
    429 `too_many_attempts` with `Retry-After` after repeated failures. A success sets the
    `auth_device` cookie (HttpOnly, Path=/auth); sent back with later sign-ins (a mobile app
    sends it as a `Cookie` header), it spares this device lockouts caused by other clients."""
    service = session_service(request)
    pair = await service.login(body.email, body.password, client_of(request), _device_cookie(request))
    devices = service.throttle.devices
    cookie = (
        f"{DEVICE_COOKIE}={devices.issue(body.email)}; Max-Age={devices.max_age}; Path=/auth; "
        "HttpOnly; SameSite=Strict"
    )
    if request.app.state.settings.is_production or over_https(request):
        cookie += "; Secure"
    return _token_response(pair, {**NO_STORE, "Set-Cookie": cookie})


@documented(
    VALIDATION,
    raises(
        Unauthorized,
        "invalid_refresh_token",
        "refresh_token_revoked",
        "refresh_token_expired",
        "refresh_token_reused",
    ),
    UNAVAILABLE,
)
async def refresh(request: Request) -> Response:
    """Rotate the refresh token. 401 when it is unknown, expired, revoked or reused (reuse
    outside the grace window signs the whole session out)."""
    body = await json_body(request, REFRESH)
    pair = await session_service(request).refresh(body.refresh_token, client_of(request))
    return _token_response(pair)


# Takes the request alone: no dependency to solve or answer to re-validate (RequestRoute).
router.add_api_route(
    "/refresh",
    refresh,
    methods=["POST"],
    response_model=TokenResponse,
    openapi_extra=REFRESH_BODY,
    route_class_override=RequestRoute,
)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
@documented(UNAVAILABLE)
async def logout(body: RefreshRequest, db: DbSession, sessions: Sessions) -> Response:
    """End the session of this refresh token (204 even if it had ended already). 503
    `redis_unavailable` if its access tokens cannot be put on the deny-list: the refresh token
    is revoked all the same; retry, and the retry denies them."""
    await sessions.logout(db, body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
