"""The gateway's HTTP/1.1 client for the hop to its services: pooled keep-alive connections,
request bodies sent whole with a length this client writes itself, answers streamed, every
wait bounded (including the wait for a free slot when all ``limit`` are in use).

Why not aiohttp's ``ClientSession`` here (it serves ``/health`` and the OpenAPI merge):
counted with callgrind on the gateway's request path, aiohttp's client costs about 380,000
instructions per proxied request (a third of what the gateway spent per request when it used
it), this client about 65,000 (docs/performance.md). The hop needs little of what aiohttp offers
(cookies, redirects, auth, tracing hooks, multipart, proxies): one request at a time per
connection to our own services. Parsing is httptools (llhttp, Node.js's parser, as used by
uvicorn), so framing (lengths, chunked encoding, keep-alive, 1xx) is not hand-written here.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httptools

HIGH_WATER = 256 * 1024  # buffered answer bytes before the connection stops reading
LOW_WATER = 64 * 1024
ONE_WRITE = 64 * 1024  # a request body up to this size goes out in one write with its head


class UpstreamError(Exception):
    """The service could not be reached or did not give a complete answer."""


class UpstreamUnreachable(UpstreamError):
    """No connection could be opened (refused, no route, name not found)."""


class UpstreamDisconnected(UpstreamError):
    """The connection closed before the answer was complete.

    ``before_answer``: not a byte of the answer had arrived, on a connection that had carried
    earlier requests (a keep-alive connection the service had just closed). Only then may an
    idempotent request be sent again.
    """

    def __init__(self, message: str, *, before_answer: bool = False) -> None:
        super().__init__(message)
        self.before_answer = before_answer


class UpstreamProtocolError(UpstreamError):
    """The service's bytes were not a valid HTTP/1.1 answer."""


class UpstreamBusy(UpstreamError):
    """Every slot stayed in use for ``queue_timeout``: nothing was sent."""


@dataclass(frozen=True, slots=True)
class Origin:
    host: str
    port: int
    tls: bool
    host_header: bytes = field(compare=False)


