"""auth-service benchmark: argon2id, logins, refreshes and access-token verification.

Prints, in one bounded run on this machine (loopback only):

- raw argon2id verifications per second at the configured cost, on one thread and on as
  many threads as cores (argon2-cffi releases the GIL);
- logins per second through the HTTP API (a real Granian server, one worker per core),
  and their ratio to the raw all-cores argon2 rate (target >= 85 %). The two are measured
  in alternating rounds and pooled, so a change in the machine's speed during the run (a
  shared VM's neighbours) weighs on both sides of the ratio alike;
- refreshes per second through the HTTP API (target >= 1,000);
- access-token verifications per second, cold (every token new: signature checked) and
  warm (tokens seen before: the verifier's cache), on one core (warm target >= 20,000);
- the median time of a failed login for an unknown email and for a wrong password.

Uses DATABASE_URL / REDIS_URL when set, otherwise embedded servers. Run with
``./pants run bench:auth`` or ``PYTHONPATH=src/python:. python bench/auth_bench.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import uvloop

from bench.http_client import Client
from foundation.auth.keys import StaticKeySource
from foundation.auth.verifier import TokenVerifier
from foundation.auth_service import migrations as auth_migrations
from foundation.auth_service.services.passwords import PasswordHasher
from foundation.auth_service.settings import AuthServiceSettings
from foundation.database.migrations import upgrade
from foundation.database.provisioning import drop_database, ensure_database, with_database
from foundation.devstack.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from foundation.shared.cpu import usable_cores

PASSWORD = "violet-Harbor-93-quietly-Lamp"  # noqa: S105 - the benchmark users' password
ISSUER, AUDIENCE = "http://127.0.0.1/auth", "bench-api"


@dataclass
class Servers:
    postgres_url: str
    redis_url: str


@contextlib.contextmanager
def servers(root: Path) -> Iterator[Servers]:
    database, redis = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    started: list[Any] = []
    try:
        if not database:
            postgres = EmbeddedPostgres(root / "postgres").start()
            started.append(postgres)
            database = postgres.url
        if not redis:
            embedded_redis = EmbeddedRedis(root / "redis").start()
            started.append(embedded_redis)
            redis = embedded_redis.url
        yield Servers(database, redis)
    finally:
        for server in reversed(started):
            server.stop()


# -- argon2 --------------------------------------------------------------------------------


def argon2_rate(hasher: PasswordHasher, threads: int, seconds: float) -> tuple[float, float]:
    """(verifications per second, CPU milliseconds per verification)."""
    stored = hasher.hash(PASSWORD)
    deadline = time.perf_counter() + seconds

    def work() -> int:
        count = 0
        while time.perf_counter() < deadline:
            hasher.verify(stored, PASSWORD)
            count += 1
        return count

    cpu = time.process_time()
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(lambda _: work(), range(threads)))
    elapsed = time.perf_counter() - start
    return total / elapsed, 1000 * (time.process_time() - cpu) / total


# -- the server ----------------------------------------------------------------------------


@contextlib.contextmanager
def auth_server(env: dict[str, str], port: int, workers: int) -> Iterator[str]:
    command = [sys.executable, "-m", "foundation.auth_service.main", "serve", "--port", str(port)]
    command += ["--workers", str(workers)]
    proc = subprocess.Popen(command, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        import httpx

        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"auth-service exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("auth-service did not become ready")
            time.sleep(0.2)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def tree_cpu_by_process() -> dict[str, float]:
    """CPU seconds used so far by this process, each descendant (server workers, embedded
    PostgreSQL and Redis) and the machine's own PostgreSQL and Redis when those serve the
    run instead, by process kind."""
    me = psutil.Process()
    processes = {proc.pid: proc for proc in [me, *me.children(recursive=True)]}
    for proc in psutil.process_iter(["name"]):
        name = proc.info["name"] or ""
        if "postgres" in name or "redis" in name:
            processes.setdefault(proc.pid, proc)
    usage: dict[str, float] = {}
    for proc in processes.values():
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            if proc.pid == me.pid:
                kind = "benchmark client"
            else:
                name = proc.name()
                kind = "postgres" if "postgres" in name else "redis" if "redis" in name else "auth-service"
            usage[kind] = usage.get(kind, 0.0) + times.user + times.system
    return usage


def tree_cpu_seconds() -> float:
    """CPU time used so far by the whole process tree: what an operation costs, whatever
    else runs on the machine."""
    return sum(tree_cpu_by_process().values())


@dataclass
class Phase:
    rate: float  # operations per second, wall clock
    ok: int
    failed: int
    cpu_ms: float  # CPU milliseconds per operation, across the process tree
    split: dict[str, float]  # the same by process kind
    seconds: float = 0.0  # how long the phase ran

    @classmethod
    def pooled(cls, phases: list[Phase]) -> Phase:
        """The rounds of one phase as one: counts and time added, CPU per op weighted."""
        ok, failed = sum(p.ok for p in phases), sum(p.failed for p in phases)
        seconds = sum(p.seconds for p in phases)
        count = max(1, ok + failed)
        split: dict[str, float] = {}
        for phase in phases:
            for kind, ms in phase.split.items():
                split[kind] = split.get(kind, 0.0) + ms * (phase.ok + phase.failed) / count
        return cls(ok / seconds, ok, failed, sum(split.values()), split, seconds)

    def capacity(self, cores: int, idle_cpu: float) -> tuple[float, float]:
        """(CPU ms per operation without the idle stack's background work, operations per
        second the cores could do once that background work is paid for)."""
        count = max(1, self.ok + self.failed)
        own = self.cpu_ms - 1000 * idle_cpu * self.seconds / count
        return own, (1000 * cores - 1000 * idle_cpu) / own


async def run_for(seconds: float, concurrency: int, one: Callable[[int], Awaitable[bool]]) -> Phase:
    """Run ``one(worker)`` in ``concurrency`` loops for ``seconds``."""
    deadline = time.perf_counter() + seconds
    ok = failed = 0

    async def loop(worker: int) -> None:
        nonlocal ok, failed
        while time.perf_counter() < deadline:
            if await one(worker):
                ok += 1
            else:
                failed += 1

    before = tree_cpu_by_process()
    start = time.perf_counter()
    await asyncio.gather(*(loop(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - start
    after = tree_cpu_by_process()
    count = max(1, ok + failed)
    split = {kind: 1000 * (after[kind] - before.get(kind, 0.0)) / count for kind in after}
    return Phase(ok / elapsed, ok, failed, sum(split.values()), split, elapsed)


async def http_benchmarks(
    base: str, args: argparse.Namespace, hasher: PasswordHasher, cores: int
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    http = Client(base)
    try:
        users = [f"bench-{uuid.uuid4().hex[:10]}@example.com" for _ in range(args.users)]

        async def register(email: str) -> None:
            status, body = await http.post_json("/auth/register", {"email": email, "password": PASSWORD})
            assert status == 201, body

        for start in range(0, len(users), 8):
            await asyncio.gather(*(register(email) for email in users[start : start + 8]))

        # Warm up connections and code paths.
        for email in users[:4]:
            await http.post_json("/auth/login", {"email": email, "password": PASSWORD})

        counter = iter(range(10**9))

        async def login(_: int) -> bool:
            email = users[next(counter) % len(users)]
            status, _body = await http.post_json("/auth/login", {"email": email, "password": PASSWORD})
            return status == 200

        # Alternate rounds of raw argon2 (the server idle) and logins (the benchmark's own
        # threads idle): the ratio compares like with like even when the machine drifts.
        round_seconds = args.seconds / max(1, args.rounds)
        raw_rates: list[float] = []
        raw_cpu: list[float] = []
        phases: list[Phase] = []
        for _ in range(max(1, args.rounds)):
            rate, cpu_ms = await asyncio.to_thread(argon2_rate, hasher, cores, round_seconds)
            raw_rates.append(rate)
            raw_cpu.append(cpu_ms)
            phases.append(await run_for(round_seconds, args.login_concurrency, login))
        results["logins"] = Phase.pooled(phases)
        results["login_rounds"] = [
            100 * phase.rate / raw for phase, raw in zip(phases, raw_rates, strict=True)
        ]
        results["raw_all"] = statistics.fmean(raw_rates)
        results["raw_cpu_ms"] = statistics.fmean(raw_cpu)

        # Refreshes: each client loop keeps its own session's token chain.
        chains: list[str] = []
        for index in range(args.refresh_concurrency):
            status, body = await http.post_json(
                "/auth/login", {"email": users[index % len(users)], "password": PASSWORD}
            )
            assert status == 200, body
            chains.append(body["refresh_token"])
        access_tokens: list[str] = []

        async def refresh(worker: int) -> bool:
            status, body = await http.post_json("/auth/refresh", {"refresh_token": chains[worker]})
            if status != 200:
                return False
            chains[worker] = body["refresh_token"]
            if len(access_tokens) < args.tokens:
                access_tokens.append(body["access_token"])
            return True

        results["refreshes"] = await run_for(args.seconds, args.refresh_concurrency, refresh)
        results["access_tokens"] = access_tokens

        # Failed-login timing: unknown email vs wrong password, interleaved, one at a time.
        unknown: list[float] = []
        wrong: list[float] = []
        for index in range(args.timing_samples):
            for target, email, password in (
                (unknown, f"nobody-{uuid.uuid4().hex[:10]}@example.com", PASSWORD),
                (wrong, users[index % len(users)], "Wrong-password-123"),
            ):
                began = time.perf_counter()
                status, _body = await http.post_json("/auth/login", {"email": email, "password": password})
                target.append(time.perf_counter() - began)
                assert status in {401, 429}, status
        results["timing"] = (statistics.median(unknown), statistics.median(wrong))

        status, jwks = await http.send(http.raw("GET", "/auth/.well-known/jwks.json"))
        assert status == 200, jwks
        results["jwks"] = json.loads(jwks)
    finally:
        http.close()
    return results


async def verification_rates(jwks: dict[str, Any], tokens: list[str]) -> tuple[float, float]:
    verifier = TokenVerifier(StaticKeySource(jwks), issuer=ISSUER, audience=AUDIENCE)
    start = time.perf_counter()
    for token in tokens:
        await verifier.verify(token)
    cold = len(tokens) / (time.perf_counter() - start)
    rounds = 5
    start = time.perf_counter()
    for _ in range(rounds):
        for token in tokens:
            await verifier.verify(token)
    warm = rounds * len(tokens) / (time.perf_counter() - start)
    return cold, warm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each HTTP phase")
    parser.add_argument("--workers", type=int, default=usable_cores(), help="Granian workers")
    parser.add_argument("--rounds", type=int, default=4, help="alternating argon2 / login rounds")
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--login-concurrency", type=int, default=8)
    parser.add_argument("--refresh-concurrency", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=5000, help="access tokens for the verify phase")
    parser.add_argument("--timing-samples", type=int, default=20)
    args = parser.parse_args()

    settings = AuthServiceSettings()
    hasher = PasswordHasher(
        settings.argon2_memory_kib, settings.argon2_time_cost, settings.argon2_parallelism
    )
    cores = usable_cores()  # as many raw argon2 threads as the service has hashing threads
    print(
        f"auth-service benchmark on {cores} cores; argon2id m={settings.argon2_memory_kib} KiB "
        f"t={settings.argon2_time_cost} p={settings.argon2_parallelism}; {args.workers} Granian worker(s)"
    )
    raw_one, cpu_one = argon2_rate(hasher, 1, 3)
    raw_all, cpu_all = argon2_rate(hasher, cores, 3)
    print(
        f"argon2id verify, 1 thread          {raw_one:8.1f} /s  {cpu_one:8.2f} ms  {1000 / cpu_one:10.1f} /s"
    )
    print(
        f"argon2id verify, {cores} threads         {raw_all:8.1f} /s  {cpu_all:8.2f} ms  "
        f"{1000 * cores / cpu_all:10.1f} /s"
    )

    with tempfile.TemporaryDirectory(prefix="auth-bench-") as root:
        os.chmod(root, 0o755)  # noqa: S103 - PostgreSQL may run as an unprivileged user
        results = run_http_phases(Path(root), args, hasher, cores)
    report(results, cores)
    return 0


def run_http_phases(
    root: Path, args: argparse.Namespace, hasher: PasswordHasher, cores: int
) -> dict[str, Any]:
    with servers(root) as found:
        database = with_database(found.postgres_url, f"bench_auth_{uuid.uuid4().hex[:8]}")
        ensure_database(database)
        try:
            upgrade(database, auth_migrations.__name__)
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
                "ENVIRONMENT": "test",
                "DATABASE_URL": database,
                "REDIS_URL": found.redis_url,
                "REDIS_KEY_PREFIX": f"bench:{uuid.uuid4().hex[:8]}:",
                "JWT_KEYS_DIR": str(root / "keys"),
                "JWT_ISSUER": ISSUER,
                "JWT_AUDIENCE": AUDIENCE,
                "LOG_LEVEL": "WARNING",
                "LOG_FORMAT": "json",
                "DOCS_ENABLED": "false",
                "LOGIN_MAX_FAILURES_PER_IP": "1000000",
            }
            with auth_server(env, free_port(), args.workers) as base:
                time.sleep(1)
                idle = tree_cpu_seconds()
                time.sleep(3)
                idle_per_second = (tree_cpu_seconds() - idle) / 3
                results = uvloop.run(http_benchmarks(base, args, hasher, cores))
                results["idle_cpu"] = idle_per_second
        finally:
            drop_database(database)
    return results


def report(results: dict[str, Any], cores: int) -> None:
    raw_all, argon2_cpu_ms = results["raw_all"], results["raw_cpu_ms"]
    logins: Phase = results["logins"]
    refreshes: Phase = results["refreshes"]
    idle = results["idle_cpu"]
    login_own, login_capacity = logins.capacity(cores, idle)
    refresh_own, refresh_capacity = refreshes.capacity(cores, idle)
    print("                                   measured      CPU per op   capacity of idle cores")
    print(
        f"logins through HTTP                {logins.rate:8.1f} /s  {login_own:8.2f} ms  "
        f"{login_capacity:10.1f} /s  ({logins.ok} ok, {logins.failed} failed)"
    )
    print(
        f"  = logins vs raw argon2 on {cores} threads: measured {100 * logins.rate / raw_all:.0f} %; "
        f"capacity {100 * login_capacity / (1000 * cores / argon2_cpu_ms):.0f} % (target >= 85 %)"
    )
    rounds = ", ".join(f"{ratio:.0f}" for ratio in results["login_rounds"])
    print(f"    (argon2 {raw_all:.1f} /s in the rounds between; measured % by round: {rounds})")
    print(
        f"refreshes through HTTP             {refreshes.rate:8.1f} /s  {refresh_own:8.2f} ms  "
        f"{refresh_capacity:10.1f} /s  (target >= 1,000; {refreshes.ok} ok, {refreshes.failed} failed)"
    )
    for name, phase in (("login", logins), ("refresh", refreshes)):
        parts = ", ".join(f"{kind} {ms:.2f}" for kind, ms in sorted(phase.split.items()))
        print(f"  CPU ms per {name}: {parts}")
    cold, warm = asyncio.run(verification_rates(results["jwks"], results["access_tokens"]))
    distinct = len(results["access_tokens"])
    print(f"access-token verify, cold (1 core) {cold:8.0f} /s  ({distinct} distinct tokens)")
    print(f"access-token verify, warm (1 core) {warm:8.0f} /s  = {warm / cold:.0f}x cold (target >= 20,000)")
    unknown, wrong = results["timing"]
    print(
        f"failed login, median               unknown email {1000 * unknown:.1f} ms, wrong password "
        f"{1000 * wrong:.1f} ms (difference {1000 * abs(unknown - wrong):.1f} ms)"
    )
    print(
        f"idle stack (outbox relay polling, etc.) uses {1000 * idle:.0f} ms of CPU per second: "
        "left out of CPU per op, taken off the cores' capacity"
    )
    print(
        f"machine load average during the run: {os.getloadavg()[0]:.1f} "
        "(CPU per op is independent of other load; wall-clock rates are not)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
