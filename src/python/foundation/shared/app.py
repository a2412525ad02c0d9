"""The common shape of every service's FastAPI app: errors, request context, health, docs, metrics."""

from __future__ import annotations

import gc
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.routing import compile_path

from foundation.shared.errors import install_error_handlers, problem, problem_response
from foundation.shared.health import Check, health_router
from foundation.shared.lifespan import Lifespan, StateT
from foundation.shared.logging import RequestContextMiddleware, configure_logging
from foundation.shared.metrics import install_metrics
from foundation.shared.openapi import install_problem_docs
from foundation.shared.settings import ServiceSettings
from foundation.shared.telemetry import NATIVE_TELEMETRY_OFF, configure_tracing

# Young-generation collections every 50,000 net allocations instead of 700: a request
# allocates a few thousand objects, nearly all gone by its end, so fewer and larger young
# collections find the same garbage for less overhead.
GC_THRESHOLDS = (50_000, 20, 100)

# How long a thread may hold the GIL while another waits for it (CPython's default: 5 ms).
# Granian's I/O threads need the GIL to hand each request to the event loop and each answer
# back, so behind a busy loop each hand-off can wait up to the whole interval; 0.5 ms bounds
# that wait to a tenth and lowers the tail latency through the gateway (docs/performance.md).
SWITCH_INTERVAL = 0.0005


def tune_worker() -> None:
    """Run once a worker has started: freeze the start-up heap, collect the young generation
    less often, and hand the GIL over sooner (``SWITCH_INTERVAL``).

    Freezing moves everything alive after start-up (modules, the app, pools, caches) out of
    the collector's sight. Those long-lived objects (FastAPI, SQLAlchemy, pydantic, the
    password dictionaries) are never garbage, yet without this every full collection walks
    them all again (55 ms for the gateway's 86,000 objects on the 2-core machine: a pause
    that every request in flight waits out). ``gc.freeze`` is CPython's tool for this (see
    the ``gc`` docs).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(SWITCH_INTERVAL)


def _tuning(lifespan: Lifespan[StateT] | None) -> Lifespan[Mapping[str, Any]]:
    """``lifespan``, then ``tune_worker``; its state is passed on to Starlette."""

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[Mapping[str, Any]]:
        if lifespan is None:
            tune_worker()
            yield {}
            return
        async with lifespan(app) as state:
            tune_worker()
            yield state

    return run


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route of ``app`` answers at ``path``."""
    methods: set[str] = set()
    for route in iter_route_contexts(app.router.routes):
        # The route's own pattern, convertors included: ``/passkeys/{id:uuid}`` is no route
        # of ``/passkeys/sign-in``.
        pattern = route.path_regex or (compile_path(route.path_format)[0] if route.path_format else None)
        if pattern is not None and route.methods and pattern.match(path):
            methods |= set(route.methods)
    return sorted(methods)


async def method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    """405 with an ``Allow`` header naming every method of the path (Starlette names only
    those of the first route that matched it, e.g. GET but not DELETE for ``/auth/me``)."""
    assert isinstance(exc, StarletteHTTPException)
    allow = ", ".join(allowed_methods(request.app, request.scope["path"]))
    body = problem(405, "method_not_allowed", None, f"Use one of: {allow}.", request.url.path)
    return problem_response(body, {"Allow": allow})


async def malformed_body(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 400 for a body it cannot decode at all (not UTF-8, a broken form), as the
    `malformed_body` problem every operation with a body documents."""
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else "The request body could not be read."
    return problem_response(problem(400, "malformed_body", None, detail, request.url.path), exc.headers)


def create_service_app(
    settings: ServiceSettings,
    *,
    title: str,
    version: str = "1.0.0",
    routers: Sequence[APIRouter] = (),
    ready: Callable[[StateT], Mapping[str, Check]] | None = None,
    lifespan: Lifespan[StateT] | None = None,
    description: str = "",
    middleware: Sequence[Middleware] = (),
    **fastapi_kwargs: Any,
) -> FastAPI:
    """``lifespan`` opens the service's resources and yields its state (see
    ``foundation.shared.lifespan``); ``ready`` names, from that state, what ``/ready``
    pings. ``middleware`` runs inside the shared ones (request id and access log, tracing,
    error answers), innermost first, just before FastAPI's router."""
    configure_logging(settings.service_name, settings.log_level, settings.log_format)
    docs = settings.docs_enabled
    app = FastAPI(
        title=title,
        version=version,
        description=description,
        lifespan=_tuning(lifespan),
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
        telemetry=NATIVE_TELEMETRY_OFF,
        **fastapi_kwargs,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_exception_handler(400, malformed_body)
    app.add_exception_handler(405, method_not_allowed)
    install_problem_docs(app)

    def ready_checks(state: Mapping[str, Any]) -> Mapping[str, Check]:
        return ready(cast(StateT, state)) if ready is not None else {}

    app.include_router(health_router(ready_checks))
    for router in routers:
        app.include_router(router)
    for inner in middleware:
        app.add_middleware(inner.cls, *inner.args, **inner.kwargs)
    app.add_middleware(RequestContextMiddleware, skip_paths=("/health", "/ready"))
    configure_tracing(app, settings.service_name, settings.otel_exporter_otlp_endpoint, settings.otel_console)
    install_metrics(app, settings.service_name)
    return app
