"""The client's address and scheme: from the socket, or from a trusted proxy's headers.

One implementation for every service that needs to know who is calling (the gateway's rate
limits and access log, auth-service's sessions and login throttle). ``X-Forwarded-For`` is
believed only when the socket peer is in ``TRUSTED_PROXIES``, and then read from the right,
skipping further trusted hops, so a client cannot name its own address by sending the header
itself. Every ``X-Forwarded-For`` line counts, in order, as RFC 9110 section 5.3 joins them: a
proxy that adds a line of its own instead of appending to the client's changes nothing.

Addresses come back in canonical text form (``ipaddress``), or ``"unknown"``: a caller that
buckets IPv6 clients by network (``ipaddress.ip_network(f"{address}/64", strict=False)``) can.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
UNKNOWN = "unknown"
_CACHE_SIZE = 4096  # addresses remembered per TrustedProxies (peers: a handful in practice)


def canonical_ip(text: str) -> str | None:
    """``text`` as a canonical IP address; a port (``1.2.3.4:80``, ``[::1]:80``) is dropped.
    None when it is not an address."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if text.startswith("["):
        host, _, _ = text[1:].partition("]")
    elif text.count(":") == 1:
        host = text.partition(":")[0]
    else:
        return None
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


class TrustedProxies:
    """The networks whose forwarding headers are believed; ``address in proxies``.

    What each address parses to is remembered (bounded): the peer is checked on every
    request, and in production it is one of a few load balancers.
    """

    def __init__(self, networks: Sequence[IpNetwork] = ()) -> None:
        self.networks = tuple(networks)
        self._known: dict[str, tuple[str | None, bool]] = {}

    def __bool__(self) -> bool:
        return bool(self.networks)

    def lookup(self, address: str) -> tuple[str | None, bool]:
        """(canonical form or None, trusted)."""
        known = self._known.get(address)
        if known is None:
            canonical = canonical_ip(address)
            trusted = canonical is not None and any(
                ipaddress.ip_address(canonical) in network for network in self.networks
            )
            known = (canonical, trusted)
            if len(self._known) >= _CACHE_SIZE:
                self._known.clear()
            self._known[address] = known
        return known

    def __contains__(self, address: str) -> bool:
        return bool(self.networks) and self.lookup(address)[1]


def header_values(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[str]:
    """Every comma-separated value of ``name`` (lower-case) over all its lines, in order."""
    values: list[str] = []
    for key, value in headers:
        if key == name:
            values.extend(item.strip() for item in value.decode("latin-1").split(","))
    return [item for item in values if item]


@dataclass(frozen=True, slots=True)
class ClientAddress:
    address: str  # canonical IP text, or "unknown"
    chain: tuple[str, ...]  # X-Forwarded-For hops as received (all lines); empty unless believed
    trusted_peer: bool  # the socket peer is a trusted proxy (its X-Forwarded-Proto counts too)


def client_address(
    peer: str | None, headers: Iterable[tuple[bytes, bytes]], trusted: TrustedProxies
) -> ClientAddress:
    """Who is calling, given the socket ``peer`` and the request's raw (lower-case) headers."""
    if peer is None:
        return ClientAddress(UNKNOWN, (), False)
    canonical, peer_trusted = trusted.lookup(peer)
    if not peer_trusted:
        return ClientAddress(canonical or UNKNOWN, (), False)
    chain = tuple(header_values(headers, b"x-forwarded-for"))
    if not chain:
        return ClientAddress(canonical or UNKNOWN, (), True)
    for hop in reversed(chain):
        hop_canonical, hop_trusted = trusted.lookup(hop)
        if not hop_trusted:
            return ClientAddress(hop_canonical or UNKNOWN, chain, True)
    # Every hop is one of our proxies: the first one is as close to the client as we know.
    return ClientAddress(trusted.lookup(chain[0])[0] or UNKNOWN, chain, True)


def forwarded_proto(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The scheme the nearest proxy saw (the last ``X-Forwarded-Proto`` value), if it is one."""
    values = header_values(headers, b"x-forwarded-proto")
    last = values[-1].lower() if values else None
    return last if last in ("http", "https") else None


class ClientAddressMiddleware:
    """Puts the resolved address in ``scope["client"]`` (the access log and rate limits read
    it), a trusted proxy's scheme in ``scope["scheme"]``, and the chain to forward upstream
    (hops + peer) in ``scope["state"]["forwarded_for"]``."""

    def __init__(self, app: ASGIApp, *, trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        peer = str(client[0]) if client else None
        state = scope.setdefault("state", {})
        if not self.trusted:  # the common case without a proxy in front: nothing to read
            state["forwarded_for"] = peer or UNKNOWN
            await self.app(scope, receive, send)
            return
        resolved = client_address(peer, scope["headers"], self.trusted)
        forwarded_for = peer or UNKNOWN
        if resolved.trusted_peer:
            if resolved.chain:
                forwarded_for = ", ".join([*resolved.chain, forwarded_for])
                scope["client"] = (resolved.address, 0)
            proto = forwarded_proto(scope["headers"])
            if proto:
                scope["scheme"] = proto
        state["forwarded_for"] = forwarded_for
        await self.app(scope, receive, send)


def client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else UNKNOWN
