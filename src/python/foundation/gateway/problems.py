"""Answer an ``AppError`` from pure ASGI middleware (outside FastAPI's exception handlers)."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import Receive, Scope, Send

from foundation.shared.errors import AppError, problem_response


async def send_problem(
    scope: Scope, receive: Receive, send: Send, error: AppError, headers: Mapping[str, str] | None = None
) -> None:
    response = problem_response(error.to_problem(scope.get("path")), {**error.headers, **(headers or {})})
    await response(scope, receive, send)
