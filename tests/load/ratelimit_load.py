"""Load test: two gateway replicas sharing one Redis let through exactly the configured limit.

Starts Redis (``REDIS_URL`` or an embedded one), a stand-in service (which also serves the
JWKS), and two gateway processes (Granian) on loopback; then, per scenario, sends a burst
spread over both replicas and checks that

- exactly ``--limit`` requests get through and every other one is 429 with ``Retry-After``;
- a request sent ``Retry-After`` seconds after a 429 gets through (the header is right);
- after the window a new burst again gets exactly ``--limit`` through.

Bounded: ``--requests`` per burst, ``--deadline`` seconds in all. Exit status 0 on success.

    PYTHONPATH=src/python:. python tests/load/ratelimit_load.py [--limit 50 --window 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp

from foundation.devstack.embedded import EmbeddedRedis, free_port
from tests.helpers.auth import TEST_AUDIENCE, TEST_ISSUER, TestSigner, bearer
from tests.helpers.gateway_stack import FakeService, wait_for_port

REPO = Path(__file__).resolve().parents[2]


def start_gateway(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "foundation.gateway.main",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env={**os.environ, **env, "PYTHONPATH": f"{REPO / 'src/python'}:{REPO}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


Send = Callable[[aiohttp.ClientSession, str], Awaitable[tuple[int, dict[str, str]]]]


async def burst(
    urls: list[str], send: Send, count: int, concurrency: int
) -> list[tuple[int, dict[str, str]]]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    results: list[tuple[int, dict[str, str]]] = []
    async with aiohttp.ClientSession(connector=connector) as client:
        queue = iter(range(count))

        async def worker() -> None:
            for i in queue:
                results.append(await send(client, urls[i % len(urls)]))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def check_burst(name: str, results: list[tuple[int, dict[str, str]]], limit: int, window: int) -> list[str]:
    statuses = Counter(status for status, _ in results)
    problems = []
    if statuses[200] != limit:
        problems.append(f"{name}: {statuses[200]} let through, expected exactly {limit}")
    if statuses[200] + statuses[429] != len(results):
        problems.append(f"{name}: unexpected statuses {dict(statuses)}")
    for status, headers in results:
        if "ratelimit" not in headers:
            problems.append(f"{name}: an answer without the RateLimit header")
            break
        if status == 429:
            retry = int(headers.get("retry-after", "0"))
            if not 1 <= retry <= window:
                problems.append(f"{name}: Retry-After {retry} outside 1..{window}")
                break
    print(
        f"{name:>10}: {len(results)} sent over 2 replicas -> {statuses[200]} let through, "
        f"{statuses[429]} refused (429); limit {limit} per {window} s"
    )
    return problems


async def scenario(name: str, urls: list[str], send: Send, args: argparse.Namespace) -> list[str]:
    results = await burst(urls, send, args.requests, args.concurrency)
    problems = check_burst(name, results, args.limit, args.window)
    async with aiohttp.ClientSession() as client:
        status, headers = await send(client, urls[0])
        if status != 429:
            problems.append(f"{name}: expected 429 right after the burst, got {status}")
            return problems
        retry_after = int(headers["retry-after"])
        await asyncio.sleep(retry_after)
        status, _ = await send(client, urls[1])
        print(f"{name:>10}: after waiting Retry-After={retry_after} s -> {status}")
        if status != 200:
            problems.append(f"{name}: still refused after waiting Retry-After ({status})")
    await asyncio.sleep(args.window + 0.2)  # every admitted request has left the window
    again = await burst(urls, send, args.limit * 2, args.concurrency)
    problems += check_burst(f"{name}+win", again, args.limit, args.window)
    return problems


async def run(args: argparse.Namespace) -> int:
    async with AsyncExitStack() as stack:
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="ratelimit-load-"))
            redis = EmbeddedRedis(Path(folder)).start()
            stack.callback(redis.stop)
            redis_url = redis.url
        signer = TestSigner()
        service = await stack.enter_async_context(FakeService("service"))
        service.jwks = signer.jwks
        env = {
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": f"load:{uuid.uuid4().hex[:8]}:",
            "AUTH_URL": service.url,
            "HISTORY_URL": service.url,
            "STATS_URL": service.url,
            "JWT_ISSUER": TEST_ISSUER,
            "JWT_AUDIENCE": TEST_AUDIENCE,
            "RATE_LIMIT_USER": f"{args.limit}/{args.window}",
            "RATE_LIMIT_STRICT": f"{args.limit}/{args.window}",
            "REDIS_TIMEOUT": "5",  # a timed-out call fails open by design; not what this measures
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "json",
        }
        ports = [free_port(), free_port()]
        for port in ports:
            process = start_gateway(port, env)
            stack.callback(process.wait, 10)
            stack.callback(process.terminate)
        for port in ports:
            await wait_for_port(port, 30)
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        token = bearer(signer.issue(ttl=3600))

        async def user_get(client: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, str]]:
            async with client.get(url + "/history", headers=token) as response:
                await response.read()
                return response.status, {k.lower(): v for k, v in response.headers.items()}

        async def login(client: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, str]]:
            async with client.post(url + "/auth/login", json={"email": "a@example.com"}) as response:
                await response.read()
                return response.status, {k.lower(): v for k, v in response.headers.items()}

        started = time.monotonic()
        problems = await scenario("per user", urls, user_get, args)
        problems += await scenario("login/ip", urls, login, args)
        print(
            f"done in {time.monotonic() - started:.1f} s; the service saw {len(service.requests)} requests "
            f"(expected {2 * (2 * args.limit + 1)})"
        )
        if len(service.requests) != 2 * (2 * args.limit + 1):
            problems.append("the service saw a different number of requests than were let through")
    for problem in problems:
        print("FAIL:", problem)
    print("OK" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--window", type=int, default=3, help="seconds")
    parser.add_argument("--requests", type=int, default=600, help="per burst")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds for the whole run")
    args = parser.parse_args()
    try:
        code = asyncio.run(asyncio.wait_for(run(args), args.deadline))
    except TimeoutError:
        print(f"FAIL: not done within {args.deadline} s")
        code = 1
    raise SystemExit(code)


if __name__ == "__main__":
    main()
