from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import BaseModel

from foundation.shared.routing import RequestRoute


class Answer(BaseModel):
    echo: str


def app_with(endpoint: object) -> FastAPI:
    router = APIRouter(prefix="/x")
    router.add_api_route(
        "/echo",
        endpoint,  # type: ignore[arg-type]
        methods=["POST"],
        response_model=Answer,
        route_class_override=RequestRoute,
    )
    app = FastAPI()
    app.include_router(router)
    return app


async def echo(request: Request) -> Response:
    return Response((await request.body()), media_type="application/json", headers={"X-Seen": "yes"})


async def test_the_endpoint_gets_the_request_and_its_response_goes_out_as_it_is() -> None:
    app = app_with(echo)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.post("/x/echo", content=b'{"echo": "hi"}')
    assert response.status_code == 200
    assert response.content == b'{"echo": "hi"}'  # not re-serialised through Answer
    assert response.headers["x-seen"] == "yes"


async def test_it_is_documented_like_any_route() -> None:
    operation = app_with(echo).openapi()["paths"]["/x/echo"]["post"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Answer"
    }


async def test_errors_reach_the_apps_exception_handlers() -> None:
    async def fails(request: Request) -> Response:
        raise ValueError("boom")

    app = app_with(fails)

    @app.exception_handler(ValueError)
    async def handled(request: Request, exc: ValueError) -> Response:
        return Response(status_code=418)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.post("/x/echo")).status_code == 418


def test_an_endpoint_with_parameters_is_refused_as_they_would_never_be_filled() -> None:
    async def with_body(request: Request, answer: Answer) -> Response:
        return Response()

    with pytest.raises(TypeError, match="takes the Request alone"):
        app_with(with_body)
