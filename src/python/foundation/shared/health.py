"""``GET /health`` (liveness: the process answers) and ``GET /ready`` (its dependencies answer).

A service passes the checks it needs (database, Redis), made from its lifespan state (each
request's ``scope["state"]``); each check is a coroutine that raises when its dependency is
down, and all run concurrently under one short timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

Check = Callable[[], Awaitable[object]]


async def run_checks(checks: Mapping[str, Check], timeout: float = 2.0) -> dict[str, str]:
    async def one(check: Check) -> str:
        try:
            await asyncio.wait_for(check(), timeout)
        except Exception as exc:  # noqa: BLE001 - any failure means "down"
            return f"down: {type(exc).__name__}"
        return "ok"

    names = list(checks)
    results = await asyncio.gather(*(one(checks[name]) for name in names))
    return dict(zip(names, results, strict=True))


def health_router(
    checks: Callable[[Mapping[str, Any]], Mapping[str, Check]], timeout: float = 2.0
) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/health", summary="Liveness")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/ready",
        summary="Readiness: database and Redis reachable",
        responses={
            503: {
                "description": 'Something is down: `{"status": "degraded", "checks": {...}}`',
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    )
    async def ready(request: Request) -> JSONResponse:
        results = await run_checks(checks(request.scope.get("state", {})), timeout)
        ok = all(value == "ok" for value in results.values())
        return JSONResponse(
            {"status": "ok" if ok else "degraded", "checks": results},
            status_code=200 if ok else 503,
        )

    return router
