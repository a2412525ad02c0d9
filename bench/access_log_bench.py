"""Benchmark: the CPU one request's access line costs in ``RequestContextMiddleware``.

Runs the middleware around a trivial app in one process, many requests in a row, in
alternating rounds, with the lines going to /dev/null:

- at INFO with the standard library's defaults for each record (caller's frame, thread,
  process: the baseline);
- at INFO as ``configure_logging`` sets it up (``skip_unrendered_record_fields``);
- at WARNING (the line dropped before it is built);
- without the middleware (the trivial app alone).

    ./pants run bench:access_log      or      PYTHONPATH=src/python python bench/access_log_bench.py
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from foundation.shared.logging import (
    RequestContextMiddleware,
    configure_logging,
    skip_unrendered_record_fields,
)

# The standard library's own settings, read before configure_logging changes them.
DEFAULTS = (logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing)


def standard_defaults() -> None:
    logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing = DEFAULTS


async def app(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": b"{}"})


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b""}


async def send(_: Any) -> None:
    return None


def scope() -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": "/history/events",
        "headers": [(b"host", b"api.example.com"), (b"authorization", b"Bearer x")],
        "client": ("203.0.113.7", 50000),
        "state": {},
    }


async def cpu_per_request(target: Any, requests: int) -> float:
    start = time.process_time()
    for _ in range(requests):
        await target(scope(), receive, send)
    return 1e6 * (time.process_time() - start) / requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="per round and variant")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    configure_logging("bench", "INFO", "json")  # its handler holds this process's stderr
    middleware = RequestContextMiddleware(app)

    def info_defaults() -> None:
        logging.getLogger().setLevel(logging.INFO)
        standard_defaults()

    def info_configured() -> None:
        logging.getLogger().setLevel(logging.INFO)
        skip_unrendered_record_fields()  # what configure_logging did

    def warning() -> None:
        logging.getLogger().setLevel(logging.WARNING)

    variants: list[tuple[str, Callable[[], None], Any]] = [
        ("INFO, standard library defaults", info_defaults, middleware),
        ("INFO, as configured", info_configured, middleware),
        ("WARNING (line dropped)", warning, middleware),
        ("no middleware", warning, app),
    ]
    results: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)  # the lines go nowhere; the work of writing them is still done
        for _ in range(args.rounds):
            for name, prepare, target in variants:
                prepare()
                results[name].append(asyncio.run(cpu_per_request(target, args.requests)))
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    baseline = statistics.median(results[variants[0][0]])
    print(f"access line cost, {args.rounds} alternating rounds of {args.requests} requests, medians:")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"  {name:34} {median:7.2f} us/request  ({median / baseline:.0%} of the baseline)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
