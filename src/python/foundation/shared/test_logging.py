from __future__ import annotations

import json

import pytest
from fastapi import FastAPI, Request

from foundation.shared.logging import RequestContextMiddleware, configure_logging, get_logger
from tests.helpers.apps import serve_app


def make_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(RequestContextMiddleware, skip_paths=("/health",))

    @app.get("/hello")
    async def hello(request: Request) -> dict[str, str]:
        get_logger("test").info("inside", answer=42)
        return {"request_id": request.state.request_id}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def test_request_id_is_generated_returned_and_logged(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("svc-a", "INFO", "json")
    async with serve_app(make_app()) as client:
        response = await client.get("/hello")
    request_id = response.headers["x-request-id"]
    assert len(request_id) == 32
    assert response.json() == {"request_id": request_id}
    lines = json_lines(capsys.readouterr().err)
    inside = next(line for line in lines if line["event"] == "inside")
    access = next(line for line in lines if line["event"] == "request")
    assert inside["request_id"] == request_id and inside["answer"] == 42
    assert access["request_id"] == request_id
    assert access["service"] == "svc-a"
    assert access["status"] == 200 and access["method"] == "GET" and access["path"] == "/hello"
    assert isinstance(access["duration_ms"], float)


async def test_client_request_id_is_kept_when_sane(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("svc-b", "INFO", "json")
    async with serve_app(make_app()) as client:
        kept = await client.get("/hello", headers={"X-Request-ID": "abc-123"})
        replaced = await client.get("/hello", headers={"X-Request-ID": "bad id\twith junk"})
    assert kept.headers["x-request-id"] == "abc-123"
    assert replaced.headers["x-request-id"] != "bad id\twith junk"
    assert len(replaced.headers["x-request-id"]) == 32


async def test_health_checks_are_not_logged(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("svc-c", "INFO", "json")
    async with serve_app(make_app()) as client:
        await client.get("/health")
    assert not [line for line in json_lines(capsys.readouterr().err) if line.get("path") == "/health"]


def test_console_format_is_human_readable(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("svc-d", "INFO", "console")
    get_logger("test").warning("disk almost full", percent=93)
    err = capsys.readouterr().err
    assert "disk almost full" in err and "percent=93" in err
    assert not err.lstrip().startswith("{")