@dataclass(frozen=True, slots=True)
class Base:
    """A service base URL, parsed once: where to connect and the path prefix to add."""

    origin: Origin
    prefix: str
    url: str = field(compare=False)  # as configured, for logs and traces

    @classmethod
    def parse(cls, url: str) -> Base:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        origin = Origin(parts.hostname, port, tls, parts.netloc.encode("idna"))
        return cls(origin, parts.path.rstrip("/"), url)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; carries one exchange at a time (``self.answer``)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.answer: UpstreamResponse | None = None
        self.origin: Origin | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0

    # -- transport events --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.answer is not None:
            self.answer._lost()

    def data_received(self, data: bytes) -> None:
        answer = self.answer
        if answer is None or answer.complete:  # bytes nobody asked for: unusable connection
            self.close()
            return
        answer.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            answer._fail(UpstreamProtocolError("the service switched protocols"))
            self.close()
        except httptools.HttpParserError as exc:
            answer._fail(UpstreamProtocolError(f"invalid answer from the service: {exc}"))
            self.close()

    # -- httptools callbacks -------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.answer is not None
        self.answer.headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self.answer is not None
        self.answer._head_done(self.parser.get_status_code())

    def on_body(self, body: bytes) -> None:
        assert self.answer is not None
        self.answer._body(body)

    def on_message_complete(self) -> None:
        assert self.answer is not None
        self.answer._message_complete(self.parser.should_keep_alive())

    # -- used by the pool and the answer -----------------------------------------------------

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def unsent(self) -> int:
        """Request bytes written but not yet handed to the kernel."""
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class UpstreamResponse:
    """A service's answer: ``status`` and ``headers`` (as received) once ``head()`` returns,
    then the body through ``read()`` or ``read_chunk()``. Use as ``async with``: leaving it
    gives the connection back to the pool when the answer was read to its end, else closes it.
    """

    def __init__(self, pool: UpstreamPool, connection: _Connection, *, head_only: bool) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.content_length: int | None = None
        self.received = False  # any byte of the answer has arrived
        self.complete = False
        self.request_sent = False  # the whole request (head and body) was written
        self._pool = pool
        self._connection = connection
        self._head_only = head_only  # an answer to HEAD: headers only, whatever they announce
        self._until_close = False  # no length, not chunked: the body ends when the connection does
        self._keep_alive = False
        self._head: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._error: UpstreamError | None = None
        self._released = False

    # -- reading -------------------------------------------------------------------------------

    async def head(self) -> None:
        if self._head.done():
            self._head.result()
            return
        # A timer that fails the future, not ``asyncio.timeout``: the same bound for about half
        # the work on every proxied request (no context object, no task lookup, no uncancel).
        timer = asyncio.get_running_loop().call_later(self._pool.read_timeout, self._head_late)
        try:
            await self._head
        finally:
            timer.cancel()

    def _head_late(self) -> None:
        if not self._head.done():
            self._head.set_exception(TimeoutError("the service did not answer in time"))

    async def read_chunk(self) -> bytes:
        """The next piece of the body as it arrived, ``b""`` at its end."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self.complete:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(self._pool.read_timeout):
                    await self._waiter
            finally:
                self._waiter = None
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._paused and self._buffered <= LOW_WATER:
            self._paused = False
            self._connection.resume_reading()
        return chunk

    async def read(self) -> bytes:
        parts = []
        while chunk := await self.read_chunk():
            parts.append(chunk)
        return b"".join(parts)

    async def __aenter__(self) -> UpstreamResponse:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        connection = self._connection
        connection.answer = None
        if self._paused:
            connection.resume_reading()
        reusable = (
            self.complete
            and self._keep_alive
            and self.request_sent
            and not connection.closed
            and not connection.unsent()  # it answered before taking all of the request: unsure
        )
        self._pool._release(connection, reusable)

    # -- events from the connection ------------------------------------------------------------

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _head_done(self, status: int) -> None:
        if 100 <= status < 200:  # an interim answer (100 Continue, 103 Early Hints): skip it
            self.headers = []
            return
        self.status = status
        chunked = False
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == b"content-length":
                self.content_length = int(value)
            elif lowered == b"transfer-encoding":
                chunked = chunked or b"chunked" in value.lower()
        if self._head_only:
            self.content_length = None
            self._message_complete(keep_alive=False)  # what follows, if anything, is not read
        elif self.content_length is None and not chunked and status not in (204, 304):
            self._until_close = True
        if not self._head.done():
            self._head.set_result(None)

    def _body(self, body: bytes) -> None:
        if self.complete:
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if not self._paused and self._buffered > HIGH_WATER:
            self._paused = True
            self._connection.pause_reading()
        self._wake()

    def _message_complete(self, keep_alive: bool) -> None:
        if not self._head.done() and self.status == 0:
            return  # the end of an interim answer: the real one follows
        if self.complete:
            return
        self.complete = True
        self._keep_alive = keep_alive and not self._until_close
        self._wake()

    def _fail(self, error: UpstreamError) -> None:
        if self._error is None and not self.complete:
            self._error = error
        if not self._head.done():
            self._head.set_exception(error)
            self._head.exception()  # retrieved here: nobody may be waiting for it any more
        self._wake()

    def _lost(self) -> None:
        if self.complete:
            return
        if self._head.done() and self._until_close:
            self._message_complete(keep_alive=False)
            return
        before = not self.received
        reason = "before answering" if before else "in the middle of its answer"
        self._fail(
            UpstreamDisconnected(
                f"the service closed the connection {reason}",
                before_answer=before and self._connection.reused,
            )
        )


class UpstreamPool:
    """Keep-alive connections per origin, at most ``limit`` exchanges at once."""

    def __init__(
        self,
        *,
        limit: int,
        connect_timeout: float,
        read_timeout: float,
        keepalive_timeout: float,
        queue_timeout: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive_timeout = keepalive_timeout
        self.queue_timeout = queue_timeout
        self._limit = limit
        self._slots: asyncio.Semaphore | None = None
        self._idle: dict[Origin, list[_Connection]] = {}
        self._ssl = ssl_context
        self._closed = False

    async def request(
        self,
        base: Base,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes | None = None,
    ) -> UpstreamResponse:
        """Send one request and wait for the head of the answer (status and headers).

        ``target`` is the path and query, already encoded; ``headers`` go as given, after a
        ``Host`` for the service, and must not frame the message: a ``body`` (even empty) is
        sent with a ``content-length`` written here from its size, so what the service reads
        as this request is exactly these bytes. Raises ``UpstreamError`` subclasses
        (``UpstreamBusy`` when no slot frees up within ``queue_timeout``), or ``TimeoutError``
        when the service takes longer than ``read_timeout`` to answer (``connect_timeout`` to
        accept).
        """
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._limit)
        slots = self._slots
        if slots.locked():  # rare: only then is there a wait to bound
            try:
                async with asyncio.timeout(self.queue_timeout):
                    await slots.acquire()
            except TimeoutError:
                raise UpstreamBusy(f"no free connection slot in {self.queue_timeout} s") from None
        else:
            await slots.acquire()  # returns at once
        try:
            connection = await self._connection(base.origin)
        except BaseException:
            slots.release()
            raise
        answer = UpstreamResponse(self, connection, head_only=method == "HEAD")
        connection.answer = answer
        try:
            parts = [
                method.encode("ascii"),
                b" ",
                target,
                b" HTTP/1.1\r\nhost: ",
                base.origin.host_header,
                b"\r\n",
                *[name + b": " + value + b"\r\n" for name, value in headers],
            ]
            if body is None:
                parts.append(b"\r\n")
                connection.write(b"".join(parts))
            else:
                parts += [b"content-length: ", str(len(body)).encode(), b"\r\n\r\n"]
                if len(body) <= ONE_WRITE:
                    connection.write(b"".join([*parts, body]))
                else:  # not copied into one buffer with the head
                    connection.write(b"".join(parts))
                    connection.write(body)
            answer.request_sent = not connection.closed
            await answer.head()
        except BaseException:
            answer.release()
            raise
        return answer

    async def _connection(self, origin: Origin) -> _Connection:
        idle = self._idle.get(origin)
        if idle:
            now = asyncio.get_running_loop().time()
            while idle:
                connection = idle.pop()
                if not connection.closed and now - connection.idle_since < self.keepalive_timeout:
                    connection.reused = True
                    return connection
                connection.close()
        loop = asyncio.get_running_loop()
        context: Any = None
        if origin.tls:
            context = self._ssl or ssl.create_default_context()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(
                    _Connection, origin.host, origin.port, ssl=context
                )
        except TimeoutError:  # an OSError too, but a slow service, not a missing one
            raise
        except OSError as exc:
            raise UpstreamUnreachable(f"{origin.host}:{origin.port}: {exc}") from None
        connection.origin = origin
        return connection

    def _release(self, connection: _Connection, reusable: bool) -> None:
        assert self._slots is not None
        self._slots.release()
        if reusable and not self._closed:
            connection.idle_since = asyncio.get_running_loop().time()
            assert connection.origin is not None
            self._idle.setdefault(connection.origin, []).append(connection)
        else:
            connection.close()

    @property
    def limit(self) -> int:
        return self._limit

    async def close(self) -> None:
        self._closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()
