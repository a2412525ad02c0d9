"""One pipelined Redis connection for the calls every request makes: the gateway's rate-limit
script and the services' session deny-list check.

Why not redis-py for these (it serves every other Redis use): its ``execute_command`` path
(connection pool, retry wrapper, observability hooks, argument encoding) is about 286,000
instructions per ``EVALSHA`` (callgrind), a third of what the gateway spent per proxied
request when it used it; an ``EXISTS`` costs a service 100-150 us of CPU through redis-py
and 12-50 us here (docs/performance.md). Its pool also caps the calls in flight, where a
pipe has no such limit. Here every caller shares one connection: commands are
written as they come (pipelined), answers arrive in the same order and are parsed by hiredis,
the reply parser redis-py itself uses. The URL means what it means to redis-py: it is read by
``ConnectionPool.from_url`` (user, password, database, ``unix://`` sockets, ``rediss://`` for TLS
with ``ssl_cert_reqs`` and ``ssl_ca_certs``).

What Redis sends is checked before hiredis reads it (``_Framing``), because hiredis trusts the
peer: it makes an array's list as soon as it reads the count (``*268435456`` asks for 2 GiB) and
buffers a string of any announced length for as long as bytes keep coming. A reply that is not
RESP2 (the pipe never asks for RESP3), announces a length that is not a count, a string longer
than announced, more than ``MAX_REPLY_ITEMS`` items or more than ``MAX_REPLY_BYTES`` bytes, and a
reply while no command is waiting for one, drop the connection with a ``ConnectionError``; the
replies these calls get are a few dozen bytes. A reply that arrives while a command is in flight
cannot be told from its answer (RESP has no request ids): no Redis client can catch that one, and
TLS is what keeps a man in the middle out.

Calls are bounded by ``call_timeout`` (from the call's start to its answer, connecting
included): answers come in order, so only the oldest call in flight can be late, and one timer
armed for its deadline watches them all (``asyncio.timeout`` per call cost a timer, a context
object and a task lookup for every request). A call that runs out of time, or is cut short by
its caller, drops the connection and fails the calls in flight on it with it: a server that
stopped answering one request has stopped answering all, and late answers can never be misread.

Errors are redis-py's, so callers handle them as any other Redis failure: ``ConnectionError``
(nothing listening, connection lost), ``TimeoutError`` (also the builtin one), ``ResponseError``.
Error replies get the classes redis-py gives them: above all ``-LOADING``, which a restarted Redis
answers until it has read its data back, is ``BusyLoadingError`` (a ``ConnectionError``: retry
shortly), not a ``ResponseError`` (a bad command), so services answer 503 for it, not 500.
"""

from __future__ import annotations

import asyncio
import math
import ssl
from collections import deque
from collections.abc import Sequence
from typing import Any

