"""Lifespan state through a service app: each request reads a copy of what the lifespan
yielded, /ready pings what the state names, and background workers stop with the app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TypedDict

from fastapi import APIRouter, FastAPI, Request

from foundation.shared.app import create_service_app
from foundation.shared.health import Check
from foundation.shared.lifespan import lifespan_state, run_worker
from foundation.shared.settings import ServiceSettings
from tests.helpers.apps import serve_app


class Worker:
    def __init__(self) -> None:
        self.started = self.closed = False

    def start(self) -> None:
        self.started = True

    async def aclose(self) -> None:
        self.closed = True


class State(TypedDict):
    greeting: str
    up: bool
    quiet: Worker
    busy: Worker


router = APIRouter()


@router.get("/greeting")
async def greeting(request: Request) -> dict[str, object]:
    state = lifespan_state(request, State)
    answer = {"greeting": state["greeting"], "keys": sorted(state)}
    state["greeting"] = "changed by a request"
    return answer


def ready(state: State) -> dict[str, Check]:
    async def check() -> None:
        if not state["up"]:
            raise ConnectionError("down")

    return {"thing": check}


def app_with(up: bool) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        async with AsyncExitStack() as stack:
            quiet = run_worker(stack, Worker(), enabled=False)
            busy = run_worker(stack, Worker(), enabled=True)
            yield {"greeting": "hello", "up": up, "quiet": quiet, "busy": busy}

    return create_service_app(
        ServiceSettings(service_name="state-test"),
        title="t",
        routers=[router],
        lifespan=lifespan,
        ready=ready,
    )


async def test_each_request_reads_its_own_copy_of_the_lifespan_state() -> None:
    async with serve_app(app_with(up=True)) as client:
        first = (await client.get("/greeting")).json()
        second = (await client.get("/greeting")).json()
    assert first["greeting"] == second["greeting"] == "hello"  # the first's change stayed its own
    assert {"greeting", "up", "quiet", "busy"} <= set(first["keys"])


async def test_ready_pings_what_the_state_names() -> None:
    async with serve_app(app_with(up=True)) as client:
        assert (await client.get("/ready")).json() == {"status": "ok", "checks": {"thing": "ok"}}
    async with serve_app(app_with(up=False)) as client:
        answer = await client.get("/ready")
    assert answer.status_code == 503
    assert answer.json() == {"status": "degraded", "checks": {"thing": "down: ConnectionError"}}


async def test_workers_start_when_enabled_and_stop_with_the_app_either_way() -> None:
    async with serve_app(app_with(up=True)) as client:
        quiet, busy = client.state["quiet"], client.state["busy"]
        assert (quiet.started, busy.started) == (False, True)
        assert not quiet.closed and not busy.closed
    assert quiet.closed and busy.closed
