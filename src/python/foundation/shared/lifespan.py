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

import asyncio
import contextlib
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


class BackgroundLoop:
    """A ``Worker`` whose loop is ``_run``, which returns once ``_stopping`` is set: ``start``
    runs it as a task (again after it ended), ``aclose`` sets ``_stopping`` and waits
    ``STOP_TIMEOUT`` seconds for the loop to finish its pass, then cancels it."""

    STOP_TIMEOUT = 10.0

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def task_name(self) -> str:
        return type(self).__name__

    async def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name=self.task_name())

    async def aclose(self) -> None:
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(task, timeout=self.STOP_TIMEOUT)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def run_worker(stack: AsyncExitStack, worker: WorkerT, *, enabled: bool) -> WorkerT:
    """Start ``worker`` when ``enabled``; ``stack`` stops it either way (``aclose`` of a
    worker that never started returns at once)."""
    stack.push_async_callback(worker.aclose)
    if enabled:
        worker.start()
    return worker
