"""Forward a request to its service and stream the answer back (pure ASGI).

The request body is read whole first, under ``REQUEST_BODY_TIMEOUT`` and the size limit
(``BodyLimitMiddleware``), before one of the upstream pool's slots is taken: a client that
trickles its body holds only its own request, and the service gets the body in one piece with
a ``Content-Length`` the gateway writes from the bytes it read (the client's own framing is
never forwarded; HTTP/2 bodies without a length arrive too). The answer streams back as it
arrives. No free slot within ``UPSTREAM_QUEUE_TIMEOUT`` gives 503, a service that cannot be
reached 502, one that stays silent past the read timeout 504, all as problem+json. The hop
itself is ``upstream_http.UpstreamPool`` (why not aiohttp: see that module).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from foundation.gateway.headers import VIA, request_headers_for_upstream, response_headers_for_client
from foundation.gateway.upstream_http import (
    Base,
    UpstreamBusy,
    UpstreamDisconnected,
    UpstreamError,
    UpstreamPool,
    UpstreamResponse,
    UpstreamUnreachable,
)
from foundation.gateway.upstreams import Upstream
from foundation.shared.errors import (
    AppError,
    BadGateway,
    BadRequest,
    GatewayTimeout,
    ServiceUnavailable,
)
from foundation.shared.logging import bind_request_context, get_logger

log = get_logger(__name__)

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
SMALL_BODY = 64 * 1024  # answers up to this size are sent in one piece
STATE_KEY = "upstream_service"
HTTP1 = frozenset({"1.0", "1.1"})  # no length and not chunked: no body (RFC 9112 section 6.3)


class RequestTimeout(AppError):
    status, code, title = 408, "request_timeout", "Request timeout"


class ClientDisconnected(Exception):
    pass


async def _read_body(receive: Receive) -> bytes:
    first = await receive()
    if first["type"] == "http.disconnect":
        raise ClientDisconnected
    if not first.get("more_body", False):
        return bytes(first.get("body", b""))
    parts = [first.get("body", b"")]
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


def _length(declared: bytes) -> int:
    try:
        return int(declared)
    except ValueError:
        return -1


class Proxy:
    """The innermost gateway app: sends ``scope`` to ``upstreams[scope.state.upstream_service]``."""

    def __init__(
        self,
        upstreams: dict[str, Upstream],
        pool: Callable[[], UpstreamPool],
        *,
        body_timeout: float = 15.0,
        tracer: Any = None,
    ) -> None:
        self.upstreams = upstreams
        self.pool = pool
        self.body_timeout = body_timeout
        self.tracer = tracer  # an OpenTelemetry tracer when tracing is on, else None
        self._busy_logged = float("-inf")

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
        declared: bytes | None = None
        chunked = False
        host: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"host":
                host = value
        body: bytes | None = None
        if declared is not None or chunked or scope.get("http_version") not in HTTP1:
            body = await self._body(receive, declared)
            if not body and declared is None and not chunked:
                body = None  # HTTP/2 without a body: none to announce either
        headers = request_headers_for_upstream(scope["headers"], self._extra_headers(scope, state, host))
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

    async def _body(self, receive: Receive, declared: bytes | None) -> bytes:
        """The whole request body, within ``body_timeout``; the size limit is enforced by
        ``BodyLimitMiddleware``'s ``receive``. No upstream slot is held meanwhile."""
        try:
            async with asyncio.timeout(self.body_timeout):
                body = await _read_body(receive)
        except TimeoutError:
            raise RequestTimeout(
                f"The request body did not arrive within {self.body_timeout:g} s.",
                headers={"Connection": "close"},
            ) from None
        except ClientDisconnected:
            raise BadRequest(
                "The client went away while sending the body.", code="client_disconnected"
            ) from None
        if declared is not None and _length(declared) != len(body):
            raise BadRequest(
                "The body is not as long as its Content-Length says.",
                code="content_length_mismatch",
                headers={"Connection": "close"},
            )
        return body

    def _log_busy(self, upstream: Upstream) -> None:
        # At most once a second: when the pool is saturated, every request would log.
        now = asyncio.get_running_loop().time()
        if now - self._busy_logged >= 1.0:
            self._busy_logged = now
            log.warning("upstream pool busy", upstream=upstream.name, limit=self.pool().limit)

    def _extra_headers(
        self, scope: Scope, state: dict[str, Any], host: bytes | None
    ) -> list[tuple[bytes, bytes]]:
        extra = [
            (b"x-forwarded-for", state.get("forwarded_for", "unknown").encode("latin-1")),
            (b"x-forwarded-proto", scope.get("scheme", "http").encode()),
            (b"via", VIA),
        ]
        request_id = state.get("request_id")
        if request_id:
            extra.append((b"x-request-id", request_id.encode()))
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
        body: bytes | None,
    ) -> int:
        attempts = 2 if method in IDEMPOTENT else 1
        for attempt in range(attempts):
            try:
                async with await self.pool().request(base, method, target, headers, body) as response:
                    return await self._relay(scope, send, response)
            except AppError:
                raise
            except UpstreamBusy:
                self._log_busy(upstream)
                raise ServiceUnavailable(
                    f"The {upstream.name} service is busy; try again shortly.",
                    code="upstream_busy",
                    headers={"Retry-After": "1"},
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
