"""Gateway: the app factory. Wiring only; each piece lives in its own module.

A request passes, outermost first: metrics (``foundation.shared.metrics``), request id +
access log, client address (trusted proxies), security headers, HTTPS redirect, CORS, body
limit, then ``EdgeRouter``: service paths go through identify -> rate limit -> require
authentication -> proxy; the gateway's own routes (/health, /ready, /openapi.json, /docs,
/metrics) go to FastAPI.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypedDict

import redis.asyncio as aioredis
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Scope

from foundation.auth.verifier import TokenVerifier
from foundation.gateway.api.endpoints import gateway_router
from foundation.gateway.authentication import ROUTE_KEY, IdentifyMiddleware, RequireAuthentication
from foundation.gateway.body_limit import BodyLimitMiddleware
from foundation.gateway.edge import EdgeRouter
from foundation.gateway.https_redirect import HttpsRedirectMiddleware
from foundation.gateway.openapi import OpenApiAggregator
from foundation.gateway.proxy import Proxy
from foundation.gateway.rate_limit_middleware import RateLimitMiddleware, RateLimitPolicy, unavailable
from foundation.gateway.runtime import GatewayRuntime
from foundation.gateway.security_headers import SecurityHeadersMiddleware
from foundation.gateway.settings import FailureMode, GatewaySettings
from foundation.shared.app import tune_worker
from foundation.shared.client_address import ClientAddressMiddleware, TrustedProxies
from foundation.shared.errors import install_error_handlers
from foundation.shared.logging import RequestContextMiddleware, configure_logging
from foundation.shared.metrics import install_metrics, route_template
from foundation.shared.telemetry import NATIVE_TELEMETRY_OFF, configure_tracing

TITLE = "Foundation API"
VERSION = "1.0.0"
EXPOSED_HEADERS = ["X-Request-ID", "RateLimit", "RateLimit-Policy", "Retry-After", "WWW-Authenticate"]


class State(TypedDict):
    """The gateway's lifespan state. The pipeline holds the runtime itself (it is built
    before start-up); what requests read from here is Redis, whose pool ``/metrics`` shows."""

    redis: aioredis.Redis


def build_edge(runtime: GatewayRuntime, policy: RateLimitPolicy, tracer: Any) -> ASGIApp:
    """identify -> rate limit -> require authentication -> proxy."""
    settings = runtime.settings
    proxy = Proxy(runtime.upstreams, runtime.pool, body_timeout=settings.request_body_timeout, tracer=tracer)
    edge: ASGIApp = RequireAuthentication(proxy)
    rate_limiter: RateLimitMiddleware | None = None
    if settings.rate_limit_enabled:
        rate_limiter = RateLimitMiddleware(
            edge, policy=policy, limiter=runtime.limiter, status=runtime.redis_status
        )
        edge = rate_limiter

    def on_redis_error(scope: Scope, exc: BaseException | None) -> None:
        if rate_limiter is not None:
            rate_limiter.redis_failed(scope, exc)
            return
        if exc is not None:
            runtime.redis_status.failed(exc)
        if policy.mode_for(scope) is FailureMode.closed:
            raise unavailable()

    return IdentifyMiddleware(
        edge,
        verifier=runtime.verifier,
        denylist=runtime.denylist,
        status=runtime.redis_status,
        on_redis_error=on_redis_error,
        denylist_checked_by_rate_limiter=rate_limiter is not None,
    )


def create_app(
    settings: GatewaySettings | None = None, *, token_verifier: TokenVerifier | None = None
) -> FastAPI:
    settings = settings or GatewaySettings()
    configure_logging(settings.service_name, settings.log_level, settings.log_format)
    runtime = GatewayRuntime(settings, token_verifier)
    policy = RateLimitPolicy(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        async with runtime:
            tune_worker()  # as create_service_app does for the other services
            yield {"redis": runtime.redis()}

    app = FastAPI(
        title="Gateway",
        version=VERSION,
        description="The public entry point: routing, JWT at the edge, rate limits.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # /openapi.json is the merged document of all services
        telemetry=NATIVE_TELEMETRY_OFF,
    )
    install_error_handlers(app)
    openapi = OpenApiAggregator(runtime, title=TITLE, version=VERSION)
    app.include_router(gateway_router(runtime, openapi, policy.describe(), docs=settings.docs_enabled))

    tracing = configure_tracing(
        app, settings.service_name, settings.otel_exporter_otlp_endpoint, settings.otel_console
    )
    tracer = None
    if tracing:
        from opentelemetry import trace

        tracer = trace.get_tracer("foundation.gateway")

    # add_middleware puts each new one outside the previous: innermost first.
    app.add_middleware(EdgeRouter, edge=build_edge(runtime, policy, tracer))
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=EXPOSED_HEADERS,
            max_age=600,
        )
    if settings.https_redirect:
        app.add_middleware(HttpsRedirectMiddleware, https_port=settings.https_port)
    app.add_middleware(SecurityHeadersMiddleware, hsts_max_age=settings.hsts_max_age)
    app.add_middleware(ClientAddressMiddleware, trusted=TrustedProxies(settings.trusted_networks()))
    app.add_middleware(RequestContextMiddleware, skip_paths=("/health", "/ready"))
    install_metrics(app, settings.service_name, route_of=edge_route, refuse_forwarded=True)
    return app


def edge_route(scope: Scope) -> str:
    """The metrics' route label: the upstream prefix (``/auth``) for service paths, else the
    gateway's own route template."""
    route = scope["state"].get(ROUTE_KEY)
    return "/" + route.service if route is not None else route_template(scope)
