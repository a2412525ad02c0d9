from __future__ import annotations

import logging

import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from pydantic import BaseModel, Field

from foundation.shared.errors import Conflict, NotFound, TooManyRequests, Unauthorized, install_error_handlers
from tests.helpers.apps import closed_port_redis_url, serve_app


class Signup(BaseModel):
    email: str = Field(min_length=3)
    age: int


def make_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/missing")
    async def missing() -> None:
        raise NotFound("No such thing.")

    @app.get("/taken")
    async def taken() -> None:
        raise Conflict("That email is taken.", code="email_taken")

    @app.get("/slow-down")
    async def slow_down() -> None:
        raise TooManyRequests("Wait.", retry_after=7)

    @app.get("/who")
    async def who() -> None:
        raise Unauthorized("Token expired.", code="token_expired")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    @app.get("/redis")
    async def redis_call() -> None:
        client = aioredis.Redis.from_url(closed_port_redis_url())
        try:
            await client.ping()
        finally:
            await client.aclose()

    @app.post("/signup")
    async def signup(body: Signup) -> Signup:
        return body

    return app


async def test_app_error_becomes_problem_json() -> None:
    async with serve_app(make_app()) as client:
        response = await client.get("/taken")
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "email_taken"
    assert body["status"] == 409
    assert body["title"] == "Conflict"
    assert body["detail"] == "That email is taken."
    assert body["type"].endswith("/email_taken")
    assert body["instance"] == "/taken"


async def test_rate_limit_error_carries_retry_after() -> None:
    async with serve_app(make_app()) as client:
        response = await client.get("/slow-down")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"


async def test_unauthorized_carries_www_authenticate() -> None:
    async with serve_app(make_app()) as client:
        response = await client.get("/who")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["code"] == "token_expired"


async def test_validation_error_lists_every_field() -> None:
    async with serve_app(make_app()) as client:
        response = await client.post("/signup", json={"email": "x", "age": "old"})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error"
    fields = {error["field"] for error in body["errors"]}
    assert fields == {"email", "age"}
    assert "email" in body["detail"] and "age" in body["detail"]


async def test_malformed_json_is_a_422_problem() -> None:
    async with serve_app(make_app()) as client:
        response = await client.post(
            "/signup", content=b"{not json", headers={"content-type": "application/json"}
        )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_unknown_route_and_method_are_problems() -> None:
    async with serve_app(make_app()) as client:
        not_found = await client.get("/nowhere")
        wrong_method = await client.delete("/taken")
    assert not_found.status_code == 404
    assert not_found.json()["code"] == "not_found"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["code"] == "method_not_allowed"


async def test_unhandled_error_hides_internals(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app()
    with caplog.at_level(logging.ERROR):
        async with serve_app(app) as client:
            # ServerErrorMiddleware re-raises after answering; the client must see only the 500.
            transport_app = client._transport
            assert transport_app is not None
            client._transport = type(transport_app)(app=app, raise_app_exceptions=False)
            response = await client.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "hunter2" not in response.text
    assert response.json()["code"] == "internal_error"
    assert any("unhandled error" in record.getMessage() for record in caplog.records)


async def test_redis_away_is_a_503_to_retry_logged_once_a_second(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="foundation.shared.errors"):
        async with serve_app(make_app()) as client:
            answers = [await client.get("/redis") for _ in range(3)]
    for answer in answers:
        assert answer.status_code == 503
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["retry-after"] == "1"
        assert answer.json()["code"] == "redis_unavailable"
        assert "127.0.0.1" not in answer.text  # the server's address stays in the log
    warnings = [record for record in caplog.records if "redis_unavailable" in record.getMessage()]
    assert len(warnings) == 1 and "ConnectionError" in warnings[0].getMessage()
    assert not any(record.exc_info for record in warnings)
