"""The gateway's own routes: /health (everything), /ready (itself), /openapi.json and /docs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from foundation.gateway.health import gateway_health
from foundation.gateway.openapi import OpenApiAggregator
from foundation.gateway.runtime import GatewayRuntime
from foundation.shared.health import run_checks


def gateway_router(
    runtime: GatewayRuntime, openapi: OpenApiAggregator, rate_limits: dict[str, Any], *, docs: bool
) -> APIRouter:
    router = APIRouter()

    @router.get("/health", tags=["gateway"], summary="The gateway, each service's /ready and Redis")
    async def health() -> JSONResponse:
        ok, body = await gateway_health(runtime, rate_limits)
        return JSONResponse(body, status_code=200 if ok else 503)

    @router.get("/ready", tags=["gateway"], summary="The gateway can serve: Redis reachable")
    async def ready() -> JSONResponse:
        results = await run_checks({"redis": runtime.redis().ping}, runtime.settings.health_timeout)
        ok = all(value == "ok" for value in results.values())
        return JSONResponse(
            {"status": "ok" if ok else "degraded", "checks": results}, status_code=200 if ok else 503
        )

    if docs:

        @router.get("/openapi.json", include_in_schema=False)
        async def openapi_document() -> JSONResponse:
            return JSONResponse(await openapi.document())

        @router.get("/docs", include_in_schema=False)
        async def swagger() -> HTMLResponse:
            return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{openapi.title} - docs")

    return router
