"""Lifespan state: what an app opens at start-up, typed, and how a request reads it.

A service's lifespan opens its resources on an ``AsyncExitStack`` (which closes them, last
opened first, whatever happens) and yields its ``State``, a ``TypedDict``. Starlette
copies that mapping, shallowly, into every request's ``scope["state"]`` ("lifespan state"
in Starlette's documentation), so nothing is kept on ``app.state``.

FastAPI cannot take Starlette's ``Request[State]`` as a parameter (it reads the generic
alias as a body field), so dependencies read the state through ``lifespan_state``: the one
place that names the mapping's type; mypy checks the lifespan's ``yield`` against the same
``TypedDict``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any, Protocol, TypeVar, cast

from fastapi import FastAPI
from starlette.requests import HTTPConnection

StateT = TypeVar("StateT", bound=Mapping[str, Any])
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[StateT]]


def lifespan_state(connection: HTTPConnection, state: type[StateT]) -> StateT:
    """The lifespan state Starlette copied into this request, as the ``TypedDict`` ``state``
    (a service's ``State``, or a library's part of it such as ``AuthState``)."""
    return cast(StateT, connection.scope.setdefault("state", {}))


class Worker(Protocol):
    """A background loop a lifespan runs: ``OutboxRelay``, ``StreamConsumer``."""

    def start(self) -> None: ...

    async def aclose(self) -> None: ...


WorkerT = TypeVar("WorkerT", bound=Worker)


def run_worker(stack: AsyncExitStack, worker: WorkerT, *, enabled: bool) -> WorkerT:
    """Start ``worker`` when ``enabled``; ``stack`` stops it either way (``aclose`` of a
    worker that never started returns at once)."""
    stack.push_async_callback(worker.aclose)
    if enabled:
        worker.start()
    return worker
