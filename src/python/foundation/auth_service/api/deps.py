"""Dependencies the routers share: the database session, the services, the client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import Scope

from foundation.auth_service.services.accounts import AccountService
from foundation.auth_service.services.sessions import ClientInfo, SessionService
from foundation.database.engine import session_scope
from foundation.shared.client_address import IpNetwork, TrustedProxies, client_address


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    async for session in session_scope(request.app.state.sessions):
        yield session


async def get_sessions(request: Request) -> SessionService:
    service: SessionService = request.app.state.session_service
    return service


async def get_accounts(request: Request) -> AccountService:
    service: AccountService = request.app.state.account_service
    return service


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


def client_from_scope(scope: Scope, networks: tuple[IpNetwork, ...]) -> ClientInfo:
    """The client's address (``foundation.shared.client_address``: the socket peer, or, from
    a trusted proxy, every X-Forwarded-For line read from the right past trusted hops)."""
    peer = scope.get("client")
    user_agent = None
    for name, value in scope["headers"]:
        if name == b"user-agent":
            user_agent = value.decode("latin-1")
            break
    address = client_address(peer[0] if peer else None, scope["headers"], _trusted_proxies(networks)).address
    return ClientInfo(ip=address, user_agent=user_agent[:512] if user_agent else None)


async def client_info(request: Request) -> ClientInfo:
    return client_from_scope(request.scope, request.app.state.trusted_proxies)


DbSession = Annotated[AsyncSession, Depends(get_db)]
Sessions = Annotated[SessionService, Depends(get_sessions)]
Accounts = Annotated[AccountService, Depends(get_accounts)]
Client = Annotated[ClientInfo, Depends(client_info)]
