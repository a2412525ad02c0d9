"""Every service's OpenAPI document states the problems each route can answer with, as one
problem+json schema, and answers a method a path does not have with 405 and a full `Allow`."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter

from foundation.shared.app import create_service_app
from foundation.shared.errors import PROBLEM_JSON, Conflict, NotFound
from foundation.shared.openapi import SIGNED_IN, UNAVAILABLE, documented, raises
from foundation.shared.settings import ServiceSettings

router = APIRouter(prefix="/things")


@router.get("")
async def list_things() -> dict[str, list[str]]:
    return {"items": []}


@router.post("", status_code=201)
@documented(raises(Conflict, "thing_taken"), UNAVAILABLE)
async def add_thing(body: dict[str, str]) -> dict[str, str]:
    return body


@router.delete("/{thing_id}", status_code=204)
@documented(SIGNED_IN, raises(NotFound, "thing_not_found"))
async def delete_thing(thing_id: int) -> None:
    return None


async def serve() -> tuple[httpx.AsyncClient, Any]:
    app = create_service_app(ServiceSettings(service_name="contract-test"), title="t", routers=[router])
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    return client, app


async def test_declared_problems_are_documented_as_problem_json_and_nothing_else() -> None:
    client, _ = await serve()
    async with client:
        document = (await client.get("/openapi.json")).json()
    paths = document["paths"]
    assert set(paths["/things"]["get"]["responses"]) == {"200"}  # no parameters: no 422
    post = paths["/things"]["post"]["responses"]
    assert set(post) == {"201", "400", "409", "422", "503"}
    assert "`thing_taken`" in post["409"]["description"]
    assert "`malformed_body`" in post["400"]["description"]
    assert "`validation_error`" in post["422"]["description"]
    delete = paths["/things/{thing_id}"]["delete"]
    assert set(delete["responses"]) == {"204", "401", "404", "422"}
    assert delete["security"] == [{"bearerAuth": []}]
    assert delete["responses"]["401"]["headers"]["WWW-Authenticate"]["required"] is True
    for responses in (post, delete["responses"]):
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                assert response["content"] == {
                    PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}
                }
    schemas = document["components"]["schemas"]
    assert {"Problem", "FieldProblem"} <= set(schemas)
    assert "HTTPValidationError" not in schemas
    assert set(schemas["Problem"]["required"]) == {"type", "title", "status", "detail", "code"}
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


async def test_an_unsupported_method_is_405_naming_every_method_of_the_path() -> None:
    client, _ = await serve()
    async with client:
        for method in ("TRACE", "OPTIONS", "PUT"):
            answer = await client.request(method, "/things")
            assert answer.status_code == 405, method
            assert answer.headers["content-type"] == PROBLEM_JSON
            assert answer.json()["code"] == "method_not_allowed"
            assert set(answer.headers["allow"].split(", ")) == {"GET", "POST"}
        answer = await client.request("PATCH", "/things/7")
        assert answer.headers["allow"] == "DELETE"
