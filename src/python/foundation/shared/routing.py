"""``RequestRoute``: a FastAPI route for an endpoint that takes the ``Request`` alone.

FastAPI's route handler solves the endpoint's dependencies and parameters, then validates and
serialises what it returns, on every request. An endpoint that reads what it needs from the
request itself (its body through a pydantic ``TypeAdapter``, its services from the app) and
returns a ready ``Response`` needs none of that: ``RequestRoute`` (FastAPI's documented
extension point, a custom ``APIRoute`` class) calls it directly. Everything else is an
``APIRoute``'s: matching, the OpenAPI entry (``response_model``, ``openapi_extra``, the
documented problems), the app's exception handlers. Measured in process: 50 -> 27 us per
request (docs/performance.md, bench:auth).

A parameter the endpoint declares would silently never be filled, so one is refused when the
route is made.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class RequestRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        parameters = list(inspect.signature(endpoint).parameters.values())
        if len(parameters) != 1 or kwargs.get("dependencies"):
            raise TypeError(f"{endpoint.__name__}: a RequestRoute endpoint takes the Request alone")
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint

        async def handle(request: Request) -> Response:
            response: Response = await endpoint(request)
            return response

        return handle
