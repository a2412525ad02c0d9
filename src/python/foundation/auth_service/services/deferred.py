"""Work a request starts and does not wait for: what must not show in the answer's timing.

``POST /auth/password/forgot`` and ``/auth/email/resend`` answer at once and look the address
up afterwards, here: the answer then takes the same time whether or not an account has the
address (writing the token and the message is a few milliseconds a stopwatch would see).
A failure is logged; ``drain`` (at shutdown) waits for what is still running.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

from foundation.shared.logging import get_logger

log = get_logger(__name__)


class Deferred:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def run(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("deferred work failed", task=task.get_name(), error=f"{type(error).__name__}: {error}")

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait for the work still running (cancelled after ``timeout``)."""
        pending = set(self._tasks)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=timeout)
        for task in late:
            task.cancel()
        for task in late:
            with contextlib.suppress(asyncio.CancelledError):
                await task
