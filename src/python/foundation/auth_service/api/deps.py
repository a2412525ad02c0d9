"""Dependencies the routers share: the database session, the services, the client.

``session_service``, ``client_of`` and ``json_body`` are plain functions: the sign-in and
refresh routes call them on their ``Request``, so that FastAPI has no dependency to solve and
no body to parse for them per request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from foundation.auth_service.lifespan import State
from foundation.auth_service.services.accounts import AccountService
from foundation.auth_service.services.sessions import ClientInfo, SessionService
from foundation.database.engine import session_scope
from foundation.shared.client_address import IpNetwork, TrustedProxies, client_address
from foundation.shared.lifespan import lifespan_state

Body = TypeVar("Body")


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    async for session in session_scope(lifespan_state(request, State)["sessions"]):
        yield session


def session_service(request: Request) -> SessionService:
    return lifespan_state(request, State)["session_service"]


async def get_sessions(request: Request) -> SessionService:
    return session_service(request)


async def get_accounts(request: Request) -> AccountService:
    return lifespan_state(request, State)["account_service"]


_proxies: dict[int, tuple[tuple[IpNetwork, ...], TrustedProxies]] = {}


def _trusted_proxies(networks: tuple[IpNetwork, ...]) -> TrustedProxies:
    """One ``TrustedProxies`` per app's tuple (it remembers the peers it has seen), found by
    identity: hashing the networks on every request would cost more than the lookup saves."""
    known = _proxies.get(id(networks))
    if known is None or known[0] is not networks:
        if len(_proxies) >= 8:
            _proxies.clear()
        known = _proxies[id(networks)] = (networks, TrustedProxies(networks))
    return known[1]


def client_of(request: Request) -> ClientInfo:
    """The client's address (``foundation.shared.client_address``: the socket peer, or, from
    a trusted proxy, every X-Forwarded-For line read from the right past trusted hops)."""
    scope = request.scope
    peer = scope.get("client")
    user_agent = None
    for name, value in scope["headers"]:
        if name == b"user-agent":
            user_agent = value.decode("latin-1")
            break
    proxies = _trusted_proxies(lifespan_state(request, State)["trusted_proxies"])
    address = client_address(peer[0] if peer else None, scope["headers"], proxies).address
    return ClientInfo(ip=address, user_agent=user_agent[:512] if user_agent else None)


async def client_info(request: Request) -> ClientInfo:
    return client_of(request)


def _is_json(content_type: str | None) -> bool:
    """``application/json`` or ``application/*+json``, parameters aside (FastAPI's rule)."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


async def json_body(request: Request, adapter: TypeAdapter[Body]) -> Body:
    """The request's JSON body validated by ``adapter`` in one pass over its bytes. Refused as
    FastAPI refuses a declared body: 422 ``validation_error`` with the fields at fault (also
    for a body that is not JSON, or has no JSON content type), 400 ``malformed_body`` if it is
    not UTF-8."""
    raw = await request.body()
    try:
        if _is_json(request.headers.get("content-type")):
            return adapter.validate_json(raw)
        return adapter.validate_python(raw)  # refused: bytes are not an object
    except ValidationError as exc:
        try:
            raw.decode()
        except UnicodeDecodeError:
            raise HTTPException(400, "There was an error parsing the body") from None
        errors: list[Any] = [
            {**error, "loc": ("body", *error["loc"])}
            for error in exc.errors(include_url=False, include_input=False)
        ]
        raise RequestValidationError(errors) from None


DbSession = Annotated[AsyncSession, Depends(get_db)]
Sessions = Annotated[SessionService, Depends(get_sessions)]
Accounts = Annotated[AccountService, Depends(get_accounts)]
Client = Annotated[ClientInfo, Depends(client_info)]
