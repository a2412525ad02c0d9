"""Drive an ASGI app in-process over a real HTTP client interface (lifespan included)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI


@asynccontextmanager
async def serve_app(app: FastAPI, client_ip: str = "127.0.0.1") -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(client_ip, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


def closed_port_redis_url() -> str:
    """A Redis URL nothing listens on: for 'Redis is down' tests."""
    from foundation.devstack.embedded import free_port

    return f"redis://127.0.0.1:{free_port()}/0"
