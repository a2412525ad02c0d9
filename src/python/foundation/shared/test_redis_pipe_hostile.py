"""RedisPipe against a hostile peer: a server on loopback that speaks bytes no real Redis would
(a broken or impersonated Redis, or a man in the middle). Whatever it sends, a call ends with a
redis-py error, in bounded time and memory, and the connection it came on is dropped: the next
call opens a new one and gets its own answer."""

from __future__ import annotations

import asyncio
import socket
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import hiredis
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from foundation.shared.redis_pipe import MAX_REPLY_BYTES, MAX_REPLY_ITEMS, RedisPipe

CALL_TIMEOUT = 3.0  # seconds; every refusal below comes much sooner than this
PROMPT = 1.0  # seconds: "at once", as opposed to "when the call timed out"


class Peer:
    """One connection to the hostile server, as its script sees it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.closed = asyncio.Event()  # set once the connection is gone
        self._commands = hiredis.Reader()

    async def command(self) -> list[bytes]:
        """The next command the pipe sent."""
        while (parsed := self._commands.gets()) is False:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("the pipe closed the connection")
            self._commands.feed(data)
        assert isinstance(parsed, list)
        return parsed

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_in_pieces(self, data: bytes, size: int = 1) -> None:
        """``data`` a few bytes per packet (Nagle off, a pause between writes)."""
        for start in range(0, len(data), size):
            await self.send(data[start : start + size])
            await asyncio.sleep(0.002)

    async def dropped_by_pipe(self, timeout: float = PROMPT) -> bool:
        """Whether the connection is gone within ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                await self.closed.wait()
        except TimeoutError:
            return False
        return True

    async def answer_honestly(self) -> None:
        """Answer every further command with ``:0`` (what EXISTS of an absent key answers)."""
        while True:
            await self.command()
            await self.send(b":0\r\n")


Script = Callable[[Peer], Awaitable[None]]


@asynccontextmanager
async def hostile_redis(first: Script) -> AsyncIterator[tuple[str, list[Peer]]]:
    """A Redis URL whose first connection runs ``first``; later ones answer honestly."""
    peers: list[Peer] = []
    tasks: set[asyncio.Task[None]] = set()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = Peer(reader, writer)
        peers.append(peer)
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await (first if len(peers) == 1 else Peer.answer_honestly)(peer)
            while await reader.read(65536):  # the script is done: wait for the pipe to leave
                pass
        except ConnectionError:  # the pipe left while the script was reading or writing
            pass
        finally:
            peer.closed.set()
            writer.close()
            tasks.discard(task)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0", peers
    finally:
        server.close()
        for peer in peers:
            peer.writer.close()
        async with asyncio.timeout(5):
            while tasks:
                await asyncio.sleep(0.01)
        await server.wait_closed()


async def refused_at_once(url: str, peers: list[Peer], match: str) -> None:
    """The first call fails with a ConnectionError matching ``match`` well before its timeout,
    the pipe drops that connection, and the next call gets the honest answer on a new one."""
    pipe = RedisPipe(url, connect_timeout=1, call_timeout=CALL_TIMEOUT)
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(RedisConnectionError, match=match):
            await pipe.exists("k")
        assert asyncio.get_running_loop().time() - started < PROMPT
        assert await peers[0].dropped_by_pipe()
        assert await pipe.exists("k") == 0
        assert len(peers) == 2
    finally:
        await pipe.aclose()


def answers_first_command_with(reply: bytes, then: Script | None = None) -> Script:
    async def script(peer: Peer) -> None:
        await peer.command()
        await peer.send(reply)
        if then is not None:
            await then(peer)

    return script


@pytest.mark.parametrize(
    "reply",
    [
        b"?x\r\n",  # no such type
        b"\r\n",  # no type at all
        b"_\r\n",  # RESP3 null: the pipe never asks for RESP3 (no HELLO 3)
        b">2\r\n+message\r\n+x\r\n",  # RESP3 push
        b"%1\r\n+a\r\n:1\r\n",  # RESP3 map
    ],
)
async def test_a_reply_type_resp2_does_not_have_is_refused(reply: bytes) -> None:
    async with hostile_redis(answers_first_command_with(reply)) as (url, peers):
        await refused_at_once(url, peers, "invalid reply")