import hiredis
from redis.asyncio import ConnectionPool, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import (
    BusyLoadingError,
    MasterDownError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Error replies by their first word, as redis-py's parser classifies them (the message is kept
# whole, so ``str(exc)`` still starts with the code). All but LOADING are ResponseErrors there
# too; a refused AUTH stays a plain ResponseError here (redis-py: AuthenticationError).
_ERROR_REPLIES: dict[str, type[Exception]] = {
    "LOADING": BusyLoadingError,
    "NOSCRIPT": NoScriptError,
    "READONLY": ReadOnlyError,
    "MASTERDOWN": MasterDownError,
    "OOM": OutOfMemoryError,
    "NOPERM": NoPermissionError,
}


# The largest reply the pipe takes, and the most items (array elements, nested ones included) it
# may announce: every RESP2 item is at least 4 bytes (``:0\r\n``).
MAX_REPLY_BYTES = 1 << 20
MAX_REPLY_ITEMS = MAX_REPLY_BYTES // 4
_MAX_HEADER = 22  # ``$`` or ``*``, a count of up to 20 digits, CR


def reply_error(message: str) -> Exception:
    """The redis-py exception for an error reply."""
    return _ERROR_REPLIES.get(message.split(" ", 1)[0], ResponseError)(message)


class PipeTimeout(RedisTimeoutError, TimeoutError):
    """A call not answered within ``call_timeout``: redis-py's ``TimeoutError`` and the builtin one."""


def command(*parts: bytes) -> bytes:
    """A command in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


class FramingError(Exception):
    """Bytes no Redis sends on a RESP2 connection."""


_CRLF = b"\r\n"
_LINES = frozenset(b"+-:")  # simple string, error, integer: one line each
_BULK = ord("$")
_ARRAY = ord("*")
_KINDS = _LINES | {_BULK, _ARRAY}


def _count(text: bytes) -> int:
    if text.isdigit() and len(text) <= 20:
        return int(text)
    if text == b"-1":  # nil
        return -1
    raise FramingError(f"length {text[:24]!r} is not a count")


class _Framing:
    """Follows the replies in the byte stream item by item, ahead of hiredis and without building
    them, and raises ``FramingError`` at the first byte that breaks RESP2 or the limits. It keeps
    no more than a header's bytes between chunks: a long line or string is counted, not kept."""

    def __init__(self) -> None:
        self._carry = b""  # the end of the last chunk: part of a header, or a line's kind and CR
        self._skip = 0  # bytes of a string still to come
        self._terminator = False  # a string's CRLF comes next
        self._needed = 0  # items the current reply still needs (0: between replies)
        self._items = 0  # items the current reply has announced
        self._size = 0  # bytes of the current reply in earlier chunks

    def check(self, chunk: bytes) -> None:
        carried = len(self._carry)  # counted in an earlier chunk
        data = self._carry + chunk if carried else chunk
        self._carry = b""
        end = len(data)
        needed, skip, items = self._needed, self._skip, self._items
        pos = start = 0  # start: where the current reply began in data
        while pos < end:
            if skip:
                step = min(skip, end - pos)
                pos += step
                skip -= step
                continue
            if self._terminator:
                if data.startswith(_CRLF, pos):
                    pos += 2
                    self._terminator = False
                    needed -= 1
                    if not needed:
                        start = pos
                    continue
                if data[pos:] != b"\r":
                    raise FramingError("a string longer than announced")
                self._carry = b"\r"
                break
            kind = data[pos]
            if kind not in _KINDS:
                raise FramingError(f"reply type {data[pos : pos + 1]!r} is not RESP2")
            if not needed:  # a reply begins
                start, self._size, items, needed = pos, 0, 0, 1
            line_end = data.find(_CRLF, pos)
            if line_end < 0:
                if kind in _LINES:  # its content does not matter: keep the kind and a final CR
                    self._carry = data[pos : pos + 1] + (b"\r" if data.endswith(b"\r") else b"")
                elif end - pos > _MAX_HEADER:
                    raise FramingError(f"length {data[pos + 1 : pos + 25]!r} is not a count")
                else:
                    self._carry = data[pos:]
                break
            if kind == _BULK:
                length = _count(data[pos + 1 : line_end])
                pos = line_end + 2
                if length > MAX_REPLY_BYTES - (self._size + pos - max(start, carried)):
                    raise FramingError(f"a string of {length} bytes, longer than {MAX_REPLY_BYTES} in all")
                if length >= 0:
                    skip, self._terminator = length, True
                    continue
            elif kind == _ARRAY:
                count = _count(data[pos + 1 : line_end])
                pos = line_end + 2
                if count > 0:
                    items += count
                    if items > MAX_REPLY_ITEMS:
                        raise FramingError(f"{items} items, more than {MAX_REPLY_ITEMS} in a reply")
                    needed += count
            else:
                pos = line_end + 2
            needed -= 1
            if not needed:
                start = pos
        self._needed, self._skip, self._items = needed, skip, items
        if needed:
            self._size += end - max(start, carried)
            if self._size > MAX_REPLY_BYTES:
                raise FramingError(f"a reply longer than {MAX_REPLY_BYTES} bytes")


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        # Each call in flight, oldest first: its waiter and the loop time it needs its answer by.
        self.waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.closed = False
        self.error: Exception | None = None  # why it closed
        self._framing = _Framing()
        self._timer: asyncio.TimerHandle | None = None  # armed no later than the oldest deadline
        self._outgoing: list[bytes] = []  # commands not yet written, sent once per loop pass

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._framing.check(data)
        except FramingError as exc:
            self.close(RedisConnectionError(f"invalid reply from Redis: {exc}"))
            return
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not False:
                # Only a command already written can have an answer.
                if len(self.waiting) <= len(self._outgoing):
                    self.close(RedisConnectionError("invalid reply from Redis: an answer nobody asked for"))
                    return
                waiter, _ = self.waiting.popleft()
                if waiter.done():  # its caller gave up (the connection is closing anyway)
                    continue
                if isinstance(reply, hiredis.ReplyError):
                    waiter.set_exception(reply_error(str(reply)))
                else:
                    waiter.set_result(reply)
        except hiredis.ProtocolError as exc:
            self.close(RedisConnectionError(f"invalid reply from Redis: {exc!r}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError("Redis closed the connection"))

    def call(self, packed: bytes, deadline: float = math.inf) -> asyncio.Future[Any]:
        """Send a command; its answer, or an error once ``deadline`` (loop time) has passed."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        if self.error is not None:  # closed between the caller's check and this call
            waiter.set_exception(type(self.error)(*self.error.args))
            return waiter
        self.waiting.append((waiter, deadline))
        # Under load many requests call in the same pass of the event loop: one write (one
        # system call) for all of them, at the end of the pass, instead of one each.
        if not self._outgoing:
            loop.call_soon(self._flush)
        self._outgoing.append(packed)
        if self._timer is None and deadline != math.inf:
            self._timer = loop.call_at(deadline, self._check_deadline)
        return waiter

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        if not self.closed and self.transport is not None:
            self.transport.write(outgoing[0] if len(outgoing) == 1 else b"".join(outgoing))

    def _check_deadline(self) -> None:
        """The timer: fail everything if the oldest call is late, else wait for its deadline.
        (Deadlines are in call order when every call has the same timeout, as in RedisPipe.)"""
        self._timer = None
        if self.closed or not self.waiting:
            return
        loop = asyncio.get_running_loop()
        oldest = self.waiting[0][1]
        if oldest <= loop.time():
            self.close(PipeTimeout("Redis did not answer in time; connection dropped"))
        elif oldest != math.inf:
            self._timer = loop.call_at(oldest, self._check_deadline)

    def close(self, error: Exception) -> None:
        self._fail(error)
        if self.transport is not None:
            self.transport.close()

    def _fail(self, error: Exception) -> None:
        self.closed = True
        if self.error is None:
            self.error = error
        error = self.error  # calls that come later learn the first reason, not "closed"
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self.waiting:
            waiter, _ = self.waiting.popleft()
            if not waiter.done():
                waiter.set_exception(error)


class RedisPipe:
    """``await pipe.evalsha(sha, script, keys, args)``, ``await pipe.exists(key)``: one round
    trip each, on a shared connection.

    ``call_timeout`` (seconds, None for none) bounds each call; ``TimeoutError`` after it."""

    def __init__(self, url: str, *, connect_timeout: float, call_timeout: float | None = None) -> None:
        pool = ConnectionPool.from_url(url)  # reads the URL only: a pool opens nothing until asked
        params = pool.connection_kwargs
        self._path: str | None = params.get("path")
        if pool.connection_class is UnixDomainSocketConnection and not self._path:
            raise ValueError("a unix:// Redis URL needs a path")
        self._host = params.get("host", "localhost")
        self._port = int(params.get("port", 6379))
        self._tls = pool.connection_class is SSLConnection
        self._tls_verify = params.get("ssl_cert_reqs", "required") not in ("none", ssl.CERT_NONE)
        self._tls_ca_file: str | None = params.get("ssl_ca_certs")
        self._setup: list[bytes] = []
        password, username = params.get("password"), params.get("username")
        if password:
            auth = (username, password) if username else (password,)
            self._setup.append(command(b"AUTH", *(part.encode() for part in auth)))
        if int(params.get("db", 0)):
            self._setup.append(command(b"SELECT", str(params["db"]).encode()))
        self.connect_timeout = connect_timeout
        self.call_timeout = call_timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None

    async def evalsha(
        self, sha: str, script: str, keys: Sequence[str], args: Sequence[str | int | bytes]
    ) -> Any:
        """``EVALSHA``, and ``EVAL`` when the server does not know the script yet."""
        tail = [str(len(keys)).encode(), *(key.encode() for key in keys), *map(_bytes, args)]
        try:
            return await self._call(command(b"EVALSHA", sha.encode(), *tail))
        except ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return await self._call(command(b"EVAL", script.encode(), *tail))

    async def exists(self, key: str) -> int:
        """``EXISTS key``: 1 or 0."""
        answer: int = await self._call(command(b"EXISTS", key.encode()))
        return answer

    async def _call(self, packed: bytes) -> Any:
        deadline = math.inf
        if self.call_timeout is not None:
            deadline = asyncio.get_running_loop().time() + self.call_timeout
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connection()
        try:
            return await protocol.call(packed, deadline)
        except asyncio.CancelledError:
            protocol.close(RedisConnectionError("a Redis call timed out; connection dropped"))
            raise

    async def _connection(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
        connecting = self._connecting
        try:
            return await asyncio.shield(connecting)
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            return await self._open(loop)
        except TimeoutError as exc:  # (an OSError too, so first)
            raise PipeTimeout("Redis did not accept the connection in time") from exc
        except OSError as exc:  # refused, unreachable, TLS failure: as redis-py reports them
            raise RedisConnectionError(f"cannot connect to Redis: {exc}") from exc

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        async with asyncio.timeout(self.connect_timeout):
            if self._path:
                _, protocol = await loop.create_unix_connection(_Protocol, self._path)
            else:
                context: ssl.SSLContext | None = None
                if self._tls:
                    context = ssl.create_default_context(cafile=self._tls_ca_file)
                    if not self._tls_verify:
                        context.check_hostname = False
                        context.verify_mode = ssl.CERT_NONE
                _, protocol = await loop.create_connection(_Protocol, self._host, self._port, ssl=context)
            try:
                for packed in self._setup:
                    await protocol.call(packed)
            except BaseException:
                protocol.close(RedisConnectionError("Redis refused the connection's set-up"))
                raise
        self._protocol = protocol
        return protocol

    async def aclose(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self._protocol is not None:
            self._protocol.close(RedisConnectionError("closed"))
            self._protocol = None


def _bytes(value: str | int | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode()
