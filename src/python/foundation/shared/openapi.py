"""The error answers in a service's OpenAPI document, generated in one place.

A route declares the problems it can answer with, next to its code::

    @router.post("/register", status_code=201)
    @documented(raises(Conflict, "email_taken"), raises(ValidationFailed, "weak_password"), UNAVAILABLE)
    async def register(...): ...

and ``install_problem_docs`` (called by ``create_service_app``) turns the declarations into
``responses`` of that operation: each status once, ``application/problem+json`` with the one
shared ``Problem`` schema, the codes in its description, and the headers that status always
carries (``WWW-Authenticate`` on 401, ``Retry-After`` on 429). FastAPI's own 422 (a JSON
``HTTPValidationError`` that no route of ours ever sends) becomes the ``validation_error``
problem it really is; a route that declares ``SIGNED_IN`` also gets the bearer security
requirement. Nothing here runs per request: the document is built once, on first request.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute

from foundation.shared.errors import (
    PROBLEM_JSON,
    AppError,
    Problem,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
)

F = TypeVar("F", bound=Callable[..., Any])

PROBLEM_REF = "#/components/schemas/Problem"
BEARER_SCHEME = "bearerAuth"
PROBLEMS_ATTRIBUTE = "__problems__"

# Headers an answer of that status always carries.
ALWAYS_SENT_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "`Bearer`: the scheme the request must use.",
            "required": True,
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {
            "description": "Seconds to wait before trying again.",
            "required": True,
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        }
    },
    503: {
        "Retry-After": {
            "description": "Seconds to wait before trying again.",
            "required": False,
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        }
    },
}

TITLES: dict[int, str] = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    408: "Request timeout",
    409: "Conflict",
    413: "Payload too large",
    422: "Validation failed",
    429: "Too many requests",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


@dataclass(frozen=True)
class Raises:
    """A problem an operation can answer with: its status and the codes it may carry."""

    status: int
    codes: tuple[str, ...]
    bearer: bool = False  # the operation needs an access token (`Authorization: Bearer`)


def raises(error: type[AppError], *codes: str, bearer: bool = False) -> Raises:
    """``error``'s status with ``codes`` (the error's own code when none are named)."""
    return Raises(error.status, codes or (error.code,), bearer)


# Every route that needs the caller's access token (foundation.auth's CurrentPrincipal).
SIGNED_IN = raises(
    Unauthorized, "missing_token", "invalid_token", "token_expired", "session_revoked", bearer=True
)
# PostgreSQL or Redis away or saturated (the shared handlers: retry shortly).
UNAVAILABLE = raises(ServiceUnavailable, "database_unavailable", "redis_unavailable")
VALIDATION = raises(ValidationFailed)
# A body FastAPI cannot decode at all (not UTF-8, a broken form): shared/app.py answers it.
MALFORMED_BODY = Raises(400, ("malformed_body",))
RATE_LIMITED = raises(TooManyRequests)


def documented(*problems: Raises) -> Callable[[F], F]:
    """Declare the problems a route's endpoint can answer with (put it under ``@router.get``
    and the like; several are merged)."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, PROBLEMS_ATTRIBUTE, (*getattr(endpoint, PROBLEMS_ATTRIBUTE, ()), *problems))
        return endpoint

    return mark


def problem_response(status: int, problems: Iterable[Raises]) -> dict[str, Any]:
    """The OpenAPI response object of ``status`` answered with any of ``problems``' codes."""
    codes: list[str] = []
    for item in problems:
        codes += [code for code in item.codes if code not in codes]
    response: dict[str, Any] = {
        "description": f"{TITLES.get(status, 'Error')}: " + ", ".join(f"`{code}`" for code in codes) + ".",
        "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}},
    }
    if status in ALWAYS_SENT_HEADERS:
        response["headers"] = json.loads(json.dumps(ALWAYS_SENT_HEADERS[status]))
    return response


def add_problem_responses(operation: dict[str, Any], problems: Iterable[Raises]) -> None:
    """Merge ``problems`` into one operation's ``responses`` (existing problem codes kept)."""
    responses = operation.setdefault("responses", {})
    by_status: dict[int, list[Raises]] = {}
    for item in problems:
        by_status.setdefault(item.status, []).append(item)
    for status, items in sorted(by_status.items()):
        existing = responses.get(str(status))
        if existing is not None and PROBLEM_JSON in existing.get("content", {}):
            known = _codes_of(existing["description"])
            items = [Raises(status, tuple(known)), *items]
        responses[str(status)] = problem_response(status, items)
    if any(item.bearer for item in problems):
        operation["security"] = [{BEARER_SCHEME: []}]


def _codes_of(description: str) -> list[str]:
    return description.split("`")[1::2]


def problem_components() -> dict[str, dict[str, Any]]:
    """``components`` entries the generated responses refer to."""
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions = schema.pop("$defs", {})
    return {
        "schemas": {"Problem": schema, **definitions},
        "securitySchemes": {
            BEARER_SCHEME: {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "An access token from `POST /auth/login`.",
            }
        },
    }


def document_problems(document: dict[str, Any], routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """Rewrite ``document`` (FastAPI's) in place with every route's declared problems."""
    uses_bearer = False
    # FastAPI (0.165) keeps included routers as they are; the contexts carry each route's
    # effective path (prefix included).
    for route in iter_route_contexts(list(routes)):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        declared: tuple[Raises, ...] = getattr(route.endpoint, PROBLEMS_ATTRIBUTE, ())
        operations = document.get("paths", {}).get(route.path_format, {})
        for method in sorted(route.methods or ()):
            operation = operations.get(method.lower())
            if operation is None:
                continue
            problems = list(declared)
            # FastAPI documents a JSON 422 for any route with parameters or a body; ours is
            # the `validation_error` problem.
            if operation.get("responses", {}).pop("422", None) is not None:
                problems.insert(0, VALIDATION)
            if "requestBody" in operation:
                problems.insert(0, MALFORMED_BODY)
            add_problem_responses(operation, problems)
            uses_bearer = uses_bearer or "security" in operation
    components = document.setdefault("components", {})
    extra = problem_components()
    components.setdefault("schemas", {}).update(extra["schemas"])
    if uses_bearer:
        components.setdefault("securitySchemes", {}).update(extra["securitySchemes"])
    text = json.dumps(document.get("paths", {}))
    for unused in ("HTTPValidationError", "ValidationError"):
        if f'"#/components/schemas/{unused}"' not in text:
            components["schemas"].pop(unused, None)
    return document


def install_problem_docs(app: FastAPI) -> None:
    """Serve ``app``'s document with the declared problems (built once, then cached)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(build(), app.routes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
