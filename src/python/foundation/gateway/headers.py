"""Header handling when forwarding a message (RFC 9110 section 7.6).

Hop-by-hop fields (``Connection``, the fields it names, ``Keep-Alive``, ``TE``, ``Trailer``,
``Transfer-Encoding``, ``Upgrade``, ``Proxy-*``) belong to one connection and are dropped in
both directions. Identity headers a client sends are dropped too: only the gateway may say
who the caller is, after it has verified the token.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

RawHeaders = Sequence[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"proxy-connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)

# Set by the gateway only; whatever a client sends under these names is discarded.
IDENTITY_PREFIXES = (b"x-user-", b"x-session-", b"x-auth-", b"x-principal-")
IDENTITY_HEADERS = frozenset({b"x-user-id", b"x-user-roles", b"x-session-id", b"x-token-id"})

# Rebuilt by the gateway from what it saw on the socket (see client_address.py).
FORWARDING_HEADERS = frozenset(
    {
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"forwarded",
        b"x-real-ip",
        b"x-request-id",
        b"host",
    }
)

VIA = b"1.1 foundation-gateway"


def connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """Field names listed in ``Connection`` (hop-by-hop by declaration)."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(token.strip().lower() for token in value.split(b",") if token.strip())
    return frozenset(tokens)


def is_identity_header(name: bytes) -> bool:
    return name in IDENTITY_HEADERS or name.startswith(IDENTITY_PREFIXES)


def request_headers_for_upstream(
    headers: RawHeaders, extra: Iterable[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """The client's headers minus hop-by-hop, identity and forwarding ones, plus ``extra``.

    ASGI servers give lower-case names, which this relies on.
    """
    listed = connection_tokens(headers)
    kept = [
        (name, value)
        for name, value in headers
        if name not in HOP_BY_HOP
        and name not in FORWARDING_HEADERS
        and name not in listed
        and not is_identity_header(name)
    ]
    kept.extend(extra)
    return kept


def response_headers_for_client(headers: RawHeaders) -> list[tuple[bytes, bytes]]:
    """An upstream answer's headers minus hop-by-hop ones; names lower-cased for ASGI."""
    listed = connection_tokens(headers)
    out: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered in HOP_BY_HOP or lowered in listed:
            continue
        out.append((lowered, value))
    out.append((b"via", VIA))
    return out
