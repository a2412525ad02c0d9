"""Forward a request to its service and stream the answer back (pure ASGI).

The request body streams to the service when its length is declared; a chunked body (no
length) is read first, up to the size limit, so an oversized one is refused before a service
sees any of it. The answer streams back as it arrives. A service that cannot be reached gives
502, one that stays silent past the read timeout 504, both as problem+json. The hop itself is
``upstream_http.UpstreamPool`` (why not aiohttp: see that module).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from foundation.gateway.headers import VIA, request_headers_for_upstream, response_headers_for_client
from foundation.gateway.upstream_http import (
    Base,
    UpstreamDisconnected,
    UpstreamError,
    UpstreamPool,
    UpstreamResponse,
    UpstreamUnreachable,
)
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
        pool: Callable[[], UpstreamPool],
        *,
        tracer: Any = None,
    ) -> None:
        self.upstreams = upstreams
        self.pool = pool
        self.tracer = tracer  # an OpenTelemetry tracer when tracing is on, else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope["state"]
        upstream = self.upstreams[state[STATE_KEY]]
        base = upstream.pick()
        bind_request_context(upstream=upstream.name)
        target = scope.get("raw_path") or scope["path"].encode()
        if base.prefix:
            target = base.prefix.encode() + target
        query = scope.get("query_string", b"")
        if query:
            target = target + b"?" + query
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
            await self._forward(scope, send, upstream, base, method, target, headers, body)
            return
        from opentelemetry import propagate, trace

        with self.tracer.start_as_current_span(
            f"{method} {upstream.name}",
            kind=trace.SpanKind.CLIENT,
            attributes={
                "http.request.method": method,
                "server.address": base.origin.host,
                "url.full": base.url + target.partition(b"?")[0].decode("latin-1"),
                "foundation.upstream": upstream.name,
            },
        ) as span:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            headers.extend(
                (name.encode("latin-1"), value.encode("latin-1")) for name, value in carrier.items()
            )
            status = await self._forward(scope, send, upstream, base, method, target, headers, body)
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
        base: Base,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: Any,
    ) -> int:
        retryable = method in IDEMPOTENT and not isinstance(body, AsyncIterator)
        attempts = 2 if retryable else 1
        for attempt in range(attempts):
            try:
                async with await self.pool().request(base, method, target, headers, body) as response:
                    return await self._relay(scope, send, response)
            except AppError:
                raise
            except ClientDisconnected:
                raise BadRequest(
                    "The client went away while sending the body.", code="client_disconnected"
                ) from None
            except TimeoutError:
                log.warning("upstream timed out", upstream=upstream.name)
                raise GatewayTimeout(
                    f"The {upstream.name} service did not answer in time.", code="upstream_timeout"
                ) from None
            except UpstreamUnreachable as exc:
                log.warning("upstream unreachable", upstream=upstream.name, error=str(exc))
                raise BadGateway(
                    f"The {upstream.name} service cannot be reached.", code="upstream_unreachable"
                ) from None
            except UpstreamDisconnected as exc:
                # A pooled keep-alive connection the service had just closed: try once more.
                if exc.before_answer and attempt + 1 < attempts:
                    continue
                log.warning("upstream failed", upstream=upstream.name, error=str(exc))
                raise BadGateway(
                    f"The {upstream.name} service failed to answer.", code="upstream_error"
                ) from None
            except (UpstreamError, OSError) as exc:
                log.warning("upstream failed", upstream=upstream.name, error=repr(exc))
                raise BadGateway(
                    f"The {upstream.name} service failed to answer.", code="upstream_error"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _relay(self, scope: Scope, send: Send, response: UpstreamResponse) -> int:
        headers = response_headers_for_client(response.headers)
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
        first = await response.read_chunk()
        await send(start)
        chunk = first
        while chunk:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            chunk = await response.read_chunk()
        await send({"type": "http.response.body", "body": b""})
        return status
