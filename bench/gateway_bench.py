"""Benchmark: an authenticated GET straight to a service vs. the same through the gateway.

Everything on loopback, one Granian worker per app, started and stopped by this script:
Redis (``REDIS_URL`` or embedded), a minimal service that checks the token itself the way
every service does (JWT verify + Redis session deny-list), and the gateway in front of it
(JWT verify, deny-list, rate limit in Redis, proxy).

1. Peak: ``wrk -t1 -c32`` for ``--seconds``, alternating direct and gateway for ``--rounds``;
   the medians of requests/s, p50 and p99.
2. Half load: an open-loop generator (a separate process) sends at half the gateway's peak
   rate, to the service and to the gateway in turn every half second (both paths see the
   same moments of the machine), for ``--rounds`` rounds of twice ``--seconds``; the p99
   difference is the latency the gateway adds.

    PYTHONPATH=src/python:. python bench/gateway_bench.py [--seconds 10] [--service minimal|history]

Both steps run twice by default: first with the minimal service behind the gateway (which
does nothing but authenticate, as the gateway also does: the harshest case), then with
history-service's ``GET /history`` (a page of 20 events from PostgreSQL, ``DATABASE_URL`` or
an embedded server): a real endpoint. ``--service`` picks one.

Targets (docs/performance.md): gateway >= 50 % of direct throughput; p99 added < 5 ms at half
of the gateway's peak.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from foundation.auth.denylist import SessionDenyList
from foundation.auth.dependencies import CurrentPrincipal
from foundation.auth.keys import StaticKeySource
from foundation.auth.verifier import TokenVerifier
from foundation.shared.app import tune_worker
from foundation.shared.errors import install_error_handlers
from foundation.shared.logging import RequestContextMiddleware, configure_logging
from foundation.shared.redis import create_redis
from foundation.shared.settings import ServiceSettings
from foundation.shared.telemetry import NATIVE_TELEMETRY_OFF

REPO = Path(__file__).resolve().parents[1]
PYTHONPATH = f"{REPO / 'src/python'}:{REPO}:{REPO / 'bench'}"
ISSUER, AUDIENCE = "http://127.0.0.1:8000/auth", "foundation-api"
REQUEST_TIMEOUT = 10.0  # seconds; a request without an answer by then counts as an error
SLICE_SECONDS = 0.5  # the open-loop phase sends to each path in turn for this long
DESCRIPTIONS = {
    "minimal": "a minimal service that only authenticates",
    "history": "history-service, a page of 20 events from PostgreSQL",
}


# --- the service under test (runs in its own process) -------------------------------------


def create_service_app() -> Any:
    """A minimal authenticated service: verifies the token and checks the deny-list."""
    jwks = json.loads(os.environ["BENCH_JWKS"])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        settings = ServiceSettings(service_name="bench-service")  # REDIS_URL
        redis = create_redis(settings)
        denylist = SessionDenyList.for_service(settings, redis)
        tune_worker()  # as every service's app does (create_service_app)
        # What CurrentPrincipal reads: the lifespan state, as in every service.
        yield {
            "token_verifier": TokenVerifier(StaticKeySource(jwks), issuer=ISSUER, audience=AUDIENCE),
            "session_denylist": denylist,
        }
        await denylist.aclose()
        await redis.aclose()

    configure_logging("bench-service", os.environ.get("LOG_LEVEL", "WARNING"), "json")
    # As create_service_app makes every service: FastAPI's own telemetry off.
    app = FastAPI(lifespan=lifespan, docs_url=None, openapi_url=None, telemetry=NATIVE_TELEMETRY_OFF)
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware)  # as in every service (create_service_app)

    @app.get("/history/bench")
    async def bench(principal: CurrentPrincipal) -> dict[str, str]:
        return {"user_id": str(principal.user_id)}

    @app.get("/auth/.well-known/jwks.json")
    async def keys() -> dict[str, Any]:
        document: dict[str, Any] = jwks
        return document

    @app.get("/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve_service(port: int) -> None:
    from granian import Granian
    from granian.constants import Interfaces, Loops

    Granian(
        "gateway_bench:create_service_app",
        address="127.0.0.1",
        port=port,
        interface=Interfaces.ASGI,
        factory=True,
        workers=1,
        loop=Loops.uvloop,
        log_access=False,
        log_enabled=False,
    ).serve()


def start_history_service(stack: ExitStack, env: dict[str, str], keys_url: str) -> tuple[str, int]:
    """history-service on its own database (PostgreSQL from DATABASE_URL, else embedded),
    verifying tokens against ``keys_url``: its URL and process id."""
    from foundation.database.migrations import upgrade
    from foundation.database.provisioning import drop_database, ensure_database, with_database
    from foundation.history_service import migrations

    server = os.environ.get("DATABASE_URL")
    if not server:
        from foundation.devstack.embedded import EmbeddedPostgres

        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="gateway-bench-pg-"))
        os.chmod(folder, 0o755)  # noqa: S103 - PostgreSQL may run as an unprivileged user
        postgres = EmbeddedPostgres(Path(folder)).start()
        stack.callback(postgres.stop)
        server = postgres.url
    database = with_database(server, f"bench_history_{uuid.uuid4().hex[:8]}")
    ensure_database(database)
    stack.callback(drop_database, database)
    upgrade(database, migrations.__name__)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "foundation.history_service.main", "serve", "--port", str(port)],
        env={
            **env,
            "DATABASE_URL": database,
            "JWKS_URL": keys_url,
            "JWT_ISSUER": ISSUER,
            "JWT_AUDIENCE": AUDIENCE,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stack.callback(process.wait, 10)
    stack.callback(process.terminate)
    wait_port(port)
    return f"http://127.0.0.1:{port}", process.pid


def seed_timeline(url: str, token: str, events: int = 20) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    for index in range(events):
        answer = httpx.post(url, json={"type": "app.opened", "data": {"n": index}}, headers=headers)
        answer.raise_for_status()


# --- open-loop load at a fixed rate (runs in its own process) -----------------------------


async def fixed_rate(urls: list[str], token: str, rate: float, seconds: float) -> list[dict[str, Any]]:
    """Open-loop load at ``rate``, switching target every ``SLICE_SECONDS`` (``urls[0]`` for
    the first slice, ``urls[1]`` for the next, and so on): one result per URL.

    Fine interleaving puts every target through the same moments of the machine: with whole
    runs in turn, a slow phase of the VM (seen lasting seconds, doubling every process's CPU
    per request) could fall on one target's run and not the other's, and decide the p99
    difference by itself.
    """
    from bench.http_client import Client

    clients, raws = [], []
    for url in urls:
        parsed = urllib.parse.urlsplit(url)
        client = Client(f"{parsed.scheme}://{parsed.netloc}")
        clients.append(client)
        raws.append(client.raw("GET", parsed.path, {"Authorization": f"Bearer {token}"}))
    loop = asyncio.get_running_loop()
    latencies: list[list[float]] = [[] for _ in urls]
    errors = [0 for _ in urls]
    sent = [0 for _ in urls]
    total = int(rate * seconds)

    async def one(target: int, scheduled: float) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):  # no task per request, as wait_for makes
                status, _ = await clients[target].send(raws[target])
            if status != 200:
                errors[target] += 1
        except (OSError, ValueError, TimeoutError):
            errors[target] += 1
        # From when it was due, not when it was sent: no coordinated omission.
        latencies[target].append(time.perf_counter() - scheduled)

    # Warm up: open the connections a burst needs.
    for target in range(len(urls)):
        await asyncio.gather(*(one(target, time.perf_counter()) for _ in range(32)))
        latencies[target].clear()
        errors[target] = 0
    # No garbage collection while sending: a full collection here pauses this process for
    # 20-46 ms once or twice a run, and the requests that fall due meanwhile go out as one
    # burst (no client population sends like that); those bursts, not the servers, would
    # set the p99. The few thousand short-lived objects of a run are freed by reference
    # counting, and finished tasks are not kept.
    gc.collect()
    gc.freeze()
    gc.disable()
    pending: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    try:
        for i in range(total):
            due = start + i / rate
            target = int(i / rate / SLICE_SECONDS) % len(urls)
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = loop.create_task(one(target, due))
            sent[target] += 1
            pending.add(task)
            task.add_done_callback(pending.discard)
        while pending:
            await asyncio.wait(set(pending))
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    for client in clients:
        client.close()
    return [
        {
            "sent": sent[target],
            "achieved_rps": total / elapsed,  # the rate while it was this target's turn
            "errors": errors[target],
            "latencies_ms": [round(latency * 1000, 3) for latency in latencies[target]],
        }
        for target in range(len(urls))
    ]


def pooled(runs: list[dict[str, Any]]) -> dict[str, float]:
    """p50/p99/max over every request of every run (not a median of per-run figures, which
    would hide one bad run), the mean achieved rate and the errors."""
    latencies = sorted(latency for run in runs for latency in run["latencies_ms"])
    return {
        "achieved_rps": sum(run["achieved_rps"] for run in runs) / len(runs),
        "errors": sum(run["errors"] for run in runs),
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "max_ms": latencies[-1],
        "count": len(latencies),
    }


# --- the driver -----------------------------------------------------------------------------


def free_port() -> int:
    from foundation.devstack.embedded import free_port as pick

    return pick()


def wait_port(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port}")


def wrk(url: str, token: str, seconds: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-H",
            f"Authorization: Bearer {token}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout

    def latency(label: str) -> float:
        match = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert match, out
        value, unit = float(match[1]), match[2]
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),  # type: ignore[index]
        "p50_ms": latency("50%"),
        "p99_ms": latency("99%"),
        "non_2xx": int(non_2xx[1]) if non_2xx else 0,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (Granian runs its worker as a child)."""
    import psutil

    total = 0.0
    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run with the median throughput (its latencies belong to it)."""
    return sorted(runs, key=lambda run: run["rps"])[len(runs) // 2]


def at_rate(urls: list[str], token: str, rate: float, seconds: float) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, __file__, "--_rate", ",".join(urls), token, str(rate), str(seconds)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
        timeout=seconds * 3 + 60,
    ).stdout
    result: list[dict[str, Any]] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10, help="per wrk run (and per fixed-rate run)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="alternating direct/gateway runs")
    parser.add_argument("--rate", type=float, help="the open-loop rate (default: half the gateway's peak)")
    parser.add_argument(
        "--service",
        choices=["both", "minimal", "history"],
        default="both",
        help="behind the gateway: a minimal service that only authenticates, history-service, "
        "or one after the other (default)",
    )
    args = parser.parse_args()
    # Stopped with SIGTERM (kill, a CI timeout): unwind as on Ctrl-C, so that the service and
    # gateway processes started below are stopped too instead of outliving the benchmark.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not shutil.which("wrk"):
        print("wrk is needed (apt-get install wrk)")
        return 2
    sys.path[:0] = PYTHONPATH.split(":")
    from tests.helpers.auth import TestSigner

    signer = TestSigner()
    token = signer.issue(ttl=3600)
    with ExitStack() as stack:
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            from foundation.devstack.embedded import EmbeddedRedis

            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="gateway-bench-"))
            redis = EmbeddedRedis(Path(folder)).start()
            stack.callback(redis.stop)
            redis_url = redis.url
        env = {
            **os.environ,
            "PYTHONPATH": PYTHONPATH,
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": f"bench:{uuid.uuid4().hex[:8]}:",
            "BENCH_JWKS": json.dumps(signer.jwks),
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "json",
        }
        # The minimal service: measured itself, and serving the signing keys in either case.
        service_port = free_port()
        service = subprocess.Popen(
            [sys.executable, __file__, "--_service", str(service_port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stack.callback(service.wait, 10)
        stack.callback(service.terminate)
        wait_port(service_port)
        kinds = ["minimal", "history"] if args.service == "both" else [args.service]
        for index, kind in enumerate(kinds):
            if index:
                print()
            measure(kind, args, env, token, f"http://127.0.0.1:{service_port}", service.pid)
    return 0


def measure(
    kind: str, args: argparse.Namespace, env: dict[str, str], token: str, service_url: str, service_pid: int
) -> None:
    """Start the service under test (unless minimal) and a gateway in front of it, measure
    both paths, print the figures, and stop what it started."""
    with ExitStack() as stack:
        history_url, measured = service_url, service_pid
        if kind == "history":
            keys_url = f"{service_url}/auth/.well-known/jwks.json"
            history_url, measured = start_history_service(stack, env, keys_url)
        gateway_port = free_port()
        gateway_env = {
            **env,
            "AUTH_URL": service_url,
            "HISTORY_URL": history_url,
            "STATS_URL": service_url,
            "JWT_ISSUER": ISSUER,
            "JWT_AUDIENCE": AUDIENCE,
            "RATE_LIMIT_USER": "1000000000/60",
        }  # counted in Redis, never refused
        gateway = subprocess.Popen(
            [sys.executable, "-m", "foundation.gateway.main", "serve", "--port", str(gateway_port)],
            env=gateway_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stack.callback(gateway.wait, 10)
        stack.callback(gateway.terminate)
        wait_port(gateway_port)
        path = "/history/bench" if kind == "minimal" else "/history"
        direct_url = f"{history_url}{path}"
        gateway_url = f"http://127.0.0.1:{gateway_port}{path}"
        if kind == "history":
            seed_timeline(direct_url, token)
        wrk(direct_url, token, 2, args.connections)  # warm-up (imports, pools, JWKS fetch)
        wrk(gateway_url, token, 2, args.connections)

        # Alternate the two, round after round, and keep the median of each: on a shared
        # machine the load from other processes changes from one run to the next.
        rounds: list[tuple[dict[str, float], dict[str, float]]] = []
        cpu: dict[str, list[float]] = {"direct: service": [], "gateway: gateway": [], "gateway: service": []}
        for _ in range(args.rounds):
            before = cpu_seconds(measured), cpu_seconds(gateway.pid)
            direct_run = wrk(direct_url, token, args.seconds, args.connections)
            middle = cpu_seconds(measured), cpu_seconds(gateway.pid)
            gateway_run = wrk(gateway_url, token, args.seconds, args.connections)
            after = cpu_seconds(measured), cpu_seconds(gateway.pid)
            rounds.append((direct_run, gateway_run))
            direct_count = direct_run["rps"] * args.seconds
            gateway_count = gateway_run["rps"] * args.seconds
            cpu["direct: service"].append((middle[0] - before[0]) / direct_count * 1e6)
            cpu["gateway: gateway"].append((after[1] - middle[1]) / gateway_count * 1e6)
            cpu["gateway: service"].append((after[0] - middle[0]) / gateway_count * 1e6)
        direct = median_run([d for d, _ in rounds])
        through = median_run([g for _, g in rounds])
        rate = args.rate or through["rps"] / 2
        # Both paths in each round, taking turns every SLICE_SECONDS; every request of every
        # round counts towards the p99.
        direct_runs, through_runs = [], []
        for _ in range(args.rounds):
            direct_run_half, through_run_half = at_rate(
                [direct_url, gateway_url], token, rate, 2 * args.seconds
            )
            direct_runs.append(direct_run_half)
            through_runs.append(through_run_half)
        direct_half, through_half = pooled(direct_runs), pooled(through_runs)

    ratios = sorted(g["rps"] / d["rps"] for d, g in rounds)
    ratio = ratios[len(ratios) // 2]
    added_p99 = through_half["p99_ms"] - direct_half["p99_ms"]
    print(
        f"authenticated GET {path} ({DESCRIPTIONS[kind]}), wrk -t1 -c{args.connections}, "
        f"{args.seconds} s per run, medians of {args.rounds} alternating rounds, one Granian worker per app"
    )
    print(f"{'':22}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>9}")
    for name, row in (("direct to service", direct), ("through gateway", through)):
        print(
            f"{name:22}{row['rps']:>10.0f}{row['p50_ms']:>10.2f}{row['p99_ms']:>10.2f}{row['non_2xx']:>9.0f}"
        )
    print(
        f"gateway / direct throughput: {ratio:.0%} (median of {args.rounds} rounds: "
        f"{', '.join(f'{r:.0%}' for r in ratios)}; target >= 50 %)"
    )
    medians = {name: sorted(values)[len(values) // 2] for name, values in cpu.items()}
    print(
        "CPU per request (machine-load independent): "
        f"direct {medians['direct: service']:.0f} us in the service; "
        f"through the gateway {medians['gateway: gateway']:.0f} us in the gateway "
        f"+ {medians['gateway: service']:.0f} us in the service"
    )
    print(
        f"at half the gateway's peak ({rate:.0f} req/s, open loop, latency from when each request "
        f"was due; {args.rounds} rounds of {2 * args.seconds} s taking turns every {SLICE_SECONDS} s, "
        "all requests pooled):"
    )
    print(f"{'':22}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>9}{'max ms':>10}{'requests':>10}")
    for name, row in (("direct to service", direct_half), ("through gateway", through_half)):
        print(
            f"{name:22}{row['achieved_rps']:>10.0f}{row['p50_ms']:>10.2f}{row['p99_ms']:>10.2f}"
            f"{row['errors']:>9.0f}{row['max_ms']:>10.2f}{row['count']:>10.0f}"
        )
    print(f"p99 added by the gateway: {added_p99:.2f} ms (target < 5 ms)", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_service":
        serve_service(int(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--_rate":
        urls, token, rate, seconds = sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
        import uvloop

        print(json.dumps(uvloop.run(fixed_rate(urls.split(","), token, rate, seconds))))
    else:
        raise SystemExit(main())