@pytest.mark.parametrize(
    "reply",
    [
        b"$-2\r\n",
        b"*-3\r\n",
        b"$abc\r\n",
        b"*1x\r\n",
        b"$ 3\r\nabc\r\n",
        b"$+3\r\nabc\r\n",
        b"$1_0\r\n0123456789\r\n",
        b"$" + b"9" * 5000 + b"\r\n",  # more digits than int() takes from a string
        b":12a\r\n",
    ],
)
async def test_a_length_that_is_not_a_count_is_refused(reply: bytes) -> None:
    async with hostile_redis(answers_first_command_with(reply)) as (url, peers):
        await refused_at_once(url, peers, "invalid reply")


async def test_a_string_longer_than_announced_reaches_no_caller() -> None:
    # hiredis alone hands over b"abc" and only then trips over the rest.
    async with hostile_redis(answers_first_command_with(b"$3\r\nabcd\r\n")) as (url, peers):
        await refused_at_once(url, peers, "invalid reply")


@pytest.mark.parametrize("length", [MAX_REPLY_BYTES + 1, 999_999_999_999, 2**63])
async def test_a_huge_announced_string_is_refused_before_its_bytes_arrive(length: int) -> None:
    async def script(peer: Peer) -> None:
        await peer.command()
        await peer.send(b"$%d\r\n" % length + b"x" * 65536)
        while True:  # and more, for as long as the pipe listens
            await peer.send(b"x" * 65536)

    async with hostile_redis(script) as (url, peers):
        await refused_at_once(url, peers, f"{length}")


