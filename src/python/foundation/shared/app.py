"""The common shape of every service's FastAPI app: errors, request context, health, docs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import APIRouter, FastAPI

from foundation.shared.errors import install_error_handlers
from foundation.shared.health import Check, health_router
from foundation.shared.logging import RequestContextMiddleware, configure_logging
from foundation.shared.settings import ServiceSettings
from foundation.shared.telemetry import configure_tracing

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_service_app(
    settings: ServiceSettings,
    *,
    title: str,
    version: str = "1.0.0",
    routers: Sequence[APIRouter] = (),
    checks: Callable[[FastAPI], Mapping[str, Check]] | None = None,
    lifespan: Lifespan | None = None,
    description: str = "",
    **fastapi_kwargs: Any,
) -> FastAPI:
    configure_logging(settings.service_name, settings.log_level, settings.log_format)
    docs = settings.docs_enabled
    app = FastAPI(
        title=title,
        version=version,
        description=description,
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
        **fastapi_kwargs,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(health_router(lambda: checks(app) if checks else {}))
    for router in routers:
        app.include_router(router)
    app.add_middleware(RequestContextMiddleware, skip_paths=("/health", "/ready"))
    configure_tracing(app, settings.service_name, settings.otel_exporter_otlp_endpoint, settings.otel_console)
    return app
