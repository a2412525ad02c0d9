"""Header handling when forwarding a message (RFC 9110 section 7.6).

Hop-by-hop fields (``Connection``, the fields it names, ``Keep-Alive``, ``TE``, ``Trailer``,
``Transfer-Encoding``, ``Upgrade``, ``Proxy-*``) belong to one connection and are dropped in
both directions. Identity headers a client sends are dropped too: only the gateway may say
who the caller is, after it has verified the token.

Framing is the gateway's alone: a request's ``Content-Length`` and ``Transfer-Encoding`` are
never forwarded as the client sent them (the upstream client writes the length of the bytes
actually read), and ``Connection`` can never name a framing, routing, identity or forwarding
field (``Connection: content-length`` once made the body of one request the head of the next
on a pooled connection).
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

# Written by the gateway for the hop: the client's values are never forwarded. ``Expect``
# goes too: the whole body is read before the service is contacted.
FRAMING_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"expect"})

# Names ``Connection`` may never drop: framing, routing, and what the gateway vouches for.
PROTECTED_HEADERS = frozenset(
    {
        b"content-length",
        b"transfer-encoding",
        b"host",
        b"authorization",  # services verify the token again
        b"via",
        *IDENTITY_HEADERS,
        *FORWARDING_HEADERS,
    }
)

VIA = b"1.1 foundation-gateway"


def connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """Field names listed in ``Connection`` (hop-by-hop by declaration), except protected ones."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(token.strip().lower() for token in value.split(b",") if token.strip())
    if not tokens:
        return frozenset()
    return frozenset(
        token
        for token in tokens
        if token not in PROTECTED_HEADERS and not token.startswith(IDENTITY_PREFIXES)
    )


def is_identity_header(name: bytes) -> bool:
    return name in IDENTITY_HEADERS or name.startswith(IDENTITY_PREFIXES)


def request_headers_for_upstream(
    headers: RawHeaders, extra: Iterable[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """The client's headers minus hop-by-hop, framing, identity and forwarding ones, plus
    ``extra``. ASGI servers give lower-case names, which this relies on.
    """
    listed = connection_tokens(headers)
    kept = [
        (name, value)
        for name, value in headers
        if name not in HOP_BY_HOP
        and name not in FRAMING_HEADERS
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
