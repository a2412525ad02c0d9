"""``GET /health`` at the gateway: itself, each service's ``/ready`` and Redis, concurrently."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from foundation.gateway.runtime import GatewayRuntime


async def _service_ready(session: aiohttp.ClientSession, url: str, timeout: float) -> str:
    try:
        async with session.get(f"{url}/ready", timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            await response.read()
            return "ok" if response.status == 200 else f"down: /ready answered {response.status}"
    except (TimeoutError, aiohttp.ServerTimeoutError):
        return "down: timeout"
    except aiohttp.ClientError as exc:
        return f"down: {type(exc).__name__}"


async def _redis_ping(runtime: GatewayRuntime, timeout: float) -> str:
    try:
        await asyncio.wait_for(runtime.redis().ping(), timeout)
    except Exception as exc:  # noqa: BLE001 - any failure means "down"
        runtime.redis_status.failed(exc)
        return f"down: {type(exc).__name__}"
    runtime.redis_status.succeeded()
    return "ok"


def _combine(results: list[tuple[str, str]]) -> str:
    """One service, maybe several replicas: ok only when every replica is."""
    if len(results) == 1:
        return results[0][1]
    down = [f"{url} {state}" for url, state in results if state != "ok"]
    return "ok" if not down else "down: " + "; ".join(down)


async def gateway_health(runtime: GatewayRuntime, rate_limits: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    timeout = runtime.settings.health_timeout
    session = runtime.http()
    targets = [(name, url) for name, upstream in runtime.upstreams.items() for url in upstream.urls]
    answers = await asyncio.gather(
        *(_service_ready(session, url, timeout) for _, url in targets), _redis_ping(runtime, timeout)
    )
    redis_state = answers[-1]
    services: dict[str, str] = {}
    for name in runtime.upstreams:
        services[name] = _combine([(url, answers[i]) for i, (n, url) in enumerate(targets) if n == name])
    down = [name for name, state in services.items() if state != "ok"]
    if redis_state != "ok":
        down.append("redis")
    status = runtime.redis_status
    body: dict[str, Any] = {
        "status": "degraded" if down else "ok",
        "down": down,
        "services": services,
        "redis": redis_state,
        "gateway": {
            "tls": runtime.settings.tls_enabled,
            "rate_limits": {
                **rate_limits,
                "enabled": runtime.settings.rate_limit_enabled,
                "redis": "ok" if status.down_since is None else f"down since {status.down_since:.0f}",
            },
        },
    }
    return not down, body
