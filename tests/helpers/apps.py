"""Drive an ASGI app in-process over a real HTTP client interface (lifespan included)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send


class AppClient(httpx.AsyncClient):
    """A client of an app served in-process; ``state`` is what the app's lifespan yielded
    (each request gets a shallow copy of it, as from a server)."""

    def __init__(self, state: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state = state


def with_lifespan_state(app: ASGIApp, state: Mapping[str, Any]) -> ASGIApp:
    """``app`` with ``state`` in every request's scope, as an ASGI server hands it on (httpx's
    ASGI transport does not)."""

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        await app({**scope, "state": dict(state)}, receive, send)

    return serve


_running: weakref.WeakKeyDictionary[FastAPI, Mapping[str, Any]] = weakref.WeakKeyDictionary()


def state_of(app: FastAPI) -> Any:
    """The lifespan state of ``app`` while ``serve_app`` (or ``running``) runs it: what its
    requests read, for tests that reach into a service (its clock, its hasher)."""
    return _running[app]


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[Mapping[str, Any]]:
    """``app``'s lifespan, its state remembered for ``state_of``."""
    async with app.router.lifespan_context(app) as state:
        state = state or {}
        _running[app] = state
        try:
            yield state
        finally:
            _running.pop(app, None)


@asynccontextmanager
async def serve_app(app: FastAPI, client_ip: str = "127.0.0.1") -> AsyncIterator[AppClient]:
    async with running(app) as state:
        transport = httpx.ASGITransport(app=with_lifespan_state(app, state), client=(client_ip, 50000))
        async with AppClient(state, transport=transport, base_url="http://testserver") as client:
            yield client


@asynccontextmanager
async def silent_redis_url() -> AsyncIterator[str]:
    """A Redis URL whose server accepts connections and reads commands but never answers:
    for 'Redis hangs' tests (a timeout, not a refused connection)."""
    connections: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


def closed_port_redis_url() -> str:
    """A Redis URL nothing listens on: for 'Redis is down' tests."""
    from foundation.devstack.embedded import free_port

    return f"redis://127.0.0.1:{free_port()}/0"
