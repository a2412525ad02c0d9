"""Domain errors and their one translation into RFC 9457 problem+json.

Code raises an ``AppError`` subclass; ``install_error_handlers`` is the single place where
errors become HTTP answers. Every answer carries ``type``, ``title``, ``status``, ``detail``
and a stable ``code``; validation errors add ``errors`` listing each field.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://errors.foundation.dev/"

log = logging.getLogger(__name__)


class AppError(Exception):
    """Base of every error a client may see. Subclasses fix status, code and title."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal server error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        if code is not None:
            self.code = code  # type: ignore[misc]

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        return problem(self.status, self.code, self.title, self.detail, instance, **self.extra)


class BadRequest(AppError):
    status, code, title = 400, "bad_request", "Bad request"


class Unauthorized(AppError):
    status, code, title = 401, "unauthorized", "Unauthorized"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.headers.setdefault("WWW-Authenticate", "Bearer")


class Forbidden(AppError):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(AppError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(AppError):
    status, code, title = 409, "conflict", "Conflict"


class PayloadTooLarge(AppError):
    status, code, title = 413, "payload_too_large", "Payload too large"


class ValidationFailed(AppError):
    status, code, title = 422, "validation_error", "Validation failed"

    def __init__(self, detail: str, errors: Sequence[Mapping[str, Any]] = (), **kw: Any) -> None:
        super().__init__(detail, extra={"errors": list(errors)}, **kw)


class TooManyRequests(AppError):
    status, code, title = 429, "rate_limited", "Too many requests"

    def __init__(self, detail: str | None = None, *, retry_after: int, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.retry_after = max(1, int(retry_after))
        self.headers["Retry-After"] = str(self.retry_after)


class BadGateway(AppError):
    status, code, title = 502, "bad_gateway", "Bad gateway"


class ServiceUnavailable(AppError):
    status, code, title = 503, "service_unavailable", "Service unavailable"


class GatewayTimeout(AppError):
    status, code, title = 504, "gateway_timeout", "Gateway timeout"


_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Validation failed",
    429: "Too many requests",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


class FieldProblem(BaseModel):
    """One field at fault in a 422 answer."""

    field: str = Field(description="Dotted path of the field, e.g. `password` or `data.items.0`.")
    location: str = Field(description="`body`, `query`, `path` or `header`.")
    message: str
    type: str = Field(description="What is wrong, e.g. `missing`, `string_too_short`, `weak_password`.")


class Problem(BaseModel):
    """The body of every error answer (RFC 9457 problem details, ``application/problem+json``):
    the OpenAPI documents of every service describe their errors with this model."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="A URI naming the kind of problem: " + PROBLEM_BASE + "<code>.")
    title: str = Field(description="A short summary of the kind of problem.")
    status: int = Field(ge=400, le=599, description="The HTTP status code.")
    detail: str = Field(description="What went wrong with this request, for a person to read.")
    code: str = Field(description="A stable identifier for programs, e.g. `email_taken`.")
    instance: str | None = Field(default=None, description="The path of the request.")
    errors: list[FieldProblem] | None = Field(
        default=None, description="Validation problems only: each field at fault."
    )


def problem(
    status: int,
    code: str,
    title: str | None = None,
    detail: str | None = None,
    instance: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The body of an RFC 9457 problem."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail or title or _TITLES.get(status, "Error"),
        "code": code,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return body


def problem_response(body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        dict(body), status_code=int(body["status"]), headers=dict(headers or {}), media_type=PROBLEM_JSON
    )


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    fields = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        fields.append(
            {
                # "body.email" rather than ["body", "email"]: easy to show next to a form field.
                "field": ".".join(loc[1:] if loc and loc[0] in {"body", "query", "path"} else loc) or "body",
                "location": loc[0] if loc else "body",
                "message": str(err.get("msg", "invalid")),
                "type": str(err.get("type", "invalid")),
            }
        )
    return fields


def app_error_response(exc: AppError, path: str) -> JSONResponse:
    """The problem+json answer for an ``AppError`` raised while serving ``path``."""
    return problem_response(exc.to_problem(path), exc.headers)


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return app_error_response(exc, request.url.path)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = _field_errors(exc)
    names = ", ".join(f["field"] for f in fields) or "request"
    body = problem(422, "validation_error", None, f"Invalid input: {names}", request.url.path, errors=fields)
    return problem_response(body)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, f"http_{exc.status_code}")
    detail = exc.detail if isinstance(exc.detail, str) else None
    body = problem(exc.status_code, code, None, detail, request.url.path)
    return problem_response(body, getattr(exc, "headers", None))


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    # The stack trace goes to the log (with the request id bound by the logging middleware),
    # never to the client.
    log.exception("unhandled error", exc_info=exc)
    return problem_response(
        problem(500, "internal_error", None, "An unexpected error occurred.", request.url.path)
    )


def unavailable_handler(code: str, detail: str) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    """A handler answering 503 problem+json with ``Retry-After: 1`` for a backing server that
    is away or saturated (connection refused, pool exhausted, timed out): the request may
    succeed if repeated, and a client or load balancer can tell that from a 500.

    Logged as a warning without a stack trace, at most once a second per ``code``: during an
    outage every request fails alike, and a trace each made every failure costlier than the
    request it replaced (a service that fell behind then stayed behind)."""
    last_logged = float("-inf")

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        nonlocal last_logged
        now = time.monotonic()
        if now - last_logged >= 1.0:
            last_logged = now
            log.warning("%s: %s: %s", code, type(exc).__name__, exc)
        body = problem(503, code, None, detail, request.url.path)
        return problem_response(body, {"Retry-After": "1"})

    return handle


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # Redis refusing connections, timing out, or every pooled connection busy past
    # REDIS_POOL_TIMEOUT (redis-py's MaxConnectionsError is a ConnectionError). Services fail
    # closed where Redis decides (the session deny-list); code that may fail open catches them.
    redis_away = unavailable_handler(
        "redis_unavailable", "A backing store is unavailable; try again shortly."
    )
    for redis_error in (RedisConnectionError, RedisTimeoutError):
        app.add_exception_handler(redis_error, redis_away)
    app.add_exception_handler(Exception, _unhandled)
