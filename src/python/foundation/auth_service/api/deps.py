"""Dependencies the routers share: the database session, the services, the client."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import Scope

from foundation.auth_service.services.accounts import AccountService
from foundation.auth_service.services.sessions import ClientInfo, SessionService
from foundation.database.engine import session_scope


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    async for session in session_scope(request.app.state.sessions):
        yield session


async def get_sessions(request: Request) -> SessionService:
    service: SessionService = request.app.state.session_service
    return service


async def get_accounts(request: Request) -> AccountService:
    service: AccountService = request.app.state.account_service
    return service


def _trusted(address: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_from_scope(
    scope: Scope, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
) -> ClientInfo:
    """The client's address: the socket peer, or, from a trusted proxy, X-Forwarded-For read
    from the right skipping trusted hops (a client cannot name its own address)."""
    peer = scope.get("client")
    address = peer[0] if peer else "unknown"
    forwarded, user_agent = "", None
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            forwarded = forwarded + "," + value.decode("latin-1") if forwarded else value.decode("latin-1")
        elif name == b"user-agent" and user_agent is None:
            user_agent = value.decode("latin-1")
    if forwarded and _trusted(address, networks):
        chain = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if chain:
            address = next((hop for hop in reversed(chain) if not _trusted(hop, networks)), chain[0])
    try:
        address = str(ipaddress.ip_address(address))
    except ValueError:
        address = "unknown"
    return ClientInfo(ip=address, user_agent=user_agent[:512] if user_agent else None)


async def client_info(request: Request) -> ClientInfo:
    return client_from_scope(request.scope, request.app.state.trusted_proxies)


DbSession = Annotated[AsyncSession, Depends(get_db)]
Sessions = Annotated[SessionService, Depends(get_sessions)]
Accounts = Annotated[AccountService, Depends(get_accounts)]
Client = Annotated[ClientInfo, Depends(client_info)]
