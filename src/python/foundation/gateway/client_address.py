"""The client's address and scheme: from the socket, or from a trusted proxy's headers.

``X-Forwarded-For`` is believed only when the peer is in ``TRUSTED_PROXIES``, and then read
from the right, skipping further trusted hops, so a client cannot name its own address by
sending the header itself. The resolved address replaces ``scope["client"]`` (the access log
and the rate limiter read it); the chain to forward upstream is kept in ``scope["state"]``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from foundation.gateway.settings import IpNetwork


class TrustedProxies:
    def __init__(self, networks: Sequence[IpNetwork]) -> None:
        self.networks = tuple(networks)

    def __contains__(self, address: str) -> bool:
        if not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class ClientAddressMiddleware:
    def __init__(self, app: ASGIApp, *, trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        peer = str(client[0]) if client else "unknown"
        state = scope.setdefault("state", {})
        forwarded_for = peer
        if peer in self.trusted:
            chain = [
                hop.strip() for hop in (_header(scope, b"x-forwarded-for") or "").split(",") if hop.strip()
            ]
            if chain:
                forwarded_for = ", ".join([*chain, peer])
                address = next((hop for hop in reversed(chain) if hop not in self.trusted), chain[0])
                scope["client"] = (address, 0)
            proto = _header(scope, b"x-forwarded-proto")
            if proto:
                last = proto.split(",")[-1].strip().lower()
                if last in {"http", "https"}:
                    scope["scheme"] = last
        state["forwarded_for"] = forwarded_for
        await self.app(scope, receive, send)


def client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"
