"""Structured logging: one JSON object per line (or readable lines in a terminal).

structlog renders both our own events and the standard library's (SQLAlchemy, Granian,
Alembic), so every line has the same shape. Request-scoped values (request id, user id)
live in contextvars and are added to every line logged while the request runs.
"""

from __future__ import annotations

import logging
import secrets
import sys
import time
from collections.abc import Iterable
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_configured: tuple[str, str, str] | None = None


def configure_logging(service: str, level: str = "INFO", fmt: str = "auto") -> None:
    """Idempotent; ``fmt`` is ``json``, ``console`` or ``auto`` (console on a TTY)."""
    global _configured
    if _configured == (service, level, fmt):
        return
    _configured = (service, level, fmt)
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_service(service),
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False) if use_console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        # Drop lines below the level before any other work is done for them.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    skip_unrendered_record_fields()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Our access log replaces the servers' own.
    for noisy in ("granian.access", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def skip_unrendered_record_fields() -> None:
    """Stop the standard library gathering, for every record, what no line here prints: the
    caller's frame (a stack walk), the thread, the process and its multiprocessing name. The
    switches are the ones its logging HOWTO lists under "Optimization"; with them an access
    line costs about a fifth less CPU (``bench:access_log``)."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def _add_service(service: str) -> Any:
    def processor(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        event.setdefault("service", service)
        return event

    return processor


def get_logger(name: str | None = None) -> Any:
    return structlog.stdlib.get_logger(name)


def bind_request_context(**values: Any) -> None:
    structlog.contextvars.bind_contextvars(**values)


def _valid_request_id(value: str) -> bool:
    return 0 < len(value) <= 128 and all(c.isalnum() or c in "-_.:" for c in value)


class RequestContextMiddleware:
    """Takes or makes the request id, returns it, and logs one line per request."""

    def __init__(self, app: ASGIApp, *, skip_paths: Iterable[str] = ()) -> None:
        self.app = app
        self.skip_paths = frozenset(skip_paths)
        self.log = get_logger("access")
        # Asked before each access line: a line the level drops would otherwise still be
        # built and passed through structlog's processors (about 3 us a request).
        self.enabled = logging.getLogger("access").isEnabledFor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                candidate = value.decode("latin-1")
                request_id = candidate if _valid_request_id(candidate) else None
                break
        # 128 random bits as 32 hex digits (a UUID object per request cost more than the bits).
        request_id = request_id or secrets.token_hex(16)
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if scope["path"] not in self.skip_paths and self.enabled(logging.INFO):
                client = scope.get("client")
                self.log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    duration_ms=round((time.perf_counter() - start) * 1000, 2),
                    client=client[0] if client else None,
                    user_id=scope["state"].get("user_id"),
                )
            structlog.contextvars.clear_contextvars()
