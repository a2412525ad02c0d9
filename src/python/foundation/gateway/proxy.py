"""Forward a request to its service and stream the answer back (pure ASGI).

The request body streams to the service when its length is declared; a chunked body (no
length) is read first, up to the size limit, so an oversized one is refused before a service
sees any of it. The answer streams back as it arrives. A service that cannot be reached gives
502, one that stays silent past the read timeout 504, both as problem+json.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
from starlette.types import Message, Receive, Scope, Send
from yarl import URL

from foundation.gateway.headers import VIA, request_headers_for_upstream, response_headers_for_client
from foundation.gateway.upstreams import Upstream
from foundation.shared.errors import AppError, BadGateway, BadRequest, GatewayTimeout
from foundation.shared.logging import bind_request_context, get_logger

log = get_logger(__name__)

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
SMALL_BODY = 64 * 1024  # answers up to this size are sent in one piece
STATE_KEY = "upstream_service"


class ClientDisconnected(Exception):
    pass


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def _streamed(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def _buffered(receive: Receive) -> bytes:
    parts = [chunk async for chunk in _streamed(receive)]
    return b"".join(parts)


class Proxy:
    """The innermost gateway app: sends ``scope`` to ``upstreams[scope.state.upstream_service]``."""

    def __init__(
        self,
        upstreams: dict[str, Upstream],
        session: Callable[[], aiohttp.ClientSession],
        *,
        tracer: Any = None,
    ) -> None:
        self.upstreams = upstreams
        self.session = session
        self.tracer = tracer  # an OpenTelemetry tracer when tracing is on, else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope["state"]
        upstream = self.upstreams[state[STATE_KEY]]
        base = upstream.pick()
        bind_request_context(upstream=upstream.name)
        raw_path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"")
        target = base + raw_path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
        url = URL(target, encoded=True)
        method = scope["method"]
        extra = self._extra_headers(scope, state)
        body: Any = None
        if _header(scope, b"content-length") not in (None, b"0"):
            body = _streamed(receive)
        elif _header(scope, b"transfer-encoding") is not None:
            body = await _buffered(receive)  # BodyLimitMiddleware stops it at the limit
            extra.append((b"content-length", str(len(body)).encode()))
        headers = request_headers_for_upstream(scope["headers"], extra)
        if self.tracer is None:
            await self._forward(scope, send, upstream, method, url, headers, body)
            return
        from opentelemetry import propagate, trace

        with self.tracer.start_as_current_span(
            f"{method} {upstream.name}",
            kind=trace.SpanKind.CLIENT,
            attributes={
                "http.request.method": method,
                "server.address": url.host or "",
                "url.full": str(url.with_query(None)),
                "foundation.upstream": upstream.name,
            },
        ) as span:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            headers.extend(carrier.items())
            status = await self._forward(scope, send, upstream, method, url, headers, body)
            span.set_attribute("http.response.status_code", status)

    def _extra_headers(self, scope: Scope, state: dict[str, Any]) -> list[tuple[bytes, bytes]]:
        extra = [
            (b"x-forwarded-for", state.get("forwarded_for", "unknown").encode("latin-1")),
            (b"x-forwarded-proto", scope.get("scheme", "http").encode()),
            (b"via", VIA),
        ]
        request_id = state.get("request_id")
        if request_id:
            extra.append((b"x-request-id", request_id.encode()))
        host = _header(scope, b"host")
        if host:
            extra.append((b"x-forwarded-host", host))
        principal = state.get("principal")
        if principal is not None:
            extra.append((b"x-user-id", str(principal.user_id).encode()))
            extra.append((b"x-session-id", str(principal.session_id).encode()))
            extra.append((b"x-user-roles", ",".join(sorted(principal.roles)).encode()))
        return extra

    async def _forward(
        self,
        scope: Scope,
        send: Send,
        upstream: Upstream,
        method: str,
        url: URL,
        headers: list[tuple[str, str]],
        body: Any,
    ) -> int:
        retryable = method in IDEMPOTENT and not isinstance(body, AsyncIterator)
        attempts = 2 if retryable else 1
        for attempt in range(attempts):
            try:
                async with self.session().request(
                    method, url, headers=headers, data=body, allow_redirects=False, compress=None
                ) as response:
                    return await self._relay(scope, send, response)
            except AppError:
                raise
            except ClientDisconnected:
                raise BadRequest(
                    "The client went away while sending the body.", code="client_disconnected"
                ) from None
            except (TimeoutError, aiohttp.ServerTimeoutError):
                log.warning("upstream timed out", upstream=upstream.name)
                raise GatewayTimeout(
                    f"The {upstream.name} service did not answer in time.", code="upstream_timeout"
                ) from None
            except aiohttp.ClientConnectorError as exc:
                log.warning("upstream unreachable", upstream=upstream.name, error=str(exc))
                raise BadGateway(
                    f"The {upstream.name} service cannot be reached.", code="upstream_unreachable"
                ) from None
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                # A pooled keep-alive connection the service had just closed: try once more.
                if attempt + 1 < attempts:
                    continue
                log.warning("upstream failed", upstream=upstream.name, error=repr(exc))
                raise BadGateway(
                    f"The {upstream.name} service failed to answer.", code="upstream_error"
                ) from None
            except aiohttp.ClientError as exc:
                log.warning("upstream failed", upstream=upstream.name, error=repr(exc))
                raise BadGateway(
                    f"The {upstream.name} service failed to answer.", code="upstream_error"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _relay(self, scope: Scope, send: Send, response: aiohttp.ClientResponse) -> int:
        headers = response_headers_for_client(response.raw_headers)
        status = response.status
        no_body = scope["method"] == "HEAD" or status in (204, 304) or 100 <= status < 200
        start: Message = {"type": "http.response.start", "status": status, "headers": headers}
        if no_body:
            await send(start)
            await send({"type": "http.response.body", "body": b""})
            return status
        length = response.content_length
        if length is not None and length <= SMALL_BODY:
            body = await response.read()  # read before answering: a failure here is still a 502
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return status
        # Large or unknown length: stream. Once the head is sent, a failure can only cut the body.
        first = await response.content.readany()
        await send(start)
        chunk = first
        while chunk:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            chunk = await response.content.readany()
        await send({"type": "http.response.body", "body": b""})
        return status