@pytest.mark.parametrize(
    "reply",
    [
        b"*268435456\r\n",  # hiredis makes the list when it reads the count: 2 GiB of pointers
        b"*4294967295\r\n",  # 32 GiB: a MemoryError inside the protocol, if it got that far
        b"*999999999999\r\n",
        # Each count within bounds, together more items than a reply may hold.
        b"*2\r\n" + b"*%d\r\n" % (MAX_REPLY_ITEMS // 2) * 3,
        b"*%d\r\n" % MAX_REPLY_ITEMS + b"*%d\r\n" % MAX_REPLY_ITEMS,
    ],
)
async def test_huge_array_counts_are_refused_without_allocating_them(reply: bytes) -> None:
    async with hostile_redis(answers_first_command_with(reply)) as (url, peers):
        tracemalloc.start()
        try:
            await refused_at_once(url, peers, "invalid reply.*items")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 8 * MAX_REPLY_ITEMS + (4 << 20), peak


async def test_a_reply_that_never_ends_is_refused_past_the_size_limit() -> None:
    async def script(peer: Peer) -> None:
        await peer.command()
        await peer.send(b"+")
        while True:  # a simple string with no CRLF, for ever
            await peer.send(b"a" * 65536)

    async with hostile_redis(script) as (url, peers):
        await refused_at_once(url, peers, f"longer than {MAX_REPLY_BYTES}")


async def test_small_items_adding_up_past_the_size_limit_are_refused() -> None:
    count = MAX_REPLY_ITEMS

    async def script(peer: Peer) -> None:
        await peer.command()
        await peer.send(b"*%d\r\n" % count)
        while True:  # elements that each fit, together more bytes than a reply may have
            await peer.send(b"$1000\r\n" + b"x" * 1000 + b"\r\n")

    async with hostile_redis(script) as (url, peers):
        await refused_at_once(url, peers, f"longer than {MAX_REPLY_BYTES}")


async def test_a_reply_cut_short_by_a_close_fails_the_call() -> None:
    async def script(peer: Peer) -> None:
        await peer.command()
        await peer.send(b"*2\r\n$10\r\nabc")
        peer.writer.close()

    async with hostile_redis(script) as (url, peers):
        await refused_at_once(url, peers, "closed the connection")


async def test_a_peer_that_closes_at_once_fails_the_call_instead_of_hanging_it() -> None:
    async def script(peer: Peer) -> None:
        peer.writer.close()

    async with hostile_redis(script) as (url, peers):
        await refused_at_once(url, peers, "closed the connection")


async def test_garbage_sent_on_connecting_fails_the_call_instead_of_hanging_it() -> None:
    async def script(peer: Peer) -> None:
        await peer.send(b"?garbage\r\n")

    async with hostile_redis(script) as (url, peers):
        await refused_at_once(url, peers, "invalid reply")


async def test_a_reply_that_comes_before_its_command_was_sent_is_not_its_answer() -> None:
    async with hostile_redis(Peer.answer_honestly) as (url, peers):
        pipe = RedisPipe(url, connect_timeout=1, call_timeout=CALL_TIMEOUT)
        try:
            assert await pipe.exists("k") == 0  # connected, and idle
            peers[0].writer.write(b":1\r\n")  # on loopback, in the pipe's socket at once
            # Resume in the next pass of the loop, the one whose poll sees those bytes: the call
            # below is made in it, and its command written only in the pass after.
            await asyncio.sleep(0)
            with pytest.raises(RedisConnectionError, match="nobody asked for"):
                await pipe.exists("k")
            assert await peers[0].dropped_by_pipe()
            assert await pipe.exists("k") == 0
        finally:
            await pipe.aclose()


async def test_a_reply_nobody_asked_for_is_never_handed_to_the_next_caller() -> None:
    sent = asyncio.Event()

    async def script(peer: Peer) -> None:
        await peer.command()
        await peer.send(b":0\r\n")
        await asyncio.sleep(0.05)
        await peer.send(b":1\r\n")  # while the pipe is idle: nobody asked
        sent.set()
        await peer.answer_honestly()

    async with hostile_redis(script) as (url, peers):
        pipe = RedisPipe(url, connect_timeout=1, call_timeout=CALL_TIMEOUT)
        try:
            assert await pipe.exists("k") == 0
            await sent.wait()
            assert await peers[0].dropped_by_pipe()
            assert await pipe.exists("k") == 0  # not the 1: a new connection's answer
            assert len(peers) == 2
        finally:
            await pipe.aclose()


async def test_replies_split_into_one_byte_packets_are_put_back_together() -> None:
    sha = "0" * 40
    answers = [
        b"*4\r\n:1\r\n$5\r\nhello\r\n*2\r\n:-7\r\n$-1\r\n*0\r\n",
        b"$0\r\n\r\n",
        b"-NOPE not this one\r\n",
        b"+OK\r\n",
        b"*-1\r\n",
    ]

    async def script(peer: Peer) -> None:
        for _ in answers:
            await peer.command()
        await peer.send_in_pieces(b"".join(answers))
        await peer.answer_honestly()

    async with hostile_redis(script) as (url, peers):
        pipe = RedisPipe(url, connect_timeout=1, call_timeout=CALL_TIMEOUT)
        try:
            calls = [pipe.evalsha(sha, "", [], [str(i)]) for i in range(len(answers))]
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
            assert outcomes[:2] == [[1, b"hello", [-7, None], []], b""]
            assert str(outcomes[2]) == "NOPE not this one"
            assert outcomes[3:] == [b"OK", None]
            assert len(peers) == 1  # the same connection throughout
            assert not await peers[0].dropped_by_pipe(0.1)
        finally:
            await pipe.aclose()


async def test_a_peer_that_never_answers_times_the_call_out() -> None:
    async def script(peer: Peer) -> None:
        await peer.command()
        await peer.send(b"*2\r\n:1\r\n")  # half an answer, then nothing

    async with hostile_redis(script) as (url, peers):
        pipe = RedisPipe(url, connect_timeout=1, call_timeout=0.3)
        try:
            started = asyncio.get_running_loop().time()
            with pytest.raises(TimeoutError):
                await pipe.exists("k")
            assert 0.25 < asyncio.get_running_loop().time() - started < 2
            assert await peers[0].dropped_by_pipe()
            assert await pipe.exists("k") == 0
        finally:
            await pipe.aclose()
